"""Denoising and potential score matching in the epsilon form: one objective, one code path.

    target_t = (1 - w_t) eps + w_t (-sigma_t F(x_0) / (alpha_t kT))
    L = E_{t ~ U(t_min, 1), x_0, eps} || eps_theta(alpha_t x_0 + sigma_t eps, t) - target_t ||^2

The second term is the PSM label (Theorem 1 of the PSM paper: the noised score is the posterior mean
of F / (alpha_t kT)). The force weight w_t chooses the method:

    dsm                 w = 0
    piecewise           w = 1 for t <= t_p, else 0
    piecewise_weighted  w = 1 / (1 + exp(s (t - t_c))) for t < t_cut (no cut when t_cut is null), else 0
    force_only          w = 1 (pure PSM; noisy at large t, for ablations)

The loss is averaged over the 3n coordinates of each molecule, then over molecules (lambda(t) = 1).
Forces are projected onto the zero centre-of-geometry subspace, where noise and outputs live.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..data.batch import GraphBatch
from ..diffusion.process import noise_batch, per_atom, remove_mean
from ..diffusion.schedules import NoiseSchedule
from ..train.logs import Masked, masked_mean

# time bins for the per-interval loss logged beside the total
_T_BINS = (0.0, 0.1, 0.5, 1.0)
WEIGHTINGS = ("dsm", "piecewise", "piecewise_weighted", "force_only")


def per_molecule_mse(pred: torch.Tensor, target: torch.Tensor, graphs: GraphBatch) -> torch.Tensor:
    sq = ((pred - target) ** 2).sum(-1)
    total = torch.zeros(graphs.num_graphs, dtype=sq.dtype, device=sq.device).index_add_(0, graphs.batch, sq)
    return total / (3.0 * graphs.n_atoms.to(sq.dtype))


def time_binned(values: torch.Tensor, t: torch.Tensor, name: str) -> dict[str, Masked]:
    """``values`` [B] per diffusion-time bin, as sums and counts (every bin, empty ones too, so all
    ranks log the same keys; nothing leaves the device)."""
    logs = {}
    for lo, hi in zip(_T_BINS[:-1], _T_BINS[1:]):
        mask = (t >= lo) & (t < hi) if hi < 1.0 else (t >= lo)
        logs[f"{name}_t{lo:g}-{hi:g}"] = masked_mean(values, mask)
    return logs


@dataclass(frozen=True)
class ForceWeight:
    """w_t of the objective above."""

    mode: str = "dsm"
    t_p: float = 0.05
    sharpness: float = 50.0
    t_c: float = 0.05
    t_cut: Optional[float] = 0.1

    def __post_init__(self):
        if self.mode not in WEIGHTINGS:
            raise ValueError(f"unknown force weighting {self.mode!r}; allowed: {', '.join(WEIGHTINGS)}")

    @property
    def uses_forces(self) -> bool:
        return self.mode != "dsm"

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.mode == "dsm":
            return torch.zeros_like(t)
        if self.mode == "force_only":
            return torch.ones_like(t)
        if self.mode == "piecewise":
            return (t <= self.t_p).to(t.dtype)
        w = torch.sigmoid(-self.sharpness * (t - self.t_c))       # = 1 / (1 + exp(s (t - t_c)))
        if self.t_cut is not None:
            w = torch.where(t < self.t_cut, w, torch.zeros_like(w))
        return w

    def describe(self) -> str:
        if self.mode == "piecewise":
            return f"piecewise (t_p={self.t_p:g})"
        if self.mode == "piecewise_weighted":
            cut = "no cut" if self.t_cut is None else f"cut at t={self.t_cut:g}"
            return f"piecewise_weighted (s={self.sharpness:g}, t_c={self.t_c:g}, {cut})"
        return self.mode


class ScoreMatching:
    def __init__(self, schedule: NoiseSchedule, weight: ForceWeight = ForceWeight(), kT: Optional[float] = None,
                 interval: Optional[tuple[float, float]] = None):
        """``interval``: the diffusion times trained on (a time-interval expert's own); default (t_min, 1)."""
        if weight.uses_forces and (kT is None or not kT > 0):
            raise ValueError(f"{weight.describe()} needs kT > 0 (objective.psm.kT or the dataset manifest), got {kT}")
        self.schedule, self.weight, self.kT = schedule, weight, kT
        self.interval = interval or (schedule.t_min, 1.0)
        self.name = weight.mode

    def target(self, graphs: GraphBatch, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """(1 - w_t) eps + w_t (-sigma_t F / (alpha_t kT)), per atom."""
        w = self.weight(t)
        if not self.weight.uses_forces:
            return eps
        if graphs.forces is None:
            raise ValueError(f"objective '{self.weight.describe()}' needs force labels, but the training batch has none "
                             "(the dataset has no 'forces' column)")
        alpha, sigma = self.schedule.alpha_sigma(t)
        forces = remove_mean(graphs.forces, graphs.batch, graphs.n_atoms)
        force_eps = -per_atom(sigma / (alpha * self.kT), graphs.batch) * forces
        w_atom = per_atom(w, graphs.batch)
        return (1.0 - w_atom) * eps + w_atom * force_eps

    def __call__(self, model, graphs: GraphBatch, generator: Optional[torch.Generator] = None):
        t_lo, t_hi = self.interval
        t = t_lo + (t_hi - t_lo) * torch.rand(graphs.num_graphs, generator=generator, device=graphs.pos.device,
                                              dtype=graphs.pos.dtype)
        xt, _, eps = noise_batch(self.schedule, graphs, t, generator)
        pred = model(graphs.with_pos(xt), t)["eps"]
        per_mol = per_molecule_mse(pred, self.target(graphs, t, eps), graphs)
        loss = per_mol.mean()
        logs = {"loss": loss.detach(), **time_binned(per_mol.detach(), t, "loss")}
        if self.weight.uses_forces:
            # the plain DSM error, comparable between modes (the loss itself is not: its targets differ)
            logs["eps_mse"] = per_molecule_mse(pred.detach(), eps, graphs).mean()
            logs["force_weight_mean"] = self.weight(t).mean()
        return loss, logs
