import numpy as np
import torch

from moldiff.data.batch import fixed_size_batch
from moldiff.diffusion.schedules import VESchedule
from moldiff.objectives.score_matching import ScoreMatching

S = 0.7


class ScaledGaussianEpsilon:
    """factor x the optimal epsilon-prediction for data N(0, S^2) under a VE process."""

    def __init__(self, schedule, factor):
        self.schedule, self.factor = schedule, factor

    def __call__(self, graphs, t):
        sigma = self.schedule.sigma(t)[graphs.batch, None]
        return {"eps": self.factor * sigma * graphs.pos / (S ** 2 + sigma ** 2)}


def test_dsm_loss_is_minimised_by_the_posterior_mean_of_the_noise():
    schedule = VESchedule(0.01, 5.0)
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(20000, 4, 3)) * S
    graphs = fixed_size_batch(np.full(4, 6), x0 - x0.mean(1, keepdims=True), dtype=torch.float64)
    objective = ScoreMatching(schedule)
    losses = {}
    for factor in (0.8, 1.0, 1.2):
        loss, logs = objective(ScaledGaussianEpsilon(schedule, factor), graphs, torch.Generator().manual_seed(1))
        losses[factor] = float(loss)
        assert set(logs) >= {"loss", "loss_t0-0.1", "loss_t0.5-1"}
    assert losses[1.0] < losses[0.8] and losses[1.0] < losses[1.2]
    # the irreducible part: E[Var(eps | x_t)] = 1 - E_t[sigma^2 / (S^2 + sigma^2)] per coordinate of the subspace
    t = torch.linspace(0, 1, 100001, dtype=torch.float64)
    sig2 = schedule.sigma(t) ** 2
    expected = float((1 - sig2 / (S ** 2 + sig2)).mean()) * 3 / 4      # 3 of the 4 atoms' dof survive centring
    assert abs(losses[1.0] - expected) < 0.02


# ---------------------------------------------------------------- potential score matching

import pytest  # noqa: E402
from torch import nn  # noqa: E402

from moldiff.objectives.score_matching import ForceWeight  # noqa: E402
from moldiff.diffusion.schedules import VPSchedule  # noqa: E402


def test_force_weights_at_chosen_times():
    t = torch.tensor([0.0, 0.01, 0.05, 0.0500001, 0.07, 0.0999, 0.1, 0.5])
    torch.testing.assert_close(ForceWeight("piecewise", t_p=0.05)(t), torch.tensor([1., 1, 1, 0, 0, 0, 0, 0]))
    pw = ForceWeight("piecewise_weighted", sharpness=50, t_c=0.05, t_cut=0.1)(t)
    expected = 1 / (1 + torch.exp(50 * (t - 0.05)))
    expected[t >= 0.1] = 0.0
    torch.testing.assert_close(pw, expected)
    assert float(pw[0]) == pytest.approx(0.9241, abs=1e-4) and float(pw[2]) == pytest.approx(0.5)
    assert float(ForceWeight("piecewise_weighted", t_cut=None)(torch.tensor(0.1))) == pytest.approx(0.0759, abs=1e-4)
    assert ForceWeight("dsm")(t).abs().sum() == 0 and (ForceWeight("force_only")(t) == 1).all()
    with pytest.raises(ValueError, match="unknown force weighting"):
        ForceWeight("sometimes")


def two_atom_gaussian(n, s_data, s_true, kT, seed):
    """Molecules of 2 atoms whose relative coordinate is Gaussian: per subspace dof variance s_data^2.
    Forces are those of E = kT |x|^2 / (2 s_true^2) (the true Boltzmann density has variance s_true^2)."""
    y = np.random.default_rng(seed).normal(size=(n, 1, 3)) * s_data / np.sqrt(2)
    pos = np.concatenate([y, -y], 1)
    return fixed_size_batch(np.array([6, 6]), pos, forces=-kT * pos.reshape(-1, 3) / s_true ** 2, dtype=torch.float64)


