import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from moldiff.physics.lennard_jones import LennardJones
from moldiff.physics.mcmc import mala

# global minima of the LJ cluster (pair energy, each pair counted once): Wales & Doye
LJ13_MIN, LJ55_MIN = -44.326801, -279.248470


def minimise_pair_energy(potential: LennardJones, noshells: int) -> float:
    from ase.cluster import Icosahedron

    atoms = Icosahedron("Ar", noshells=noshells)
    x0 = atoms.get_positions()
    d = np.linalg.norm(x0[:, None] - x0[None], axis=-1)
    x0 = x0 / d[d > 0].min()                                 # nearest neighbours at ~r_m = 1
    pair_only = LennardJones(potential.n_particles, potential.pair_convention, harmonic_k=0.0)

    def fun(flat):
        e, f = pair_only.energy_and_forces(torch.from_numpy(flat.reshape(-1, 3)))
        return float(e), -f.numpy().reshape(-1)

    res = minimize(fun, x0.reshape(-1), jac=True, method="L-BFGS-B", options={"gtol": 1e-10, "maxiter": 5000})
    return float(res.fun)


@pytest.mark.parametrize("n,shells,minimum", [(13, 2, LJ13_MIN), (55, 3, LJ55_MIN)])
def test_icosahedral_minima_in_both_conventions(n, shells, minimum):
    single = minimise_pair_energy(LennardJones(n, "single"), shells)
    double = minimise_pair_energy(LennardJones(n, "double"), shells)
    assert single == pytest.approx(minimum, abs=1e-5)
    assert double == pytest.approx(2 * minimum, abs=2e-5)


def test_forces_match_finite_differences_and_autograd():
    rng = np.random.default_rng(0)
    for convention in ("double", "single"):
        lj = LennardJones(13, convention, harmonic_k=1.0)
        x = torch.tensor(rng.normal(size=(13, 3)) * 1.2, dtype=torch.float64)
        e, f = lj.energy_and_forces(x)
        assert float(e) == pytest.approx(float(lj.energy(x)), rel=1e-12)
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(lj.energy(xr), xr)
        torch.testing.assert_close(f, -grad, rtol=1e-9, atol=1e-9)
        h = 1e-6
        for i, k in [(0, 0), (5, 2), (12, 1)]:
            xp, xm = x.clone(), x.clone()
            xp[i, k] += h
            xm[i, k] -= h
            fd = -(float(lj.energy(xp)) - float(lj.energy(xm))) / (2 * h)
            assert float(f[i, k]) == pytest.approx(fd, rel=1e-5, abs=1e-5)


def test_energy_is_translation_and_rotation_invariant_and_forces_sum_to_zero():
    lj = LennardJones(13)
    x = 1.5 * torch.randn(4, 13, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    e = lj.energy(x)
    torch.testing.assert_close(lj.energy(x @ q.T + 3.0), e)
    _, f = lj.energy_and_forces(x)
    # pair forces cancel (Newton's third law) up to rounding relative to the largest force
    assert float(f.sum(-2).abs().max()) < 1e-12 * float(f.abs().max()) * 13


def test_harmonic_term():
    x = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64)  # d = 3: pair part tiny
    lj = LennardJones(2, "single", harmonic_k=2.0)
    pair = (1 / 3) ** 12 - 2 * (1 / 3) ** 6
    assert float(lj.energy(x)) == pytest.approx(pair + 0.5 * 2.0 * (1.5 ** 2) * 2)


def test_mala_samples_a_gaussian():
    """MALA on E = |x|^2 / 2 at kT = 0.5 must give variance 0.5 per coordinate."""
    def harmonic(x):
        return 0.5 * (x ** 2).sum((-1, -2)), -x

    x0 = np.zeros((256, 1, 3))
    out = mala(harmonic, x0, kT=0.5, step_size=0.2, burn_in=100, n_steps=400, save_every=10, seed=0)
    var = out.positions.reshape(-1).var()
    assert var == pytest.approx(0.5, rel=0.05)
    assert 0.3 < out.acceptance < 1.0
