"""Reverse-time samplers for epsilon models, batched over molecules.

* ``em``: Euler-Maruyama on the reverse SDE dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dW-bar.
* ``pc``: predictor-corrector (Song et al. 2021). The predictor is the ancestral step: the exact
  Gaussian posterior q(x_s | x_t, x_0 = x0_hat) of the forward chain between two grid times, which
  is a consistent discretisation of the reverse SDE for VE and VP alike; each predictor step is
  followed by ``n_corrector`` Langevin steps with the signal-to-noise step rule
  eps = 2 (snr <|z|> / <|s|>)^2, norms per molecule averaged over the batch as in Song et al.'s code.
  (A per-molecule step would depend on the state itself: small molecules with few degrees of
  freedom then get pushed outwards and the sampled variance grows by a third.)
* ``final_denoise``: the last state is mapped to its Tweedie estimate x0 = (x - sigma eps)/alpha,
  which removes the sigma_min-sized noise left at t_min.

All noise is drawn in the zero centre-of-geometry subspace, so samples keep zero centre.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..data.batch import GraphBatch, fixed_size_batch, from_arrays
from ..diffusion.process import centred_noise
from ..diffusion.schedules import NoiseSchedule


def template_batch(z: np.ndarray, n_molecules: int) -> GraphBatch:
    """An all-zero batch of ``n_molecules`` copies of composition ``z``."""
    n = len(z)
    return fixed_size_batch(np.asarray(z), np.zeros((n_molecules, n, 3)))


def _molecule_norm(x: torch.Tensor, graphs: GraphBatch) -> torch.Tensor:
    sq = torch.zeros(graphs.num_graphs, dtype=x.dtype, device=x.device).index_add_(0, graphs.batch, (x ** 2).sum(-1))
    return sq.sqrt()


def _eps(model, graphs: GraphBatch, x: torch.Tensor, t: float) -> torch.Tensor:
    tt = torch.full((graphs.num_graphs,), float(t), dtype=x.dtype, device=x.device)
    return model(graphs.with_pos(x), tt)["eps"]


@torch.no_grad()
def sample_positions(
    model,
    schedule: NoiseSchedule,
    template: GraphBatch,
    *,
    sampler: str = "pc",
    n_steps: int = 1000,
    n_corrector: int = 1,
    snr: float = 0.16,
    final_denoise: bool = True,
    generator: Optional[torch.Generator] = None,
    progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Draw one sample per molecule of ``template``; returns positions [N, 3]."""
    if sampler not in ("em", "pc"):
        raise ValueError(f"unknown sampler {sampler!r} (allowed: em, pc)")
    g = template
    grid = torch.linspace(1.0, schedule.t_min, n_steps + 1, dtype=torch.float64).tolist()
    x = schedule.prior_std * centred_noise(g, generator)
    for i in range(n_steps):
        t, s = grid[i], grid[i + 1]
        tt = torch.tensor(t, dtype=torch.float64)
        ss = torch.tensor(s, dtype=torch.float64)
        a_t, sig_t = float(schedule.alpha(tt)), float(schedule.sigma(tt))
        eps = _eps(model, g, x, t)
        if sampler == "em":
            dt = t - s
            score = -eps / sig_t
            drift = float(schedule.drift_coeff(tt)) * x - float(schedule.g2(tt)) * score
            x = x - drift * dt + (float(schedule.g2(tt)) * dt) ** 0.5 * centred_noise(g, generator)
        else:
            a_s, sig_s = float(schedule.alpha(ss)), float(schedule.sigma(ss))
            a_ts = a_t / a_s
            var_ts = max(sig_t ** 2 - a_ts ** 2 * sig_s ** 2, 0.0)
            x0_hat = (x - sig_t * eps) / a_t
            mean = (a_ts * sig_s ** 2 / sig_t ** 2) * x + (a_s * var_ts / sig_t ** 2) * x0_hat
            std = (var_ts * sig_s ** 2 / sig_t ** 2) ** 0.5
            x = mean + std * centred_noise(g, generator)
            for _ in range(n_corrector):
                score = -_eps(model, g, x, s) / sig_s
                z = centred_noise(g, generator)
                # means over molecules that are still finite: one diverged molecule must not turn the
                # step, and with it the whole batch, into NaN
                # (masked sums, not boolean indexing: the step stays on the device, no wait for it)
                z_norm, s_norm = _molecule_norm(z, g), _molecule_norm(score, g)
                ok = torch.isfinite(s_norm).to(z_norm.dtype)
                n_ok = ok.sum()
                z_mean = (z_norm * ok).sum() / n_ok.clamp(min=1)
                s_mean = (torch.where(ok > 0, s_norm, 0.0)).sum() / n_ok.clamp(min=1)
                ratio = torch.where(n_ok > 0, z_mean / s_mean.clamp(min=1e-12), 0.0)
                step = 2.0 * (snr * ratio) ** 2
                x = x + step * score + (2.0 * step).sqrt() * z
        if progress is not None:
            progress(i + 1, n_steps)
    if final_denoise:
        t = grid[-1]
        tt = torch.tensor(t, dtype=torch.float64)
        x = (x - float(schedule.sigma(tt)) * _eps(model, g, x, t)) / float(schedule.alpha(tt))
    return x
