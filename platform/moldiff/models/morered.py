"""MoreRed's networks on a PaiNN representation (Kahouli et al. 2024):

* ``noise``: the DDPM noise model eps_hat(x, k), the time index k / (T - 1) fed as one extra scalar
  channel to a gated-equivariant head (the authors' code; a channel on the vectors would break
  equivariance);
* ``time``: the diffusion-time predictor g(x), a per-atom invariant head regressed on k / (T - 1);
* ``joint`` (MoreRed-JT): one representation with both heads, the noise head conditioned on the
  time head's own per-atom prediction (not detached, so the noise loss trains the time head too).

Any kind may also carry UniGEM's property head (``predict_property``; ``objective.terms: [property]``),
read from the same invariant features: the property of a molecule from its (noisy) structure.

``predict_index`` averages the per-atom times over each molecule, clamps to [0, 1] and rounds to an index;
``Relaxer`` pairs a noise and a time model (ITP / AS) or wraps a joint one (JT) behind the interface
the relaxation samplers use (``sampling.relax``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..diffusion.process import remove_mean
from ..diffusion.schedules import PolynomialSchedule
from ..nn.painn import PaiNN
from .unigem import PropertyHead

KINDS = ("noise", "time", "joint")


class GatedEquivariantBlock(nn.Module):
    """(s [N, F_in], v [N, 3, F_in]) -> (s [N, F_out], v [N, 3, F_out]): vectors are mixed linearly
    and scaled by gates computed from invariants (scalars and vector norms), so they stay equivariant."""

    compile_unit = True            # moldiff.nn.compile

    def __init__(self, f_in: int, f_out: int, extra_scalars: int = 0, last: bool = False):
        super().__init__()
        self.mix, self.norm_mix = nn.Linear(f_in, f_out, bias=False), nn.Linear(f_in, f_in, bias=False)
        self.gate = nn.Sequential(nn.Linear(2 * f_in + extra_scalars, f_in), nn.SiLU(), nn.Linear(f_in, 2 * f_out))
        self.f_out, self.last = f_out, last

    def forward(self, s, v, extra: Optional[torch.Tensor] = None):
        norm = torch.sqrt((self.norm_mix(v) ** 2).sum(1) + 1e-8)
        inputs = [s, norm] + ([extra] if extra is not None else [])
        s_out, gates = self.gate(torch.cat(inputs, -1)).split(self.f_out, -1)
        v_out = self.mix(v) * gates.unsqueeze(1)
        return (s_out if self.last else nn.functional.silu(s_out)), v_out


class MoreRedModel(nn.Module):
    def __init__(self, kind: str, schedule: PolynomialSchedule, hidden: int = 128, layers: int = 3, n_rbf: int = 20,
                 cutoff: float = 5.0, max_z: int = 100, predict_property: bool = False):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.schedule = kind, schedule
        self.representation = PaiNN(hidden, layers, n_rbf, cutoff, max_z, time_features=0, vector_out=False)
        h2, h4 = max(hidden // 2, 1), max(hidden // 4, 1)
        self.time_head = None
        if kind in ("time", "joint"):     # pyramidal atom-wise MLP, one scalar per atom
            self.time_head = nn.Sequential(nn.Linear(hidden, h2), nn.SiLU(), nn.Linear(h2, h4), nn.SiLU(), nn.Linear(h4, 1))
        self.noise_head = None
        if kind in ("noise", "joint"):
            self.noise_head = nn.ModuleList([GatedEquivariantBlock(hidden, h2, extra_scalars=1),
                                             GatedEquivariantBlock(h2, 1, extra_scalars=1, last=True)])
        self.property_head = PropertyHead(hidden) if predict_property else None

    @property
    def n_steps(self) -> int:
        return self.schedule.n_steps

    def forward(self, graphs: GraphBatch, k: Optional[torch.Tensor] = None) -> dict:
        """``k`` [B]: the true time index (noise model); ignored by the joint model, which uses its own
        time head. Returns {"eps": [N, 3]} and/or {"time": [N]} (per-atom, unclamped), and {"prop": [B]}
        (normalised) with a property head."""
        s, v = self.representation(graphs.z, graphs.pos, graphs.batch, graphs.n_atoms)
        out = {}
        if self.time_head is not None:
            out["time"] = self.time_head(s).squeeze(-1)
        if self.noise_head is not None:
            if self.kind == "joint":
                t_atom = out["time"]
            else:
                if k is None:
                    raise ValueError("the noise model needs the time index k of every molecule")
                t_atom = (k.to(s.dtype) / (self.n_steps - 1))[graphs.batch]
            h, vec = s, v
            for block in self.noise_head:
                h, vec = block(h, vec, t_atom.unsqueeze(-1))
            out["eps"] = remove_mean(vec.squeeze(-1), graphs.batch, graphs.n_atoms)
        if self.property_head is not None:
            out["prop"] = self.property_head(s, graphs)
        return out

    def index_from_time(self, time_atom: torch.Tensor, graphs: GraphBatch, clamp_first: bool = False) -> torch.Tensor:
        """Per-molecule index round(clamp(mean_atoms(g), 0, 1) (T - 1)). Averaging first keeps the
        estimate unbiased near 0: clamping each atom first (``clamp_first``, the rule moldiff used
        before) cuts the negative half of the atoms' scatter and reads a clean structure a few
        steps up (a per-atom scatter of 20 steps adds ~8)."""
        g = time_atom.clamp(0, 1) if clamp_first else time_atom
        total = torch.zeros(graphs.num_graphs, dtype=time_atom.dtype, device=time_atom.device)
        total.index_add_(0, graphs.batch, g)
        mean = (total / graphs.n_atoms.to(time_atom.dtype)).clamp(0, 1)
        return torch.round(mean * (self.n_steps - 1)).long()


class Relaxer:
    """The samplers' model interface over one joint model or a (noise, time) pair."""

    def __init__(self, noise: MoreRedModel, time: Optional[MoreRedModel] = None):
        if noise.kind == "joint":
            time = time or noise
        if noise.kind not in ("noise", "joint") or (time is not None and time.kind not in ("time", "joint")):
            raise ValueError(f"Relaxer needs a noise (or joint) model and a time (or joint) model; got "
                             f"{noise.kind} and {None if time is None else time.kind}")
        self.noise_model, self.time_model, self.schedule = noise, time, noise.schedule

    def parameters(self):
        """The noise model's weights (their dtype and device are the relaxation's)."""
        return self.noise_model.parameters()

    def predict_index(self, graphs: GraphBatch) -> torch.Tensor:
        if self.time_model is None:
            raise ValueError("this sampler needs a time predictor (relaxation.time_checkpoint)")
        return self.time_model.index_from_time(self.time_model(graphs)["time"], graphs)

    def noise(self, graphs: GraphBatch, k: torch.Tensor) -> torch.Tensor:
        return self.noise_model(graphs, k)["eps"]

    def index_and_noise(self, graphs: GraphBatch):
        if self.noise_model.kind != "joint":
            raise ValueError("the jt sampler needs a joint model")
        out = self.noise_model(graphs)
        return self.noise_model.index_from_time(out["time"], graphs), out["eps"]
