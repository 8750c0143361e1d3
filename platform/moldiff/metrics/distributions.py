"""Distribution metrics between sample sets and a reference set.

Histogram metrics bin on the *reference's* range; samples outside it are not spread into the
bins but reported separately as ``frac_outside`` (with bins over the union range, a few exploded
samples can widen the bins enough to hide a bad result below the noise floor). Inside the range,
both histograms are normalised over their in-range counts (the iDEM/PSM convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


def pair_distances(pos) -> np.ndarray:
    """All pair distances i < j, pooled over molecules: [S, n, 3] array or list of [n_i, 3]."""
    if isinstance(pos, np.ndarray) and pos.ndim == 3:
        n = pos.shape[1]
        i, j = np.triu_indices(n, k=1)
        return np.linalg.norm(pos[:, i] - pos[:, j], axis=-1).reshape(-1)
    parts = []
    for p in pos:
        i, j = np.triu_indices(len(p), k=1)
        parts.append(np.linalg.norm(p[i] - p[j], axis=-1))
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass
class HistogramPair:
    p: np.ndarray            # samples, normalised over in-range counts
    q: np.ndarray            # reference
    edges: np.ndarray
    frac_outside: float      # fraction of sample values outside the reference range
    n_inside: int


def histograms_on_reference(samples: np.ndarray, reference: np.ndarray, bins: int) -> HistogramPair:
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1)
    if reference.size == 0 or samples.size == 0:
        raise ValueError("histogram metrics need non-empty sample and reference sets")
    finite = np.isfinite(samples)
    q_counts, edges = np.histogram(reference, bins=bins)
    inside = finite & (samples >= edges[0]) & (samples <= edges[-1])
    p_counts, _ = np.histogram(samples[inside], bins=edges)
    n_inside = int(inside.sum())
    p = p_counts / n_inside if n_inside else np.zeros(bins)
    return HistogramPair(p, q_counts / q_counts.sum(), edges, 1.0 - n_inside / samples.size, n_inside)


def total_variation(h: HistogramPair) -> float:
    """0.5 sum |p - q| over bins; 1 when no sample falls inside the reference range."""
    return 1.0 if h.n_inside == 0 else float(0.5 * np.abs(h.p - h.q).sum())


def density_mae(h: HistogramPair) -> float:
    """Mean absolute error between the density-normalised histograms (h(r) MAE)."""
    width = np.diff(h.edges)
    return float(np.mean(np.abs(h.p / width - h.q / width)))


def distance_tvd(samples_pos, reference_pos, bins: int = 200) -> tuple[float, float]:
    """Distance TVD and the fraction of sample distances outside the reference range."""
    h = histograms_on_reference(pair_distances(samples_pos), pair_distances(reference_pos), bins)
    return total_variation(h), h.frac_outside


def hr_mae(samples_pos, reference_pos, bins: int = 200) -> float:
    return density_mae(histograms_on_reference(pair_distances(samples_pos), pair_distances(reference_pos), bins))


def energy_tvd(samples_energy, reference_energy, bins: int = 50) -> tuple[float, float]:
    h = histograms_on_reference(samples_energy, reference_energy, bins)
    return total_variation(h), h.frac_outside


def wasserstein2(a: np.ndarray, b: np.ndarray, max_points: int | None = None, seed: int = 0) -> float:
    """Exact 2-Wasserstein distance between two equal-weight point clouds (rows = points).

    With equal sizes the optimal plan is a permutation, found by the Hungarian algorithm; the larger
    set is subsampled to the smaller one's size (and both to ``max_points``) without replacement.
    Coordinates are compared as given (flattened, no alignment), as in the iDEM/PSM benchmarks.
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    n = min(len(a), len(b), max_points or len(a), max_points or len(b))
    rng = np.random.default_rng(seed)
    if len(a) > n:
        a = a[rng.choice(len(a), n, replace=False)]
    if len(b) > n:
        b = b[rng.choice(len(b), n, replace=False)]
    cost = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    cost = np.maximum(cost, 0.0)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def hr_curve(pos, edges: np.ndarray) -> np.ndarray:
    """Density-normalised pair-distance histogram on given edges (for plots)."""
    d = pair_distances(pos)
    counts, _ = np.histogram(d, bins=edges)
    return counts / max(counts.sum(), 1) / np.diff(edges)
