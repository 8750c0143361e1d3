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
