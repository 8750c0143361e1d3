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


def integrated_autocorrelation_time(series: np.ndarray) -> float:
    """tau = 1 + 2 sum_k rho_k for [n_chains, T] series, in units of saved frames.

    rho_k is the autocorrelation pooled over chains; the sum stops at the first non-positive
    value (Geyer's initial positive sequence, simplified)."""
    x = np.asarray(series, dtype=np.float64)
    x = x - x.mean()
    var = (x ** 2).mean()
    if var == 0 or x.shape[1] < 3:
        return 1.0
    tau = 1.0
    for k in range(1, x.shape[1] - 1):
        rho = (x[:, :-k] * x[:, k:]).mean() / var
        if rho <= 0:
            break
        tau += 2.0 * rho
    return float(tau)


def chain_diagnostics(energy: np.ndarray) -> dict:
    """Energy diagnostics of [n_chains, T] saved frames: autocorrelation time, effective sample
    size, and the difference between the first and second half of every chain in units of its
    standard error (a large value means the burn-in was too short)."""
    energy = np.asarray(energy, dtype=np.float64)
    n_chains, T = energy.shape
    tau = integrated_autocorrelation_time(energy)
    ess = n_chains * T / tau
    half = T // 2
    diff = energy[:, half:].mean() - energy[:, :half].mean()
    se = energy.std() * np.sqrt(2.0 / max(ess / 2.0, 1.0))
    return {"energy_autocorr_time_frames": tau, "effective_sample_size": float(ess),
            "halves_mean_difference": float(diff), "halves_difference_in_se": float(diff / se) if se > 0 else 0.0}
