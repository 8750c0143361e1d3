"""Time-interval experts (hard gate), reverse-SDE sampling of state vectors, learned forces."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from moldiff.diffusion.schedules import VPSchedule
from moldiff.models.energy import EnergyModel, ScoreModel
from moldiff.models.experts import TimeIntervalMixture
from moldiff.sampling.langevin import LangevinSettings, langevin
from moldiff.sampling.vector import learned_forces, reverse_em

SCHEDULE = VPSchedule(0.1, 20.0)


class Constant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x, t):
        return self.value.expand_as(x)


class GaussianLogDensity(nn.Module):
    """Exact diffused log-density of N(mu, s^2 I) under the VP process (up to a t-only term)."""

    def __init__(self, mu, s):
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float64))
        self.s = s

    def forward(self, x, t):
        alpha, sigma = SCHEDULE.alpha_sigma(t)
        var = (alpha ** 2 * self.s ** 2 + sigma ** 2).unsqueeze(-1)
        return (-((x - alpha.unsqueeze(-1) * self.mu) ** 2).sum(-1, keepdim=True) / (2 * var))


def test_hard_gate_routes_every_time_to_its_interval():
    mix = TimeIntervalMixture([0.1, 0.6], [ScoreModel(Constant(v)) for v in (1.0, 2.0, 3.0)])
    t = torch.tensor([1e-5, 0.0999, 0.1, 0.3, 0.5999, 0.6, 1.0])
    out = mix.score(torch.zeros(7, 2), t)
    assert out[:, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    assert mix.expert_index(t).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert mix.expert_at(1e-5) is mix.experts[0] and mix.expert_at(0.6) is mix.experts[2]
    assert not mix.conservative
    with pytest.raises(ValueError, match="3 experts"):
        TimeIntervalMixture([0.1, 0.6], [ScoreModel(Constant(1.0))])
    with pytest.raises(ValueError, match="increasing"):
        TimeIntervalMixture([0.6, 0.1], [ScoreModel(Constant(1.0))] * 3)


def test_reverse_em_with_the_exact_score_recovers_the_data_distribution():
    mu, s = [1.0, -0.5], 0.4
    model = EnergyModel(GaussianLogDensity(mu, s)).double()
    gen = torch.Generator().manual_seed(0)
    x = reverse_em(model, SCHEDULE, 20000, 2, 500, gen, t_end=1e-3)
    assert np.allclose(x.mean(0).numpy(), mu, atol=0.02)
    assert np.allclose(x.std(0).numpy(), s, rtol=0.05)


def test_mixture_of_exact_experts_samples_like_one_model():
    mu, s = [0.0, 2.0], 0.3
    experts = [EnergyModel(GaussianLogDensity(mu, s)).double() for _ in range(3)]
    mix = TimeIntervalMixture([0.1, 0.6], experts)
    assert mix.conservative
    x = reverse_em(mix, SCHEDULE, 10000, 2, 400, torch.Generator().manual_seed(1), t_end=1e-3)
    assert np.allclose(x.std(0).numpy(), s, rtol=0.06)


def test_simulation_with_the_learned_forces_of_an_exact_model_samples_the_data():
    """kT * s(x, t ~ 0) is the physical force when s is the data score: Langevin with it samples
    N(mu, s^2) whatever kT is used in the integrator, as long as it is the same kT."""
    mu, s, kT = [0.5, 0.5], 0.25, 2.0
    model = EnergyModel(GaussianLogDensity(mu, s)).double()
    settings = LangevinSettings(kT=kT, mass=0.5, friction=1.0, dt=0.002, burn_in=5000, n_frames=200, save_every=10)
    frames = langevin(learned_forces(model, kT, 1e-5), np.zeros((100, 2)), settings, seed=0).reshape(-1, 2)
    assert np.allclose(frames.mean(0), mu, atol=0.02)
    assert np.allclose(frames.std(0), s, rtol=0.05)


def test_learned_forces_undo_the_state_scaling():
    """A model of states divided by ``scale`` gives the physical force kT * grad log p(x)."""
    mu, s, scale, kT = np.array([0.3, -0.2]), 0.1, 0.05, 2.5
    model = EnergyModel(GaussianLogDensity(mu / scale, s / scale)).double()
    x = np.random.default_rng(0).normal(size=(5, 2)) * 0.1
    forces = learned_forces(model, kT, 1e-6, scale)(x)
    assert np.allclose(forces, kT * (-(x - mu) / s ** 2), rtol=1e-4)


def test_random_rotations_are_proper_and_keep_shapes():
    from moldiff.data.vectors import random_rotations
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 15, dtype=torch.float64, generator=gen)
    y = random_rotations(x, gen)
    xs, ys = x.reshape(64, 5, 3), y.reshape(64, 5, 3)
    assert torch.allclose(torch.cdist(xs, xs), torch.cdist(ys, ys), atol=1e-10)          # distances kept
    # proper rotations keep the handedness: the signed volume of three particle vectors is unchanged
    vol = lambda p: torch.det(p[:, :3] - p[:, 3:4])                                     # noqa: E731
    assert torch.allclose(vol(xs), vol(ys), atol=1e-10)
    assert not torch.allclose(x, y)
    with pytest.raises(ValueError, match="3-D particles"):
        random_rotations(torch.zeros(4, 2), gen)


@pytest.mark.parametrize("conservative", [True, False])
def test_graph_transformer_is_translation_invariant_permutation_aware_and_smooth(conservative):
    from moldiff.nn.graph_transformer import GraphTransformer
    torch.manual_seed(0)
    n = 5
    net = GraphTransformer(n, hidden=16, layers=2, heads=2, head_dim=8, out=1 if conservative else 3 * n).double()
    model = EnergyModel(net) if conservative else ScoreModel(net)
    x = torch.randn(4, 3 * n, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64).repeat(n)
    s0, s1 = model.score(x, t), model.score(x + shift, t)
    assert torch.allclose(s0, s1, atol=1e-10)                 # difference vectors only: translation invariant
    assert s0.shape == (4, 3 * n)
    if conservative:
        # the score is the gradient of one scalar: its Jacobian is symmetric
        xi = x[:1].clone().requires_grad_(True)
        jac = torch.autograd.functional.jacobian(lambda y: model.score(y, t[:1], create_graph=True)[0], xi)[:, 0]
        assert torch.allclose(jac, jac.T, atol=1e-8)
