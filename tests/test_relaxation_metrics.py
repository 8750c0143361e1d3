"""MoreRed relaxation metrics: Kabsch RMSD, RMSD ratio and the summary over many relaxations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from moldiff.metrics.relaxation import (batch_kabsch_rmsd, kabsch_rmsd, kabsch_rotation, rmsd_ratio,
                                        summarize, superpose)


def _molecule(rng: np.random.Generator, n: int = 12) -> np.ndarray:
    return rng.normal(scale=1.5, size=(n, 3))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    r = Rotation.random(random_state=rng).as_matrix()
    assert np.isclose(np.linalg.det(r), 1.0)
    return r


def _centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean(0)


def test_rigid_motion_is_undone():
    rng = np.random.default_rng(0)
    p = _molecule(rng)
    r = _rotation(rng)
    q = p @ r.T + np.array([3.0, -1.5, 7.2])
    assert kabsch_rmsd(p, q) == pytest.approx(0.0, abs=1e-10)
    assert np.allclose(kabsch_rotation(p, q), r, atol=1e-10)
    assert np.allclose(superpose(p, q), q, atol=1e-10)
    # the inverse direction gives the inverse rotation
    assert np.allclose(kabsch_rotation(q, p), r.T, atol=1e-10)
    # weighted: still an exact superposition
    w = rng.uniform(1.0, 16.0, size=len(p))
    assert kabsch_rmsd(p, q, weights=w) == pytest.approx(0.0, abs=1e-10)
    assert np.allclose(kabsch_rotation(p, q, weights=w), r, atol=1e-10)


def test_mirror_image_is_not_superposed_by_a_reflection():
    rng = np.random.default_rng(1)
    p = _molecule(rng)
    mirror = p * np.array([1.0, 1.0, -1.0])          # det -1
    q = mirror @ _rotation(rng).T + 2.0
    r = kabsch_rotation(p, q)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert kabsch_rmsd(p, q) > 0.1
    # the unrestricted orthogonal optimum (a reflection) would superpose it exactly
    u, _, vt = np.linalg.svd(_centred(p).T @ _centred(q))
    reflection = vt.T @ u.T
    assert np.linalg.det(reflection) == pytest.approx(-1.0)
    assert np.allclose(_centred(p) @ reflection.T, _centred(q), atol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scipy_align_vectors(seed):
    rng = np.random.default_rng(100 + seed)
    p = _molecule(rng, n=int(rng.integers(4, 20)))
    q = p @ _rotation(rng).T + rng.normal(scale=0.5, size=p.shape) + rng.normal(size=3)
    pc, qc = _centred(p), _centred(q)
    rot, rssd = Rotation.align_vectors(qc, pc)       # minimises |qc - R pc|
    scipy_rmsd = math.sqrt(np.mean(np.sum((pc @ rot.as_matrix().T - qc) ** 2, axis=1)))
    ours = kabsch_rmsd(p, q)
    assert ours == pytest.approx(scipy_rmsd, abs=1e-8)
    assert ours == pytest.approx(rssd / math.sqrt(len(p)), abs=1e-8)
    assert np.allclose(kabsch_rotation(p, q), rot.as_matrix(), atol=1e-8)
    unaligned = math.sqrt(np.mean(np.sum((pc - qc) ** 2, axis=1)))
    assert ours <= unaligned + 1e-12
    # no random rotation does better than the optimum
    trial = Rotation.random(200, random_state=rng).as_matrix()
    trial_rmsd = np.sqrt(np.mean(np.sum((np.einsum("rij,nj->rni", trial, pc) - qc) ** 2, -1), -1))
    assert ours <= trial_rmsd.min() + 1e-12


def test_weighted_rmsd_agrees_with_scipy():
    rng = np.random.default_rng(7)
    p = _molecule(rng)
    q = p @ _rotation(rng).T + rng.normal(scale=0.4, size=p.shape)
    w = rng.uniform(1.0, 16.0, size=len(p))
    cp, cq = w @ p / w.sum(), w @ q / w.sum()
    rot, rssd = Rotation.align_vectors(q - cq, p - cp, weights=w)
    assert kabsch_rmsd(p, q, weights=w) == pytest.approx(rssd / math.sqrt(w.sum()), abs=1e-8)


def test_batch_equals_per_pair():
    rng = np.random.default_rng(2)
    ps = rng.normal(size=(20, 9, 3))
    qs = ps @ _rotation(rng).T + rng.normal(scale=0.3, size=ps.shape)
    qs[3] = ps[3] * np.array([-1.0, 1.0, 1.0])        # a mirror image inside the stack
    batch = batch_kabsch_rmsd(ps, qs)
    assert batch.shape == (20,)
    assert np.allclose(batch, [kabsch_rmsd(p, q) for p, q in zip(ps, qs)], atol=1e-12, rtol=0)
    # one reference for the whole stack; a diverged structure is infinitely far
    ps[5, 2] = np.nan
    against_one = batch_kabsch_rmsd(ps, qs[0])
    assert np.isinf(against_one[5])
    keep = np.arange(20) != 5
    assert np.allclose(against_one[keep], [kabsch_rmsd(p, qs[0]) for p in ps[keep]], atol=1e-12, rtol=0)


def test_rmsd_ratio():
    rng = np.random.default_rng(3)
    target = _molecule(rng)
    far = target @ _rotation(rng).T + rng.normal(scale=0.3, size=target.shape) + 5.0
    near = target @ _rotation(rng).T + rng.normal(scale=0.1, size=target.shape) - 2.0
    improved = rmsd_ratio(relaxed=near, start=far, target=target)
    assert 0.0 < improved < 1.0
    assert improved == pytest.approx(kabsch_rmsd(near, target) / kabsch_rmsd(far, target))
    worse = rmsd_ratio(relaxed=far, start=near, target=target)
    assert worse > 1.0
    assert worse == pytest.approx(1.0 / improved)
    assert math.isnan(rmsd_ratio(relaxed=near, start=target, target=target))
    # a start that is only a rigid motion of the target is "start == target" as well
    assert math.isnan(rmsd_ratio(relaxed=near, start=target @ _rotation(rng).T + 1.0, target=target))
    diverged = near.copy()
    diverged[0, 0] = np.inf
    assert rmsd_ratio(relaxed=diverged, start=far, target=target) == math.inf
    with pytest.raises(ValueError):
        rmsd_ratio(relaxed=near, start=far[:-1], target=target)


def test_summarize_known_answers():
    ratios = [0.2, 0.5, 0.9, 1.5, np.inf, np.nan]
    rmsds_after = [0.1, 0.2, 0.3, 0.6, np.inf, 0.0]
    steps = [10, 20, 30, 40, 1000, 5]
    converged = [True, True, True, False, False, True]
    s = summarize(ratios, rmsds_after, steps, converged)
    assert s["n"] == 6
    assert s["n_nan"] == 1
    assert s["n_inf"] == 1
    assert s["n_failed"] == 2                       # 1.5 and inf
    assert s["failure_fraction"] == pytest.approx(2 / 5)
    assert s["median_ratio"] == pytest.approx(0.9)   # of [0.2, 0.5, 0.9, 1.5, inf]
    assert s["mean_ratio"] == math.inf
    assert s["ratio_q25"] == pytest.approx(0.5)
    assert s["ratio_q75"] == pytest.approx(1.5)
    assert s["median_rmsd_after"] == pytest.approx(0.25)   # of [0, 0.1, 0.2, 0.3, 0.6, inf]
    assert s["median_steps"] == pytest.approx(25.0)
    assert s["converged_fraction"] == pytest.approx(4 / 6)


def test_summarize_inf_quantiles_and_edge_cases():
    # numpy's interpolation gives nan between two infs; the summary must say inf
    s = summarize([0.5, 2.0, np.inf, np.inf], [0.1, 1.0, np.inf, np.inf], [1, 2, 3, 4], [1, 0, 0, 0])
    assert s["median_ratio"] == math.inf
    assert s["ratio_q25"] == pytest.approx(0.5 + 0.75 * 1.5)
    assert s["ratio_q75"] == math.inf
    assert s["failure_fraction"] == pytest.approx(0.75)
    assert s["converged_fraction"] == pytest.approx(0.25)
    # only undefined ratios: counted, and no ratio statistic pretends to know
    s = summarize([np.nan, np.nan], [0.0, 0.0], [0, 0], [True, True])
    assert s["n"] == 2 and s["n_nan"] == 2
    assert all(math.isnan(s[k]) for k in ("failure_fraction", "median_ratio", "mean_ratio", "ratio_q25"))
    with pytest.raises(ValueError):
        summarize([0.5], [np.nan], [1], [True])
    with pytest.raises(ValueError):
        summarize([0.5, 0.7], [0.1], [1], [True])


def test_bootstrap_errors_match_the_binomial_and_vanish_without_spread():
    from moldiff.metrics.relaxation import bootstrap_errors

    same = bootstrap_errors(np.full(300, 0.5))
    assert same == {"median_ratio_se": 0.0, "failure_fraction_se": 0.0}
    half = np.r_[np.full(200, 0.5), np.full(199, 2.0), [np.inf], [np.nan]]   # 400 defined, half failing
    errors = bootstrap_errors(half, draws=4000)
    assert abs(errors["failure_fraction_se"] - np.sqrt(0.25 / 400)) < 0.003     # binomial SE 0.025
    assert np.isnan(bootstrap_errors(np.array([np.nan]))["median_ratio_se"])
