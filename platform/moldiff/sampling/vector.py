"""Reverse-SDE sampling of flat state vectors x [B, D] (Müller-Brown and other systems without
atoms), with any model that has ``score(x, t)``: Euler-Maruyama on

    dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dW-bar

from t = 1 (the prior N(0, prior_std^2 I)) down to t_end over a uniform grid of ``n_steps``
intervals, as the Fokker-Planck paper's code does; the last noisy iterate is returned.
Also the force field of a trained model for Langevin simulation: F(x) = kT s(x, t_sim).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..diffusion.schedules import NoiseSchedule


@torch.no_grad()
def reverse_em(model, schedule: NoiseSchedule, n: int, dim: int, n_steps: int, generator: torch.Generator,
               t_end: float = 0.0, dtype=torch.float64, progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    times = torch.linspace(1.0, t_end, n_steps + 1, dtype=dtype)
    x = schedule.prior_std * torch.randn(n, dim, generator=generator, dtype=dtype)
    for k in range(n_steps):
        t, dt = times[k], float(times[k] - times[k + 1])
        tb = t.expand(n)
        score = model.score(x.to(_param_dtype(model)), tb.to(_param_dtype(model))).to(dtype)
        drift = schedule.drift_coeff(t) * x - schedule.g2(t) * score
        x = x - drift * dt + torch.sqrt(schedule.g2(t) * dt) * torch.randn(x.shape, generator=generator, dtype=dtype)
        if progress is not None:
            progress(k + 1)
    return x


def learned_forces(model, kT: float, t_sim: float, scale: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """F(x) = kT * s(x, t_sim) as a numpy callable for ``sampling.langevin``. A model trained on
    states divided by ``scale`` gives, by the chain rule, F(x) = kT * s(x / scale, t_sim) / scale."""
    dtype = _param_dtype(model)

    def forces(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(x / scale, dtype=dtype)
        t = torch.full((xt.shape[0],), float(t_sim), dtype=dtype)
        return kT / scale * model.score(xt, t).detach().double().numpy()
    return forces


def _param_dtype(model) -> torch.dtype:
    try:
        return next(model.parameters()).dtype
    except StopIteration:
        return torch.float32
