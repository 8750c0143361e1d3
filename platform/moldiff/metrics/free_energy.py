"""2-D free-energy metrics of the Fokker-Planck paper, as its authors' code defines them (those
definitions reproduce the paper's noise floor; see shared/briefs/fokker_planck.md §2.1).

* ``js_divergence``: 2-D histograms of both sets on a common grid, ``linspace(min, max, bins + 1)``
  per axis over the union of both sets, flattened and normalised; the squared Jensen-Shannon
  distance with natural logarithms (maximum ln 2), with no pseudo-count.
* ``pmf_error``: each axis digitised against ``bins - 1`` equally spaced points on [low, high]
  (so ``bins`` bins including the two open-ended outer ones); bins occupied by either set are kept,
  empty ones set to 1e-6; the squared difference of log-probabilities (a free-energy difference in
  kT units, squared) averaged with weights (p_model + p_ref) / 2 normalised to 1.

Both take [n, 2] arrays: (x, y) for Müller-Brown, (phi, psi) for dipeptides.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon

MULLER_BROWN_LIMITS = ((-1.8, 1.1), (-0.5, 2.0))
DIHEDRAL_LIMITS = ((-np.pi, np.pi), (-np.pi, np.pi))


def _finite_2d(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name}: expected an [n, 2] array, got shape {arr.shape}")
    arr = arr[np.isfinite(arr).all(1)]
    if len(arr) == 0:
        raise ValueError(f"{name}: no finite points")
    return arr


def js_divergence(samples, reference, bins: int = 100) -> float:
    p_pts, q_pts = _finite_2d("samples", samples), _finite_2d("reference", reference)
    both = np.concatenate([p_pts, q_pts])
    edges = [np.linspace(both[:, k].min(), both[:, k].max(), bins + 1) for k in range(2)]
    p = np.histogram2d(p_pts[:, 0], p_pts[:, 1], bins=edges)[0].ravel()
    q = np.histogram2d(q_pts[:, 0], q_pts[:, 1], bins=edges)[0].ravel()
    return float(jensenshannon(p / p.sum(), q / q.sum()) ** 2)


def _bin_probabilities(points: np.ndarray, limits, bins: int) -> np.ndarray:
    ix = np.digitize(points[:, 0], np.linspace(*limits[0], bins - 1))
    iy = np.digitize(points[:, 1], np.linspace(*limits[1], bins - 1))
    counts = np.bincount(ix * bins + iy, minlength=bins * bins).astype(np.float64)
    return counts / counts.sum()


def pmf_error(samples, reference, limits=MULLER_BROWN_LIMITS, bins: int = 64, floor: float = 1e-6) -> float:
    p = _bin_probabilities(_finite_2d("samples", samples), limits, bins)
    q = _bin_probabilities(_finite_2d("reference", reference), limits, bins)
    occupied = (p > 0) | (q > 0)
    p, q = np.where(p[occupied] > 0, p[occupied], floor), np.where(q[occupied] > 0, q[occupied], floor)
    weights = (p + q) / 2.0
    return float(np.sum(weights / weights.sum() * (np.log(p) - np.log(q)) ** 2))
