"""Samplers against a closed form: for Gaussian data N(0, s^2) (in the zero-centre subspace) the
optimal epsilon-prediction is eps*(x_t, t) = sigma_t x_t / (alpha_t^2 s^2 + sigma_t^2)."""
import numpy as np
import pytest
import torch

from moldiff.diffusion.process import molecule_mean
from moldiff.diffusion.schedules import VESchedule, VPSchedule
from moldiff.sampling.sde import sample_positions, template_batch

S = 0.5


class GaussianEpsilon:
    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, graphs, t):
        alpha, sigma = self.schedule.alpha_sigma(t.double())
        a, s = alpha[graphs.batch, None], sigma[graphs.batch, None]
        return {"eps": (s * graphs.pos / (a ** 2 * S ** 2 + s ** 2)).to(graphs.pos.dtype)}


@pytest.mark.parametrize("schedule", [VESchedule(0.01, 20.0), VPSchedule(0.1, 20.0)], ids=["ve", "vp"])
@pytest.mark.parametrize("sampler,n_corrector", [("em", 0), ("pc", 1)])
def test_samplers_recover_gaussian_variance_and_keep_zero_centre(schedule, sampler, n_corrector):
    n_atoms, n_mol = 5, 3000
    g = template_batch(np.full(n_atoms, 6), n_mol)
    g = g.with_pos(g.pos.double())
    x = sample_positions(GaussianEpsilon(schedule), schedule, g, sampler=sampler, n_steps=300,
                         n_corrector=n_corrector, snr=0.1, generator=torch.Generator().manual_seed(0))
    assert molecule_mean(x, g.batch, g.n_atoms).abs().max() < 1e-9
    var = float((x ** 2).sum() / (n_mol * 3 * (n_atoms - 1)))       # per degree of freedom of the subspace
    assert var == pytest.approx(S ** 2, rel=0.05)


def test_final_denoise_removes_the_residual_noise():
    schedule = VESchedule(0.3, 20.0, t_min=0.0)
    g = template_batch(np.full(4, 6), 2000)
    g = g.with_pos(g.pos.double())
    kw = dict(sampler="pc", n_steps=200, n_corrector=0, generator=torch.Generator().manual_seed(1))
    noisy = sample_positions(GaussianEpsilon(schedule), schedule, g, final_denoise=False, **kw)
    kw["generator"] = torch.Generator().manual_seed(1)
    clean = sample_positions(GaussianEpsilon(schedule), schedule, g, final_denoise=True, **kw)
    var_noisy = float((noisy ** 2).sum() / (2000 * 3 * 3))
    var_clean = float((clean ** 2).sum() / (2000 * 3 * 3))
    assert var_noisy == pytest.approx(S ** 2 + 0.3 ** 2, rel=0.06)   # data + sigma_min^2
    assert var_clean < var_noisy


class CountingGaussian(GaussianEpsilon):
    """The exact epsilon of N(0, scale^2) data, counting its calls."""

    def __init__(self, schedule, scale=S):
        super().__init__(schedule)
        self.scale, self.calls = scale, 0

    def __call__(self, graphs, t):
        self.calls += 1
        alpha, sigma = self.schedule.alpha_sigma(t.double())
        a, s = alpha[graphs.batch, None], sigma[graphs.batch, None]
        return {"eps": (s * graphs.pos / (a ** 2 * self.scale ** 2 + s ** 2)).to(graphs.pos.dtype)}


@pytest.mark.parametrize("kind", ["linear", "power", "edm"])
def test_time_grids_run_from_one_to_t_min_and_the_edm_grid_is_karras_rho_grid_in_sigma(kind):
    from moldiff.sampling.sde import time_grid
    schedule = VPSchedule(0.1, 20.0, t_min=1e-3)
    grid = torch.tensor(time_grid(schedule, 50, kind, 3.0), dtype=torch.float64)
    assert grid[0] == 1.0 and grid[-1] == pytest.approx(1e-3) and len(grid) == 51
    assert (grid[1:] < grid[:-1]).all()
    if kind == "edm":
        lo, hi = float(schedule.sigma(torch.tensor(1e-3))), float(schedule.sigma(torch.tensor(1.0)))
        frac = torch.linspace(0, 1, 51, dtype=torch.float64)
        karras = (hi ** (1 / 3) + frac * (lo ** (1 / 3) - hi ** (1 / 3))) ** 3
        assert torch.allclose(schedule.sigma(grid), karras, rtol=1e-6)
    if kind == "power":      # a fraction t_p^(1/rho) of the steps below t_p
        assert int((grid[1:] <= 0.05).sum()) == pytest.approx(50 * 0.05 ** (1 / 3), abs=1)


def test_the_window_oracle_and_a_langevin_run_at_t_min_pull_a_biased_model_to_the_exact_density():
    """A model that learned N(0, 1) where the data is N(0, S^2): the oracle inside the window, with
    a long enough Langevin run at t_min, gives S^2 back; the learned window alone keeps the bias;
    the number of score evaluations is the refinement's own count."""
    from moldiff.sampling.sde import WindowRefinement, time_grid
    schedule = VESchedule(0.01, 20.0, t_min=1e-5)
    n_atoms, n_mol = 4, 2000
    g = template_batch(np.full(n_atoms, 6), n_mol)
    g = g.with_pos(g.pos.double())

    def variance(window):
        model = CountingGaussian(schedule, scale=1.0)
        x = sample_positions(model, schedule, g, n_steps=100, n_corrector=1, snr=0.1, window=window,
                             generator=torch.Generator().manual_seed(3))
        assert molecule_mean(x, g.batch, g.n_atoms).abs().max() < 1e-9
        return float((x ** 2).sum() / (n_mol * 3 * (n_atoms - 1))), model.calls

    exact = lambda x: -x / S ** 2                      # noqa: E731  the score of N(0, S^2) at t -> 0
    biased, calls = variance(WindowRefinement())
    assert biased == pytest.approx(1.0, rel=0.06) and calls == 100 * 2 + 1
    refined = WindowRefinement(t_window=0.05, correctors=2, langevin_steps=400, langevin_dt=0.01, oracle=exact)
    fixed, calls = variance(refined)
    assert fixed == pytest.approx(S ** 2, rel=0.08)
    # inside the window the oracle answers, so the model is called only outside it
    grid = time_grid(schedule, 100)
    outside = sum(1 for s in grid[1:] if s > 0.05)
    assert calls == (1 + outside) + outside           # predictors from t = 1, one corrector each, outside it
    assert refined.model_calls(100, grid, 1) == 100 * 2 + 2 * (100 - outside) + 400
    # the learned (biased) score in the same refinement keeps the model's own variance
    learned, _ = variance(WindowRefinement(t_window=0.05, correctors=2, langevin_steps=400, langevin_dt=0.01))
    assert learned == pytest.approx(1.0, rel=0.08)