def test_psm_target_is_eps_or_scaled_force_and_uses_kT_and_alpha():
    schedule = VPSchedule()
    g = two_atom_gaussian(4, 1.0, 1.0, kT=0.5, seed=0)
    eps = torch.randn(g.pos.shape, dtype=torch.float64)
    t = torch.tensor([0.01, 0.04, 0.3, 0.9], dtype=torch.float64)
    obj = ScoreMatching(schedule, ForceWeight("piecewise", t_p=0.05), kT=0.5)
    target = obj.target(g, t, eps)
    alpha, sigma = schedule.alpha_sigma(t)
    expected_force = -(sigma / (alpha * 0.5))[g.batch, None] * g.forces
    torch.testing.assert_close(target[:4], expected_force[:4])          # molecules 0, 1: t <= t_p
    torch.testing.assert_close(target[4:], eps[4:])                     # molecules 2, 3: DSM label
    # forces in other units: halving kT doubles the force label
    obj2 = ScoreMatching(schedule, ForceWeight("force_only"), kT=0.25)
    torch.testing.assert_close(obj2.target(g, t, eps), 2 * ScoreMatching(schedule, ForceWeight("force_only"), 0.5).target(g, t, eps))
    with pytest.raises(ValueError, match="needs kT"):
        ScoreMatching(schedule, ForceWeight("piecewise"), kT=None)
    no_forces = fixed_size_batch(np.array([6, 6]), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="needs force labels"):
        obj.target(no_forces, t[:2].float(), torch.zeros(4, 3))


class LinearInPosition(nn.Module):
    """eps(x, t) = c(t) x with c an MLP of t: the family that holds the exact optimum for Gaussian data."""

    def __init__(self):
        super().__init__()
        self.c = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))

    def forward(self, graphs, t):
        return {"eps": self.c(t[:, None].to(graphs.pos.dtype))[graphs.batch] * graphs.pos}


def train_linear(objective, s_data, s_true, kT, steps=2500, seed=0):
    torch.manual_seed(seed)
    model = LinearInPosition().double()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        loss, _ = objective(model, two_atom_gaussian(1024, s_data, s_true, kT, seed=step), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


@pytest.mark.parametrize("mode", ["force_only", "dsm"])
def test_trained_model_reaches_the_closed_form_optimum_on_biased_gaussian_data(mode):
    """Data N(0, s_q^2) with forces of the true density N(0, s^2), VE noise sigma_t:
    DSM's optimum is sigma / (s_q^2 + sigma^2); PSM's is sigma s_q^2 / (s^2 (s_q^2 + sigma^2)), which tends
    to the true score's sigma / s^2 as sigma -> 0 (the paper's Theorem 2 on this toy)."""
    s_q, s, kT = 0.6, 1.0, 0.8
    schedule = VESchedule(0.05, 3.0)
    objective = ScoreMatching(schedule, ForceWeight(mode), kT=kT)
    model = train_linear(objective, s_q, s, kT)
    t = torch.tensor([0.05, 0.2, 0.4], dtype=torch.float64)
    sigma = schedule.sigma(t)
    if mode == "dsm":
        optimum = sigma / (s_q ** 2 + sigma ** 2)
    else:
        optimum = sigma * s_q ** 2 / (s ** 2 * (s_q ** 2 + sigma ** 2))
    learned = model.c(t[:, None]).squeeze(-1).detach()
    torch.testing.assert_close(learned, optimum, rtol=0.08, atol=0.0)
    if mode == "force_only":
        true_score_eps = sigma / (s ** 2 + sigma ** 2)                 # the unbiased optimum
        dsm_optimum = sigma / (s_q ** 2 + sigma ** 2)
        assert float((learned[0] - true_score_eps[0]).abs()) < 0.3 * float((dsm_optimum[0] - true_score_eps[0]).abs())
