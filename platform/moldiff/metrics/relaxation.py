"""Metrics of the MoreRed relaxation benchmark: RMSD after optimal superposition and the RMSD ratio.

MoreRed (Kahouli et al. 2024) relaxes a distorted starting structure towards its equilibrium
conformation (the *target*) with a reverse diffusion process. Its headline number is the RMSD ratio

    ratio = RMSD(relaxed, target) / RMSD(start, target),

which says what fraction of the initial distance to the target is left after relaxation: 0 is a
perfect relaxation, 1 means no progress, and a ratio above 1 means the relaxation moved *away* from
the target; MoreRed counts those relaxations as failures. A relaxation that diverged (non-finite
positions) is a failure too; it enters the statistics as ratio = inf.

Every RMSD here is taken after optimal superposition (Kabsch): both structures are centred on their
centroids and the proper rotation that minimises the RMSD is found from the SVD of their covariance.
The alignment is needed because the frame of the model's output is arbitrary: an E(3)-equivariant
denoiser may translate and rotate the molecule as a whole, and that rigid motion is no error. Only
proper rotations are allowed (the sign correction of the Kabsch algorithm): a mirror image is a
different molecule if it is chiral, and superposing it by a reflection would hide that.

Atoms are compared in the order given (no permutation search), so the inputs must share the atom
order. Whether the RMSD is over heavy atoms or all atoms is the caller's choice: select the atoms
(e.g. ``pos[z > 1]``) before calling.

All functions are pure, work in float64 on numpy arrays, and return Python floats or numpy arrays.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["bootstrap_errors", "relaxed_stats", "RESULT_STATS", "ERROR_STATS", "kabsch_rotation", "superpose", "kabsch_rmsd", "batch_kabsch_rmsd", "rmsd_ratio",
           "RelaxationSummary", "summarize", "ZERO_RMSD"]

ZERO_RMSD = 1e-8
"""RMSD(start, target) below which the ratio is undefined (Angstrom)."""


# ---------------------------------------------------------------------------------------------------
# input handling

def _coords(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, 3] with n >= 1, got {x.shape}")
    return x


def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    p, q = _coords(p, "p"), _coords(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape (same molecule, same atom order): "
                         f"{p.shape} vs {q.shape}")
    return p, q


def _weights(weights, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape [{n}], got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w / w.sum()


def _centre(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(x - centroid, centroid); x may be [..., n, 3], the centroid is weighted when w is given."""
    c = x.mean(-2, keepdims=True) if w is None else np.einsum("n,...nk->...k", w, x)[..., None, :]
    return x - c, c


