"""A mixture of time-interval experts with a hard gate (Plainer et al. 2025, §3.3).

    s(x, t) = s_i(x, t) for t in I_i,   I_1 = (0, b_1), I_2 = [b_1, b_2), ..., I_k = [b_{k-1}, 1]

Each expert is trained on its own interval only (so the experts can be trained in parallel,
each as its own run) and may be conservative or not, regularised or not, and trained with any
objective (e.g. a PSM force-window expert below t_p and a DSM expert above). Simulation uses the
expert that holds the simulation time (the small-t one, which must then be conservative).

State vectors go through ``score(x, t)``; molecules through ``forward(graphs, t) -> {"eps"}``, each
molecule to the expert that holds its own t.
"""
from __future__ import annotations

import bisect

import torch
from torch import nn


class TimeIntervalMixture(nn.Module):
    def __init__(self, boundaries: list[float], experts: list[nn.Module]):
        super().__init__()
        if len(experts) != len(boundaries) + 1:
            raise ValueError(f"{len(boundaries)} boundaries need {len(boundaries) + 1} experts, got {len(experts)}")
        if any(not 0 < b < 1 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"boundaries must be increasing and inside (0, 1), got {boundaries}")
        self.boundaries = [float(b) for b in boundaries]
        self.experts = nn.ModuleList(experts)

    def expert_index(self, t: torch.Tensor) -> torch.Tensor:
        """Which expert holds each t: [B] long."""
        return torch.bucketize(t, torch.tensor(self.boundaries, dtype=t.dtype, device=t.device), right=True)

    def expert_at(self, t: float) -> nn.Module:
        return self.experts[bisect.bisect_right(self.boundaries, float(t))]

    @property
    def conservative(self) -> bool:
        return all(getattr(e, "conservative", False) for e in self.experts)

    @property
    def schedule(self):
        return self.experts[0].schedule          # experts share the run's diffusion process

    def forward(self, graphs, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Molecules: eps of each molecule from the expert holding its t (samplers pass one t for
        the whole batch, so one expert runs per step)."""
        index = self.expert_index(t)
        held = torch.unique(index).tolist()
        if len(held) == 1:
            return {"eps": self.experts[held[0]](graphs, t)["eps"]}
        eps = torch.zeros_like(graphs.pos)
        for i in held:
            molecules = torch.nonzero(index == i).squeeze(-1)
            atoms = torch.isin(graphs.batch, molecules)
            eps[atoms] = self.experts[i](graphs.select(molecules), t[molecules])["eps"]
        return {"eps": eps}

    def score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        index = self.expert_index(t)
        out = torch.empty_like(x)
        for i, expert in enumerate(self.experts):
            mask = index == i
            if mask.any():
                out[mask] = expert.score(x[mask], t[mask], create_graph)
        return out
