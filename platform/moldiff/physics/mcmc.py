"""Metropolis-adjusted Langevin (MALA) on many independent chains at once."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

EnergyForces = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ChainResult:
    positions: np.ndarray      # [n_saved, n_chains, n, 3]
    acceptance: float


def mala(
    energy_and_forces: EnergyForces,
    x0: np.ndarray,
    kT: float,
    step_size: float,
    burn_in: int,
    n_steps: int,
    save_every: int,
    seed: int,
    progress: Optional[Callable[[str], None]] = None,
    progress_label: str = "mala",
) -> ChainResult:
    """Run MALA from ``x0`` [n_chains, n, 3]; return frames saved every ``save_every`` steps after burn-in.

    Proposal x' = x + h F(x)/kT + sqrt(2h) xi, accepted with the Metropolis-Hastings ratio, so every
    chain leaves the Boltzmann density exp(-E/kT) invariant.
    """
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.as_tensor(x0, dtype=torch.float64).clone()
    h = float(step_size)
    e, f = energy_and_forces(x)
    saved, accepted, proposed = [], 0.0, 0
    total = burn_in + n_steps
    report_every = max(1, total // 10)
    t_start = time.time()
    for step in range(1, total + 1):
        mean_fwd = x + (h / kT) * f
        y = mean_fwd + np.sqrt(2 * h) * torch.randn(x.shape, generator=gen, dtype=x.dtype)
        e_y, f_y = energy_and_forces(y)
        mean_bwd = y + (h / kT) * f_y
        log_q_fwd = -((y - mean_fwd) ** 2).sum((-1, -2)) / (4 * h)
        log_q_bwd = -((x - mean_bwd) ** 2).sum((-1, -2)) / (4 * h)
        log_ratio = -(e_y - e) / kT + log_q_bwd - log_q_fwd
        log_ratio = torch.nan_to_num(log_ratio, nan=-np.inf)
        accept = torch.log(torch.rand(log_ratio.shape, generator=gen, dtype=x.dtype)) < log_ratio
        x = torch.where(accept[:, None, None], y, x)
        e = torch.where(accept, e_y, e)
        f = torch.where(accept[:, None, None], f_y, f)
        if step > burn_in:
            accepted += accept.double().mean().item()
            proposed += 1
            if (step - burn_in) % save_every == 0:
                saved.append(x.numpy().copy())
        if progress is not None and step % report_every == 0:
            progress(f"[{progress_label}] step {step}/{total} ({time.time() - t_start:.0f}s)")
    positions = np.stack(saved) if saved else np.zeros((0,) + tuple(x.shape))
    return ChainResult(positions=positions, acceptance=accepted / max(proposed, 1))
