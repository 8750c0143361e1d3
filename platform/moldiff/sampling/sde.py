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
* ``time_grid``: ``linear`` in t (for the geometric VE schedule that is already log-spaced in
  sigma); ``power``: t_i = t_min + (1 - t_min)(1 - i/N)^rho, a fraction t_p^(1/rho) of the steps
  at t <= t_p (rho 2, t_p 0.05: 22% against linear's 5%); or ``edm``: Karras et al.'s grid sigma_i =
  (sigma_max^(1/rho) + i/N (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho mapped back to t (on the
  geometric VE schedule this puts *fewer* steps at small t than linear: 8 of 250 below t = 0.05
  for VE 0.01-8, rho 7, against 13).
* ``window`` (:class:`WindowRefinement`): where a model learned its score from force labels (PSM's
  window t <= t_p), spend sampling effort there: extra corrector steps for every predictor step
  that lands inside the window, and a Langevin run at t_min after the reverse diffusion,
  x <- x + dt s(x, t_min) + sqrt(2 dt) z (unadjusted Langevin on p_tmin, dt in the score's units:
  at kT = 1 one step advances the overdamped dynamics by dt time units). An ``oracle`` replaces
  the learned score inside the window by a potential's exact one (for LJ: F(x) / kT, the t -> 0
  limit), so that a results page can show what a perfect window would give with the same sampler.

All noise is drawn in the zero centre-of-geometry subspace, so samples keep zero centre.
"""
from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class WindowRefinement:
    t_window: float = 0.05             # the window: t <= t_window
    correctors: int = 0                # extra corrector steps per predictor step landing in the window
    langevin_steps: int = 0            # Langevin steps at t_min after the reverse diffusion
    langevin_dt: float = 1e-3
    # positions [N, 3] of the template's molecules -> their exact score [N, 3], used inside the window
    oracle: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def inside(self, t: float) -> bool:
        return t <= self.t_window * (1 + 1e-9)

    def model_calls(self, n_steps: int, grid: list[float], n_corrector: int) -> int:
        """Score evaluations per molecule of a PC run with this refinement (compile decisions, costs)."""
        in_window = sum(1 for s in grid[1:] if self.inside(s))
        return n_steps * (1 + n_corrector) + in_window * self.correctors + self.langevin_steps


NO_REFINEMENT = WindowRefinement()


def time_grid(schedule: NoiseSchedule, n_steps: int, kind: str = "linear", rho: float = 7.0) -> list[float]:
    """n_steps + 1 times from 1 down to t_min."""
    if kind == "linear":
        return torch.linspace(1.0, schedule.t_min, n_steps + 1, dtype=torch.float64).tolist()
    if kind == "power":
        frac = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
        return (schedule.t_min + (1.0 - schedule.t_min) * (1.0 - frac) ** rho).tolist()
    if kind != "edm":
        raise ValueError(f"unknown time_grid {kind!r} (allowed: linear, power, edm)")
    lo, hi = (float(schedule.sigma(torch.tensor(t, dtype=torch.float64))) for t in (schedule.t_min, 1.0))
    frac = torch.linspace(0.0, 1.0, n_steps + 1, dtype=torch.float64)
    sigmas = (hi ** (1 / rho) + frac * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    # sigma(t) increases with t: invert it by bisection (any schedule)
    a = torch.full_like(sigmas, schedule.t_min)
    b = torch.ones_like(sigmas)
    for _ in range(80):
        mid = 0.5 * (a + b)
        below = schedule.sigma(mid) < sigmas
        a, b = torch.where(below, mid, a), torch.where(below, b, mid)
    grid = (0.5 * (a + b)).tolist()
    grid[0], grid[-1] = 1.0, schedule.t_min
    return grid


def _eps(model, graphs: GraphBatch, x: torch.Tensor, t: float,
         window: WindowRefinement = NO_REFINEMENT, sigma: Optional[float] = None) -> torch.Tensor:
    if window.oracle is not None and window.inside(t):
        return -sigma * window.oracle(x)          # eps = -sigma_t * score
    tt = torch.full((graphs.num_graphs,), float(t), dtype=x.dtype, device=x.device)
    return model(graphs.with_pos(x), tt)["eps"]


def _corrector_step(score: torch.Tensor, x: torch.Tensor, g: GraphBatch, snr: float, generator) -> torch.Tensor:
    """One Langevin corrector step with the signal-to-noise step rule."""
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
    return x + step * score + (2.0 * step).sqrt() * z


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
    grid: str = "linear",
    grid_rho: float = 7.0,
    window: WindowRefinement = NO_REFINEMENT,
) -> torch.Tensor:
    """Draw one sample per molecule of ``template``; returns positions [N, 3]."""
    if sampler not in ("em", "pc"):
        raise ValueError(f"unknown sampler {sampler!r} (allowed: em, pc)")
    g = template
    times = time_grid(schedule, n_steps, grid, grid_rho)
    x = schedule.prior_std * centred_noise(g, generator)
    for i in range(n_steps):
        t, s = times[i], times[i + 1]
        tt = torch.tensor(t, dtype=torch.float64)
        ss = torch.tensor(s, dtype=torch.float64)
        a_t, sig_t = float(schedule.alpha(tt)), float(schedule.sigma(tt))
        eps = _eps(model, g, x, t, window, sig_t)
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
            extra = window.correctors if window.inside(s) else 0
            for _ in range(n_corrector + extra):
                x = _corrector_step(-_eps(model, g, x, s, window, sig_s) / sig_s, x, g, snr, generator)
        if progress is not None:
            progress(i + 1, n_steps)
    t = times[-1]
    a_min, sig_min = (float(v) for v in schedule.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
    for _ in range(window.langevin_steps):
        score = -_eps(model, g, x, t, window, sig_min) / sig_min
        x = x + window.langevin_dt * score + (2.0 * window.langevin_dt) ** 0.5 * centred_noise(g, generator)
    if final_denoise:
        x = (x - sig_min * _eps(model, g, x, t, window, sig_min)) / a_min
    return x
