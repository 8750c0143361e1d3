"""Denoising score matching in the epsilon form (lambda(t) = 1):

    L = E_{t ~ U(t_min, 1), x_0, eps} || eps_theta(alpha_t x_0 + sigma_t eps, t) - eps ||^2

averaged over the 3n coordinates of each molecule, then over molecules.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.batch import GraphBatch
from ..diffusion.process import noise_batch, sample_time
from ..diffusion.schedules import NoiseSchedule

# time bins for the per-interval loss logged beside the total
_T_BINS = (0.0, 0.1, 0.5, 1.0)


def per_molecule_mse(pred: torch.Tensor, target: torch.Tensor, graphs: GraphBatch) -> torch.Tensor:
    sq = ((pred - target) ** 2).sum(-1)
    total = torch.zeros(graphs.num_graphs, dtype=sq.dtype, device=sq.device).index_add_(0, graphs.batch, sq)
    return total / (3.0 * graphs.n_atoms.to(sq.dtype))


def time_binned(values: torch.Tensor, t: torch.Tensor, name: str) -> dict[str, float]:
    logs = {}
    for lo, hi in zip(_T_BINS[:-1], _T_BINS[1:]):
        mask = (t >= lo) & (t < hi) if hi < 1.0 else (t >= lo)
        if mask.any():
            logs[f"{name}_t{lo:g}-{hi:g}"] = float(values[mask].mean())
    return logs


class DenoisingScoreMatching:
    name = "dsm"

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule

    def __call__(self, model, graphs: GraphBatch, generator: Optional[torch.Generator] = None):
        t = sample_time(graphs.num_graphs, self.schedule.t_min, generator, graphs.pos.device, graphs.pos.dtype)
        xt, _, eps = noise_batch(self.schedule, graphs, t, generator)
        pred = model(graphs.with_pos(xt), t)["eps"]
        per_mol = per_molecule_mse(pred, eps, graphs)
        loss = per_mol.mean()
        logs = {"loss": float(loss.detach()), **time_binned(per_mol.detach(), t, "loss")}
        return loss, logs
