import numpy as np
import pytest

from moldiff.metrics.distributions import (distance_tvd, energy_tvd, histograms_on_reference, hr_mae,
                                           pair_distances, total_variation, wasserstein2)


def clusters(n, seed, scale=1.0):
    return np.random.default_rng(seed).normal(size=(n, 6, 3)) * scale


def test_identical_sets_give_zero():
    x = clusters(200, 0)
    assert distance_tvd(x, x, 50) == (0.0, 0.0)
    assert hr_mae(x, x, 50) == 0.0
    assert wasserstein2(x, x) == pytest.approx(0.0, abs=1e-6)


def test_disjoint_sets_give_the_maximum():
    ref = np.concatenate([np.zeros(500), np.ones(500) * 10])
    h = histograms_on_reference(np.full(100, 5.0), ref, bins=10)       # inside the range, empty reference bin
    assert total_variation(h) == pytest.approx(1.0)
    assert energy_tvd(np.full(100, 5.0), ref, 10)[0] == pytest.approx(1.0)


def test_outside_samples_are_counted_not_binned():
    ref = np.linspace(0, 1, 1000)
    samples = np.concatenate([np.linspace(0, 1, 990), np.full(10, 50.0)])
    tvd, outside = energy_tvd(samples, ref, 20)
    assert outside == pytest.approx(0.01)
    assert tvd < 0.02                                                 # the in-range part matches
    tvd_all_out, out = energy_tvd(np.full(5, 99.0), ref, 20)
    assert (tvd_all_out, out) == (1.0, 1.0)
    assert energy_tvd(np.array([np.nan, 0.5]), ref, 20)[1] == pytest.approx(0.5)


def test_tvd_grows_with_the_difference_and_sits_near_zero_for_same_distribution():
    ref = clusters(2000, 1)
    same = distance_tvd(clusters(1000, 2), ref, 100)[0]
    wider = distance_tvd(clusters(1000, 3, scale=1.2), ref, 100)[0]
    much_wider = distance_tvd(clusters(1000, 4, scale=1.6), ref, 100)[0]
    assert same < 0.06 < wider < much_wider


def test_w2_of_a_translated_cloud_is_the_translation_length():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 4))
    shift = np.array([0.3, -0.4, 0.0, 1.2])
    b = rng.permutation(a + shift)
    assert wasserstein2(a, b) == pytest.approx(np.linalg.norm(shift), rel=1e-9)


def test_pair_distances_variable_size():
    pos = [np.zeros((2, 3)), np.array([[0, 0, 0], [3, 4, 0], [0, 0, 1.0]])]
    pos[0][1, 0] = 2.0
    assert sorted(pair_distances(pos).tolist()) == pytest.approx(sorted([2.0, 5.0, 1.0, np.sqrt(26)]))


# ------------------------------------------------------------------------- molecular stability

from ase.build import molecule  # noqa: E402

from moldiff.metrics.molecular import BondReference, bonded_pairs, max_bond_deviation, stable_fraction  # noqa: E402


def test_bonds_and_stability_on_ethanol():
    ethanol = molecule("CH3CH2OH")
    z, pos = ethanol.numbers, ethanol.positions
    pairs = {tuple(sorted((z[i], z[j]))) for i, j in bonded_pairs(z, pos)}
    assert len(bonded_pairs(z, pos)) == 8                      # C-C, C-O, O-H and five C-H
    assert pairs == {(6, 6), (6, 8), (1, 8), (1, 6)}
    ref = BondReference.from_frames(z, pos[None].repeat(5, 0))
    oh = next(k for k, (i, j) in enumerate(ref.pairs) if {z[i], z[j]} == {1, 8})
    i, j = ref.pairs[oh]
    frames = []
    for stretch in (0.0, 0.4, 0.6):
        p = pos.copy()
        direction = (p[j] - p[i]) / np.linalg.norm(p[j] - p[i])
        p[j] = p[j] + stretch * direction if z[j] == 1 else p[j]
        p[i] = p[i] - stretch * direction if z[i] == 1 else p[i]
        frames.append(p)
    frames = np.stack(frames)
    np.testing.assert_allclose(max_bond_deviation(frames, ref), [0.0, 0.4, 0.6], atol=1e-9)
    assert stable_fraction(frames, ref, tolerance=0.5) == pytest.approx(2 / 3)
