import numpy as np
import pytest
import torch

from moldiff.data.batch import from_arrays
from moldiff.diffusion.process import centred_noise, molecule_mean, noise_batch
from moldiff.diffusion.schedules import VESchedule, VPSchedule

T = torch.linspace(0.01, 0.99, 25, dtype=torch.float64)


def derivative(f, t, h=1e-6):
    return (f(t + h) - f(t - h)) / (2 * h)


def test_ve_identities():
    s = VESchedule(0.01, 8.0)
    assert float(s.sigma(torch.tensor(0.0))) == pytest.approx(0.01)
    assert float(s.sigma(torch.tensor(1.0))) == pytest.approx(8.0)
    torch.testing.assert_close(s.alpha(T), torch.ones_like(T))
    # g^2 = d sigma^2 / dt (the marginal variance grows at the rate of the diffusion)
    torch.testing.assert_close(s.g2(T), derivative(lambda t: s.sigma(t) ** 2, T), rtol=1e-6, atol=1e-8)
    assert s.prior_std == 8.0


def test_vp_identities():
    s = VPSchedule(0.1, 20.0)
    torch.testing.assert_close(s.alpha(T) ** 2 + s.sigma(T) ** 2, torch.ones_like(T))
    # d alpha / dt = f(t) alpha and d sigma^2 / dt = 2 f sigma^2 + g^2
    torch.testing.assert_close(derivative(s.alpha, T), s.drift_coeff(T) * s.alpha(T), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(derivative(lambda t: s.sigma(t) ** 2, T),
                               2 * s.drift_coeff(T) * s.sigma(T) ** 2 + s.g2(T), rtol=1e-6, atol=1e-8)
    assert float(s.sigma(torch.tensor(0.0))) == 0.0
    assert float(s.alpha(torch.tensor(1.0))) == pytest.approx(np.exp(-0.5 * (0.1 + 0.5 * 19.9)))


def batch(sizes=(3, 7, 13)):
    n = sum(sizes)
    return from_arrays(np.ones(n, int), np.random.default_rng(0).normal(size=(n, 3)) + 5.0, np.array(sizes),
                       dtype=torch.float64)


def test_noise_and_noised_positions_have_zero_centre():
    g = batch()
    eps = centred_noise(g, torch.Generator().manual_seed(0))
    assert molecule_mean(eps, g.batch, g.n_atoms).abs().max() < 1e-12
    for schedule in (VESchedule(0.01, 8.0), VPSchedule()):
        xt, x0, eps = noise_batch(schedule, g, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
        for x in (xt, x0, eps):
            assert molecule_mean(x, g.batch, g.n_atoms).abs().max() < 1e-12


def test_centred_noise_variance_is_that_of_the_subspace():
    sizes = [5] * 4000
    g = from_arrays(np.ones(20000, int), np.zeros((20000, 3)), np.array(sizes), dtype=torch.float64)
    eps = centred_noise(g, torch.Generator().manual_seed(1))
    # projecting out the mean leaves (n - 1)/n of the variance per coordinate
    assert float(eps.var()) == pytest.approx(4 / 5, rel=0.02)
