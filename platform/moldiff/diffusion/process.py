"""The forward process on graph batches, kept in the zero centre-of-geometry subspace.

Molecules have no preferred position, so coordinates, noise, network outputs and samples all live
in the subspace where each molecule's centre of geometry is zero (EDM's "mean-free" convention).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.batch import GraphBatch
from .schedules import NoiseSchedule


def molecule_mean(x: torch.Tensor, batch: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
    """Per-molecule mean of atom vectors: [N, d] -> [B, d]."""
    total = torch.zeros(n_atoms.shape[0], x.shape[-1], dtype=x.dtype, device=x.device).index_add_(0, batch, x)
    return total / n_atoms.to(x.dtype).unsqueeze(-1)


def remove_mean(x: torch.Tensor, batch: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
    return x - molecule_mean(x, batch, n_atoms)[batch]


def centred_noise(like: GraphBatch, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    eps = torch.randn(like.pos.shape, generator=generator, dtype=like.pos.dtype, device=like.pos.device)
    return remove_mean(eps, like.batch, like.n_atoms)


def sample_time(n: int, t_min: float, generator=None, device=None, dtype=torch.float32) -> torch.Tensor:
    return t_min + (1.0 - t_min) * torch.rand(n, generator=generator, device=device, dtype=dtype)


def per_atom(values: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """[B] -> [N, 1] broadcastable against atom vectors."""
    return values[batch].unsqueeze(-1)


def noise_batch(schedule: NoiseSchedule, graphs: GraphBatch, t: torch.Tensor, generator=None):
    """x_t = alpha_t x_0 + sigma_t eps with x_0 and eps centred; returns (x_t, x_0, eps)."""
    x0 = remove_mean(graphs.pos, graphs.batch, graphs.n_atoms)
    eps = centred_noise(graphs, generator)
    alpha, sigma = schedule.alpha_sigma(t)
    xt = per_atom(alpha, graphs.batch) * x0 + per_atom(sigma, graphs.batch) * eps
    return xt, x0, eps
