"""Müller-Brown potential, the Langevin integrator, and the 2-D free-energy metrics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from moldiff.metrics.free_energy import js_divergence, pmf_error
from moldiff.physics import muller_brown as mb
from moldiff.sampling.langevin import LangevinSettings, langevin


@pytest.mark.parametrize("name", ["A", "B", "C"])
def test_minima_and_their_energies(name):
    start = np.array(mb.MINIMA[name]) + [0.02, -0.03]
    res = minimize(mb.energy_np, start, jac=lambda p: -mb.forces_np(p), method="BFGS", tol=1e-12)
    assert np.allclose(res.x, mb.MINIMA[name], atol=1e-4)
    assert res.fun == pytest.approx(mb.MINIMUM_ENERGY[name], abs=1e-3)
    assert np.abs(mb.forces_np(np.array(mb.MINIMA[name]))).max() < 0.05


def test_forces_match_autograd_and_numpy_matches_torch():
    rng = np.random.default_rng(0)
    xy = rng.uniform([-1.5, -0.3], [1.0, 1.9], size=(50, 2))
    x = torch.tensor(xy, requires_grad=True)
    e = mb.energy(x)
    (grad,) = torch.autograd.grad(e.sum(), x)
    assert np.allclose(-grad.numpy(), mb.forces_np(xy), rtol=1e-10, atol=1e-9)
    assert np.allclose(e.detach().numpy(), mb.energy_np(xy))


def test_basin_populations_of_a_point_set():
    pts = np.array([mb.MINIMA["A"]] * 3 + [mb.MINIMA["B"]] + [mb.MINIMA["C"]] * 2)
    assert mb.basin_populations(pts) == pytest.approx({"A": 0.5, "B": 1 / 6, "C": 1 / 3})


def test_langevin_samples_the_boltzmann_distribution_of_a_harmonic_well():
    k, kT = 4.0, 1.5
    s = LangevinSettings(kT=kT, mass=0.5, friction=1.0, dt=0.01, burn_in=500, n_frames=400, save_every=10)
    seen = []
    frames = langevin(lambda x: -k * x, np.zeros((200, 2)), s, seed=0, on_frames=lambda i, f: seen.append((i, len(f))),
                      frames_per_call=150)
    assert frames.shape == (400, 200, 2)
    assert seen == [(0, 150), (150, 150), (300, 100)]
    var = frames.reshape(-1, 2).var(0)
    # x ~ N(0, kT / k); the integrator's own bias at this step is far below the 3% tolerance
    assert np.allclose(var, kT / k, rtol=0.03)


def test_langevin_rejects_bad_settings():
    with pytest.raises(ValueError, match="kT, friction and dt"):
        LangevinSettings(kT=0.0)
    with pytest.raises(ValueError, match="masses"):
        LangevinSettings(kT=1.0, mass=-1.0)


def test_js_and_pmf_sanity():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20000, 2)) * 0.3
    assert js_divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    assert pmf_error(a, a) == pytest.approx(0.0, abs=1e-12)
    far = a + 100.0
    assert js_divergence(a, far, bins=50) == pytest.approx(math.log(2), rel=1e-9)
    b = rng.normal(size=(20000, 2)) * 0.3
    shifted = b + [0.3, 0.0]
    # the metric grows with the difference and sits near zero for the same distribution
    assert js_divergence(a, b) < js_divergence(a, shifted)
    assert pmf_error(a, b) < pmf_error(a, shifted)
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        js_divergence(a[:, :1], a)


def test_reference_floor_of_two_independent_langevin_sets_matches_the_paper():
    """Two independent 20k Müller-Brown sets: JS (100 bins) near the brief's 0.038 floor, and the
    populations near the exact Boltzmann ones (quadrature)."""
    s = LangevinSettings(kT=mb.KT, mass=0.5, friction=1.0, dt=0.005, burn_in=2000, n_frames=200, save_every=50)
    start = np.tile(mb.MINIMA["A"], (100, 1))
    one = langevin(mb.forces_np, start, s, seed=1).reshape(-1, 2)
    two = langevin(mb.forces_np, start, s, seed=2).reshape(-1, 2)
    assert 0.02 < js_divergence(one, two) < 0.06
    pops = mb.basin_populations(np.concatenate([one, two]))
    assert pops == pytest.approx(mb.exact_populations(), abs=0.04)


def test_exact_populations_at_the_papers_temperature():
    pops = mb.exact_populations()
    assert pops == pytest.approx({"A": 0.753, "B": 0.139, "C": 0.108}, abs=0.002)   # brief: about 0.75/0.14/0.11
    assert mb.exact_populations(kT=5.0)["A"] > 0.99                                 # cold: the global minimum
