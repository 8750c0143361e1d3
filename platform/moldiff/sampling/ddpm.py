"""Ancestral (DDPM) sampling on a discrete schedule, in the zero centre-of-geometry subspace,
for molecules of different sizes in one batch (UniGEM Eq. 6, EDM):

    x_{s-1} = x_s / a_{s|s-1} - sigma_{s|s-1}^2 / (a_{s|s-1} sigma_s) eps_hat
              + (sigma_{s|s-1} sigma_{s-1} / sigma_s) z,
    a_{s|s-1} = a_s / a_{s-1},  sigma_{s|s-1}^2 = sigma_s^2 - a_{s|s-1}^2 sigma_{s-1}^2,

from x_T ~ N(0, I) down to step 0, then x_0 = (x - sigma_0 eps_hat) / a_0 from one last network
call at s = 0, whose outputs also give the atom types (UniGEM: the type head; EDM joint: the
denoised type channels, which follow the same update without centring).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from ..data.batch import GraphBatch
from ..diffusion.process import per_atom, remove_mean
from ..diffusion.schedules import PolynomialSchedule


def size_distribution(n_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, probabilities) of the training set's atom counts."""
    sizes, counts = np.unique(np.asarray(n_atoms), return_counts=True)
    return sizes, counts / counts.sum()


def sample_sizes(sizes: np.ndarray, probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(sizes, size=n, p=probs)


def empty_batch(n_atoms: np.ndarray, dtype=torch.float32, device=None) -> GraphBatch:
    """Molecules of the given sizes with placeholder atoms (z = 0) at the origin."""
    n = torch.tensor(np.asarray(n_atoms), dtype=torch.long, device=device)
    total = int(n.sum())
    return GraphBatch(z=torch.zeros(total, dtype=torch.long, device=device),
                      pos=torch.zeros(total, 3, dtype=dtype, device=device),
                      batch=torch.repeat_interleave(torch.arange(len(n), device=device), n), n_atoms=n)


@torch.no_grad()
def ancestral_sample(model, schedule: PolynomialSchedule, graphs: GraphBatch, generator: Optional[torch.Generator] = None,
                     n_types: int = 0, progress: Optional[Callable[[int], None]] = None):
    """Returns (x_0 [N, 3], outputs of the final network call, denoised types [N, n_types] or None).
    ``n_types`` > 0 diffuses type channels too (EDM joint diffusion); ``graphs`` fixes the sizes."""
    dtype, device = graphs.pos.dtype, graphs.pos.device
    B, T = graphs.num_graphs, schedule.n_steps

    def noise_like(x, centred):
        z = torch.randn(x.shape, generator=generator, dtype=dtype, device=device)
        return remove_mean(z, graphs.batch, graphs.n_atoms) if centred else z

    x = noise_like(graphs.pos, True)
    h = noise_like(torch.empty(graphs.num_atoms, n_types), False) if n_types else None
    a2 = schedule.alpha2.to(dtype=torch.float64, device="cpu")     # step constants on the host: no device waits
    for s in range(T, 0, -1):
        t = torch.full((B,), s / T, dtype=dtype, device=device)
        out = model(graphs.with_pos(x), t, h)
        a_s, a_p = a2[s].sqrt(), a2[s - 1].sqrt()
        sig_s, sig_p = (1 - a2[s]).sqrt(), (1 - a2[s - 1]).sqrt()
        a_ts = a_s / a_p
        sig2_ts = sig_s ** 2 - a_ts ** 2 * sig_p ** 2
        coef, std = float(sig2_ts / (a_ts * sig_s)), float(sig2_ts.sqrt() * sig_p / sig_s)
        x = x / float(a_ts) - coef * out["eps"] + std * noise_like(x, True)
        if h is not None:
            h = h / float(a_ts) - coef * out["eps_types"] + std * noise_like(h, False)
        if progress is not None:
            progress(T - s + 1)
    t0 = torch.zeros(B, dtype=dtype, device=device)
    out = model(graphs.with_pos(x), t0, h)
    a0, sig0 = float(a2[0].sqrt()), float((1 - a2[0]).sqrt())
    x0 = remove_mean((x - sig0 * out["eps"]) / a0, graphs.batch, graphs.n_atoms)
    h0 = (h - sig0 * out["eps_types"]) / a0 if h is not None else None
    return x0, out, h0


def exact_gaussian_eps(std: float, schedule: PolynomialSchedule) -> Callable:
    """The exact noise prediction for data x_0 ~ N(0, std^2 I) in the centred subspace: a model for
    testing the sampler, E[eps | x_t] = sigma_t x_t / (alpha_t^2 std^2 + sigma_t^2)."""
    def model(graphs: GraphBatch, t: torch.Tensor, h=None) -> dict:
        alpha, sigma = schedule.alpha_sigma(t)
        scale = sigma / (alpha ** 2 * std ** 2 + sigma ** 2)
        return {"eps": per_atom(scale, graphs.batch) * graphs.pos}
    return model
