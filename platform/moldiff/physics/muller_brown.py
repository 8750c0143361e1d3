"""The Müller-Brown potential (the 2-D test system of the Fokker-Planck paper, its eq. 32).

    U(x, y) = sum_k A_k exp(a_k (x - x0_k)^2 + b_k (x - x0_k)(y - y0_k) + c_k (y - y0_k)^2)

with the standard parameters below. Its three minima (A global, B, C) are in ``MINIMA``; at
kT = 23 (the paper's temperature, in the potential's own units) the equilibrium basin
populations are about A 0.75 / B 0.14 / C 0.11.
"""
from __future__ import annotations

import numpy as np
import torch

A = (-200.0, -100.0, -170.0, 15.0)
a = (-1.0, -1.0, -6.5, 0.7)
b = (0.0, 0.0, 11.0, 0.6)
c = (-10.0, -10.0, -6.5, 0.7)
X0 = (1.0, 0.0, -0.5, -1.0)
Y0 = (0.0, 0.5, 1.5, 1.0)

# (x, y) of the minima and their energies (found by minimising U from nearby starts; see the tests)
MINIMA = {"A": (-0.55822, 1.44173), "B": (0.62350, 0.02804), "C": (-0.05001, 0.46669)}
MINIMUM_ENERGY = {"A": -146.6995, "B": -108.1667, "C": -80.7678}
KT = 23.0


def energy(xy: torch.Tensor) -> torch.Tensor:
    """U at ``xy`` [..., 2] -> [...] (differentiable)."""
    x, y = xy[..., 0], xy[..., 1]
    total = torch.zeros_like(x)
    for Ak, ak, bk, ck, xk, yk in zip(A, a, b, c, X0, Y0):
        dx, dy = x - xk, y - yk
        total = total + Ak * torch.exp(ak * dx * dx + bk * dx * dy + ck * dy * dy)
    return total


def energy_np(xy: np.ndarray) -> np.ndarray:
    x, y = np.asarray(xy, dtype=np.float64)[..., 0], np.asarray(xy, dtype=np.float64)[..., 1]
    total = np.zeros_like(x)
    for Ak, ak, bk, ck, xk, yk in zip(A, a, b, c, X0, Y0):
        dx, dy = x - xk, y - yk
        total += Ak * np.exp(ak * dx * dx + bk * dx * dy + ck * dy * dy)
    return total


def forces_np(xy: np.ndarray) -> np.ndarray:
    """-grad U at ``xy`` [..., 2], analytic."""
    xy = np.asarray(xy, dtype=np.float64)
    x, y = xy[..., 0], xy[..., 1]
    gx, gy = np.zeros_like(x), np.zeros_like(y)
    for Ak, ak, bk, ck, xk, yk in zip(A, a, b, c, X0, Y0):
        dx, dy = x - xk, y - yk
        e = Ak * np.exp(ak * dx * dx + bk * dx * dy + ck * dy * dy)
        gx += e * (2 * ak * dx + bk * dy)
        gy += e * (bk * dx + 2 * ck * dy)
    return -np.stack([gx, gy], -1)


def nearest_minimum(xy: np.ndarray) -> np.ndarray:
    """Index (0 = A, 1 = B, 2 = C) of the nearest minimum of each point: the basin assignment
    behind the populations that results report."""
    centres = np.array(list(MINIMA.values()))
    d = np.linalg.norm(np.asarray(xy)[..., None, :] - centres, axis=-1)
    return d.argmin(-1)


def basin_populations(xy: np.ndarray) -> dict[str, float]:
    labels = nearest_minimum(np.asarray(xy).reshape(-1, 2))
    counts = np.bincount(labels, minlength=len(MINIMA))
    return {name: float(n / max(len(labels), 1)) for name, n in zip(MINIMA, counts)}


def exact_populations(kT: float = KT, grid: int = 1201) -> dict[str, float]:
    """Boltzmann basin populations by quadrature on a grid that holds all the weight (the
    nearest-minimum basins of ``basin_populations``): what sampled populations are judged against."""
    xs, ys = np.linspace(-3.0, 2.5, grid), np.linspace(-1.5, 3.5, grid)
    pts = np.stack(np.meshgrid(xs, ys, indexing="ij"), -1)
    u = energy_np(pts)
    w = np.exp(-(u - u.min()) / kT)
    labels = nearest_minimum(pts)
    return {name: float(w[labels == k].sum() / w.sum()) for k, name in enumerate(MINIMA)}
