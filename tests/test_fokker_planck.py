"""The Fokker-Planck residual: exact form, the weak first-order estimator, and the objective."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from moldiff.diffusion.schedules import VPSchedule
from moldiff.models.energy import EnergyModel, ScoreModel
from moldiff.nn.mlp import TimeMLP
from moldiff.objectives.fokker_planck import (FokkerPlanckDSM, FokkerPlanckSettings, three_point_dt,
                                              exact_residual, time_weight, weak_residual,
                                              weak_residuals)

SCHEDULE = VPSchedule(0.1, 20.0)


class DiffusedGaussian(nn.Module):
    """The exact normalised log-density of N(0, s^2 I) diffused by the VP process."""

    def __init__(self, s: float):
        super().__init__()
        self.s = s

    def forward(self, x, t):
        alpha, sigma = SCHEDULE.alpha_sigma(t)
        var = alpha ** 2 * self.s ** 2 + sigma ** 2
        d = x.shape[-1]
        return (-(x ** 2).sum(-1) / (2 * var) - 0.5 * d * torch.log(2 * math.pi * var)).unsqueeze(-1)


def test_exact_and_weak_residual_vanish_for_the_true_diffused_density():
    torch.manual_seed(0)
    model = EnergyModel(DiffusedGaussian(0.7)).double()
    x = torch.randn(64, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.9 + 0.05
    exact = exact_residual(model, SCHEDULE, x, t)
    # the FP operator is large here (g^2 up to 20): R = 0 to rounding, relative to its terms
    assert exact.abs().max() < 1e-8
    # one probe is noisy (its Stein term is a chi-square draw); averaged over probes it is unbiased
    s = FokkerPlanckSettings(alpha=1.0)
    n_probes = 2000
    xr, tr = x[:8].repeat(n_probes, 1), t[:8].repeat(n_probes)
    weak = weak_residual(model, SCHEDULE, xr, tr, s.probe_sigma * torch.randn_like(xr), s,
                         create_graph=False).reshape(n_probes, -1).detach()
    stderr = weak.std(0) / math.sqrt(n_probes)
    assert torch.all(weak.mean(0).abs() < 5 * stderr + 1e-4), (weak.mean(0), stderr)
    assert torch.all(stderr > 0)


def test_weak_estimator_matches_the_exact_residual_of_a_random_energy_model():
    torch.manual_seed(1)
    model = EnergyModel(TimeMLP(2, [32, 32], 1)).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.tensor([1e-3, 0.01, 0.05, 0.2, 0.5, 0.9], dtype=torch.float64)
    exact = exact_residual(model, SCHEDULE, x, t)
    s = FokkerPlanckSettings(alpha=1.0)
    n_probes = 4000
    xr, tr = x.repeat(n_probes, 1), t.repeat(n_probes)
    v = s.probe_sigma * torch.randn_like(xr)
    weak = weak_residual(model, SCHEDULE, xr, tr, v, s, create_graph=False).reshape(n_probes, -1).detach()
    mean, stderr = weak.mean(0), weak.std(0) / math.sqrt(n_probes)
    assert torch.all((mean - exact).abs() < 5 * stderr + 1e-4 * exact.abs().clamp(min=1.0)), (mean, exact, stderr)
    # the product of two independent probes estimates R^2 without the probe variance a square would add
    v2 = s.probe_sigma * torch.randn_like(xr)
    weak2 = weak_residual(model, SCHEDULE, xr, tr, v2, s, create_graph=False).reshape(n_probes, -1).detach()
    prod = weak * weak2
    sq_err = prod.std(0) / math.sqrt(n_probes)
    assert torch.all((prod.mean(0) - exact ** 2).abs() < 5 * sq_err + 1e-3 * (exact ** 2).clamp(min=1.0))


def test_probes_batched_in_one_pass_give_each_probes_residual():
    torch.manual_seed(4)
    model = EnergyModel(TimeMLP(2, [16, 16], 1)).double()
    s = FokkerPlanckSettings(probe_sigma=1e-3)
    x = torch.randn(6, 2, dtype=torch.float64)
    t = torch.rand(6, dtype=torch.float64) * 0.9 + 0.05
    probes = s.probe_sigma * torch.randn(3, 6, 2, dtype=torch.float64)
    together = weak_residuals(model, SCHEDULE, x, t, probes, s, create_graph=False)
    one_by_one = torch.stack([weak_residual(model, SCHEDULE, x, t, v, s, create_graph=False) for v in probes])
    assert together.shape == (3, 6)
    assert torch.allclose(together, one_by_one, rtol=1e-10, atol=1e-8)
    assert not torch.allclose(together[0], together[1])       # the probes really differ


def test_three_point_time_difference_is_second_order():
    torch.manual_seed(2)
    model = EnergyModel(TimeMLP(2, [16], 1)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.full((8,), 0.3, dtype=torch.float64, requires_grad=True)
    logp = model.log_density(x, t)
    (exact,) = torch.autograd.grad(logp.sum(), t)
    errors = []
    for h in (1e-2, 5e-3):
        td = t.detach()
        fd = three_point_dt(model.log_density(x, td + h / 2), logp.detach(), model.log_density(x, td - h), h, h / 2)
        errors.append((fd - exact).abs().max().item())
    assert errors[1] < errors[0] / 3          # halving h cuts the error ~4x (second order)


def test_time_weight_gives_half_the_weight_to_each_side():
    s = FokkerPlanckSettings(t_lo=0.0, t_hi=0.1, midpoint=0.03)
    t = torch.linspace(0.0, 0.1, 100001, dtype=torch.float64)[1:]
    w = time_weight(t, s)
    below = w[t <= 0.03].sum() / w.sum()
    assert abs(float(below) - 0.5) < 1e-3
    assert torch.allclose(w[t <= 0.03], torch.tensor(0.1 / 0.06, dtype=torch.float64))
    assert torch.all(time_weight(t, FokkerPlanckSettings()) == 1)


def test_objective_backpropagates_and_needs_a_conservative_model_for_fp():
    torch.manual_seed(3)
    x0 = torch.randn(32, 2)
    model = EnergyModel(TimeMLP(2, [16, 16], 1))
    loss, logs = FokkerPlanckDSM(SCHEDULE, FokkerPlanckSettings(alpha=5e-4))(model, x0)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert {"dsm", "fp", "loss"} <= set(logs)
    with pytest.raises(ValueError, match="conservative"):
        FokkerPlanckDSM(SCHEDULE, FokkerPlanckSettings(alpha=1e-3))(ScoreModel(TimeMLP(2, [8], 2)), x0)
    with pytest.raises(ValueError, match="interval"):
        FokkerPlanckSettings(t_lo=0.5, t_hi=0.1)


def test_fp_regularised_training_lowers_the_residual_of_an_energy_model():
    """A few hundred steps on 2-D Gaussian data: with alpha > 0 the exact residual at small t ends
    lower than with plain DSM from the same start."""
    def train(alpha):
        torch.manual_seed(4)
        model = EnergyModel(TimeMLP(2, [32, 32], 1))
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        objective = FokkerPlanckDSM(SCHEDULE, FokkerPlanckSettings(alpha=alpha, t_hi=0.1))
        gen = torch.Generator().manual_seed(0)
        for _ in range(300):
            x0 = 0.5 * torch.randn(128, 2, generator=gen) + torch.tensor([1.0, -0.5])
            loss, _ = objective(model, x0, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        x = 0.5 * torch.randn(512, 2, generator=gen) + torch.tensor([1.0, -0.5])
        t = torch.full((512,), 0.01)
        r = exact_residual(model, SCHEDULE, x, t)
        return (r - r.mean()).abs().mean().item()      # t-only offsets are absorbable: centre them
    assert train(0.05) < 0.5 * train(0.0)