def _rotation_from_centred(pc: np.ndarray, qc: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """Kabsch on centred [..., n, 3] stacks: proper rotations R [..., 3, 3] minimising
    sum_i w_i |R p_i - q_i|^2.

    H = P^T W Q = U S V^T; the optimum over orthogonal matrices is V U^T, and when that is a
    reflection (det = -1) the smallest singular direction is flipped: R = V diag(1, 1, d) U^T with
    d = sign(det(V U^T)), which is the optimum over proper rotations."""
    h = np.swapaxes(pc, -1, -2) @ (qc if w is None else w[:, None] * qc)
    u, _, vt = np.linalg.svd(h)
    v = np.swapaxes(vt, -1, -2)
    ut = np.swapaxes(u, -1, -2)
    d = np.where(np.linalg.det(v @ ut) < 0, -1.0, 1.0)
    v = v.copy()
    v[..., :, 2] *= d[..., None]
    return v @ ut


def _rmsd_centred(pc: np.ndarray, qc: np.ndarray, r: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """RMSD from the aligned coordinates themselves (accurate near 0, unlike the S-trace formula)."""
    sq = np.sum((pc @ np.swapaxes(r, -1, -2) - qc) ** 2, axis=-1)        # [..., n]
    msd = sq.mean(-1) if w is None else sq @ w
    return np.sqrt(msd)


# ---------------------------------------------------------------------------------------------------
# one pair

def kabsch_rotation(p, q, weights=None) -> np.ndarray:
    """The proper rotation R [3, 3] (det +1) that best superposes p onto q: R @ (p_i - c_p) ≈ q_i - c_q,
    minimising the (weighted) sum of squared deviations; c_p, c_q are the (weighted) centroids.

    For degenerate point sets (collinear, a single atom) the rotation is not unique; one optimum is
    returned. Raises ValueError on non-finite coordinates."""
    p, q = _pair(p, q)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        raise ValueError("kabsch_rotation needs finite coordinates")
    w = _weights(weights, len(p))
    pc, _ = _centre(p, w)
    qc, _ = _centre(q, w)
    return _rotation_from_centred(pc, qc, w)


def superpose(p, q, weights=None) -> np.ndarray:
    """p moved rigidly (rotation + translation) onto q: [n, 3], with the centroid of q and the
    orientation that minimises the RMSD to q."""
    p, q = _pair(p, q)
    w = _weights(weights, len(p))
    r = kabsch_rotation(p, q, weights)
    pc, _ = _centre(p, w)
    _, cq = _centre(q, w)
    return pc @ r.T + cq


def kabsch_rmsd(p, q, weights=None) -> float:
    """RMSD (Angstrom) between two conformations with the same atom order after optimal superposition:
    sqrt(mean_i |R (p_i - c_p) - (q_i - c_q)|^2) with R from :func:`kabsch_rotation`.

    With ``weights`` (e.g. atomic masses) the centroids, the rotation and the mean are all weighted
    (the mean by w_i / sum w). A structure with non-finite coordinates (a diverged relaxation) is
    infinitely far from anything: the result is inf."""
    p, q = _pair(p, q)
    w = _weights(weights, len(p))
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
        return float("inf")
    pc, _ = _centre(p, w)
    qc, _ = _centre(q, w)
    return float(_rmsd_centred(pc, qc, _rotation_from_centred(pc, qc, w), w))


# ---------------------------------------------------------------------------------------------------
# stacks

def batch_kabsch_rmsd(ps, qs, weights=None) -> np.ndarray:
    """:func:`kabsch_rmsd` over stacks of one molecule size: ps, qs [S, n, 3] -> [S] (one batched SVD).

    ``qs`` may also be a single [n, 3] reference, compared with every structure in ``ps``. Pairs with
    non-finite coordinates get inf, as in :func:`kabsch_rmsd`."""
    ps = np.asarray(ps, dtype=np.float64)
    qs = np.asarray(qs, dtype=np.float64)
    if qs.ndim == 2:
        qs = np.broadcast_to(qs, ps.shape)
    if ps.ndim != 3 or ps.shape[-1] != 3 or ps.shape[1] == 0:
        raise ValueError(f"ps must have shape [S, n, 3] with n >= 1, got {ps.shape}")
    if qs.shape != ps.shape:
        raise ValueError(f"ps and qs must have the same shape: {ps.shape} vs {qs.shape}")
    w = _weights(weights, ps.shape[1])
    out = np.full(len(ps), np.inf)
    ok = np.all(np.isfinite(ps), axis=(1, 2)) & np.all(np.isfinite(qs), axis=(1, 2))
    if ok.any():
        pc, _ = _centre(ps[ok], w)
        qc, _ = _centre(qs[ok], w)
        out[ok] = _rmsd_centred(pc, qc, _rotation_from_centred(pc, qc, w), w)
    return out


# ---------------------------------------------------------------------------------------------------
# the benchmark's ratio

def rmsd_ratio(relaxed, start, target, weights=None) -> float:
    """MoreRed's RMSD ratio: kabsch_rmsd(relaxed, target) / kabsch_rmsd(start, target), each RMSD
    with its own optimal alignment. < 1: the relaxation brought the structure closer to the target;
    > 1: it moved away (a failure in MoreRed).

    Special cases:
    - ``relaxed`` not finite (a diverged relaxation): inf, so that it counts as a failure;
    - RMSD(start, target) < :data:`ZERO_RMSD`: nan. The start already *is* the target up to a rigid
      motion, so there was nothing to relax and the ratio (x / 0) means nothing; it must not be
      counted as a success or a failure (:func:`summarize` reports such items as ``n_nan``).

    ``start`` and ``target`` must be finite (ValueError otherwise): a non-finite reference is a data
    error, not a property of the relaxation."""
    relaxed, target = _pair(relaxed, target)
    start, _ = _pair(start, target)
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(target))):
        raise ValueError("start and target must be finite")
    if not np.all(np.isfinite(relaxed)):
        return float("inf")
    before = kabsch_rmsd(start, target, weights)
    if before < ZERO_RMSD:
        return float("nan")
    return kabsch_rmsd(relaxed, target, weights) / before


# ---------------------------------------------------------------------------------------------------
# summary over many relaxations

@dataclass
class RelaxationSummary:
    """Statistics over many relaxations. Ratio statistics are over the ``n - n_nan`` ratios that are
    not nan (inf included: a diverged relaxation is a failure and pulls the median up, the mean to
    inf); they are nan when no ratio is left."""
    n: int                      # relaxations in total
    n_nan: int                  # ratios that were nan (undefined: start == target), excluded from ratio stats
    n_inf: int                  # ratios that were inf (diverged relaxations), counted as failures
    n_failed: int               # ratios > 1 (inf included)
    failure_fraction: float     # n_failed / (n - n_nan)
    median_ratio: float
    mean_ratio: float           # inf if any relaxation diverged
    ratio_q25: float            # 25% quantile (linear interpolation, inf-aware)
    ratio_q75: float            # 75% quantile
    median_rmsd_after: float    # over all n relaxations (inf for diverged ones)
    median_steps: float         # over all n relaxations
    converged_fraction: float   # over all n relaxations


