"""Reverse-SDE sampling of flat state vectors x [B, D] (Müller-Brown and other systems without
atoms), with any model that has ``score(x, t)``: Euler-Maruyama on

    dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dW-bar

from t = 1 (the prior N(0, prior_std^2 I)) down to t_end over a uniform grid of ``n_steps``
intervals, as the Fokker-Planck paper's code does; the last noisy iterate is returned.
Also the force field of a trained model for Langevin simulation: F(x) = kT s(x, t_sim).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from ..diffusion.schedules import NoiseSchedule


@torch.no_grad()
def reverse_em(model, schedule: NoiseSchedule, n: int, dim: int, n_steps: int, generator: torch.Generator,
               t_end: float = 0.0, dtype=torch.float64, progress: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """On the generator's device (the model's); the time grid and schedule values stay on the host."""
    device = generator.device
    times = torch.linspace(1.0, t_end, n_steps + 1, dtype=dtype)
    x = schedule.prior_std * torch.randn(n, dim, generator=generator, dtype=dtype, device=device)
    for k in range(n_steps):
        t, dt = times[k], float(times[k] - times[k + 1])
        tb = torch.full((n,), float(t), dtype=_param_dtype(model), device=device)
        score = model.score(x.to(_param_dtype(model)), tb).to(dtype)
        g2 = float(schedule.g2(t))
        drift = float(schedule.drift_coeff(t)) * x - g2 * score
        x = x - drift * dt + math.sqrt(g2 * dt) * torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        if progress is not None:
            progress(k + 1)
    return x


def learned_forces(model, kT: float, t_sim: float, scale: float = 1.0) -> Callable:
    """F(x) = kT * s(x, t_sim) for ``sampling.langevin``: numpy states give numpy forces (through
    the model on the CPU), torch states float64 forces on their own device (the model's). A model
    trained on states divided by ``scale`` gives, by the chain rule, F(x) = kT * s(x / scale, t_sim) / scale."""
    dtype = _param_dtype(model)

    def forces(x):
        on_host = isinstance(x, np.ndarray)
        xt = torch.as_tensor(x / scale, dtype=dtype)
        t = torch.full((xt.shape[0],), float(t_sim), dtype=dtype, device=xt.device)
        f = kT / scale * model.score(xt, t).detach().double()
        return f.cpu().numpy() if on_host else f
    return forces


def _param_dtype(model) -> torch.dtype:
    try:
        return next(model.parameters()).dtype
    except StopIteration:
        return torch.float32