def _quantile_sorted(x: np.ndarray, q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of an ascending array that may end in
    +inf values. numpy's own interpolation gives inf - inf = nan between two infinite neighbours; here
    any interpolation that involves an infinite upper neighbour with positive weight is inf."""
    if len(x) == 0:
        return float("nan")
    h = (len(x) - 1) * q
    lo = int(np.floor(h))
    hi = min(lo + 1, len(x) - 1)
    t = h - lo
    if t == 0.0 or lo == hi:
        return float(x[lo])
    if np.isinf(x[hi]):
        return float("inf")
    return float(x[lo] + t * (x[hi] - x[lo]))


def summarize(ratios, rmsds_after, steps, converged) -> dict:
    """Summary of many relaxations (one entry per relaxation in each argument) as a dict with the
    fields of :class:`RelaxationSummary`.

    ratios: from :func:`rmsd_ratio`; nan (undefined) entries are counted in ``n_nan`` and left out of
    the ratio statistics, inf (diverged) entries count as failures. rmsds_after: RMSD(relaxed, target),
    inf for diverged relaxations (nan is rejected: it would have to be dropped silently). steps: the
    number of relaxation steps taken. converged: whether each relaxation met its stopping criterion."""
    ratios = np.asarray(ratios, dtype=np.float64).ravel()
    rmsds_after = np.asarray(rmsds_after, dtype=np.float64).ravel()
    steps = np.asarray(steps, dtype=np.float64).ravel()
    converged = np.asarray(converged).ravel()
    n = len(ratios)
    if not (len(rmsds_after) == len(steps) == len(converged) == n):
        raise ValueError(f"one entry per relaxation in every argument: ratios {n}, rmsds_after "
                         f"{len(rmsds_after)}, steps {len(steps)}, converged {len(converged)}")
    if np.any(ratios < 0) or np.any(np.isneginf(ratios)):
        raise ValueError("ratios must be >= 0 (or nan / +inf)")
    if np.any(np.isnan(rmsds_after)) or np.any(rmsds_after < 0):
        raise ValueError("rmsds_after must be >= 0 or +inf (use inf for diverged relaxations)")
    if not np.all(np.isfinite(steps)):
        raise ValueError("steps must be finite")
    if converged.dtype != bool:
        if not np.all(np.isin(converged, (0, 1))):
            raise ValueError("converged must be boolean")
        converged = converged.astype(bool)

    nan = np.isnan(ratios)
    valid = np.sort(ratios[~nan])
    n_valid = len(valid)
    n_failed = int(np.sum(valid > 1.0))
    summary = RelaxationSummary(
        n=n,
        n_nan=int(nan.sum()),
        n_inf=int(np.isinf(valid).sum()),
        n_failed=n_failed,
        failure_fraction=n_failed / n_valid if n_valid else float("nan"),
        median_ratio=_quantile_sorted(valid, 0.5),
        mean_ratio=float(valid.mean()) if n_valid else float("nan"),
        ratio_q25=_quantile_sorted(valid, 0.25),
        ratio_q75=_quantile_sorted(valid, 0.75),
        median_rmsd_after=_quantile_sorted(np.sort(rmsds_after), 0.5),
        median_steps=float(np.median(steps)) if n else float("nan"),
        converged_fraction=float(converged.mean()) if n else float("nan"),
    )
    return asdict(summary)


# the headline statistics of a set of relaxations, and their sampling errors over the inputs
RESULT_STATS = ("median_ratio", "failure_fraction", "median_rmsd_after", "median_steps", "converged_fraction")
ERROR_STATS = ("median_ratio_se", "failure_fraction_se")
BOOTSTRAP_DRAWS = 1000


def bootstrap_errors(ratio: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> dict:
    """Standard errors of the median ratio and the failure fraction over the inputs: the std of each
    over ``draws`` resamples of the inputs with replacement (undefined ratios left out, diverged
    ones, inf, kept as failures). The benchmark's noise floor for comparing two rows."""
    ratio = np.asarray(ratio, dtype=np.float64)
    ratio = ratio[~np.isnan(ratio)]
    if ratio.size == 0:
        return {k: float("nan") for k in ERROR_STATS}
    resampled = np.random.default_rng(seed).choice(ratio, size=(draws, ratio.size), replace=True)
    return {"median_ratio_se": float(np.median(resampled, axis=1).std()),
            "failure_fraction_se": float((resampled > 1).mean(axis=1).std())}


def relaxed_stats(rows) -> dict:
    """RESULT_STATS and ERROR_STATS of relaxed rows (a table with ratio, rmsd_after, n_steps, converged)."""
    column = lambda name: rows.column(name).to_numpy(zero_copy_only=False)   # noqa: E731
    ratio = column("ratio")
    s = summarize(ratio, column("rmsd_after"), column("n_steps"), column("converged"))
    return {**{k: s[k] for k in RESULT_STATS}, **bootstrap_errors(ratio)}
