"""UniGEM: phase masks, oversampling, branch routing by t, type decoding, the three objectives, and
the ancestral sampler against an exactly known denoiser."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moldiff.data.batch import from_arrays
from moldiff.diffusion.schedules import PolynomialSchedule
from moldiff.data.normalization import PropertyNormalizer
from moldiff.models.unigem import MoleculeGenerator, type_index
from moldiff.nn.branched_egnn import BranchedEGNN
from moldiff.objectives.unigem import UniGEMObjective, UniGEMSettings, predictive_mask, sample_steps
from moldiff.sampling.ddpm import ancestral_sample, empty_batch, exact_gaussian_eps, size_distribution

SCHEDULE = PolynomialSchedule(1000)


def molecules(seed=0, sizes=(4, 6, 5)):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.choice([1, 6, 7, 8, 9], n) for n in sizes])
    pos = rng.normal(size=(sum(sizes), 3)) * 1.2
    return from_arrays(z, pos, np.array(sizes), props=rng.normal(size=(len(sizes), 1)) * 50 + 100)


def unigem_model(two_branches=True, mode="unigem"):
    torch.manual_seed(0)
    features = 5 if mode != "unigem" else 0
    return MoleculeGenerator(BranchedEGNN(16, 1, 2, features, 16, two_branches and mode == "unigem"), SCHEDULE, mode)


def test_schedule_is_edms_polynomial_2():
    t = torch.tensor([0, 10, 100, 500, 1000]) / 1000
    assert torch.allclose(SCHEDULE.sigma(t), torch.tensor([0.0032, 0.0145, 0.1411, 0.6614, 1.0]), atol=1e-4)
    a, s = SCHEDULE.alpha_sigma(t)
    assert torch.allclose(a ** 2 + s ** 2, torch.ones(5))
    with pytest.raises(NotImplementedError, match="ancestral"):
        SCHEDULE.g2(t)


def test_phase_masks_switch_the_predictive_losses_at_the_nucleation_step():
    s = UniGEMSettings(nucleation_step=10)
    steps = torch.tensor([0, 9, 10, 11, 500, 1000])
    assert predictive_mask(steps, s).tolist() == [1, 1, 1, 0, 0, 0]
    assert predictive_mask(steps, UniGEMSettings(predictive_at="all")).tolist() == [1] * 6


def test_oversampling_puts_the_asked_fraction_in_each_phase():
    g = torch.Generator().manual_seed(0)
    s = UniGEMSettings(nucleation_step=10, oversample=0.5)
    steps = sample_steps(64, s, g)
    assert (steps[:32] <= 10).all() and (steps[32:] > 10).all() and steps.max() <= 1000
    draws = torch.cat([sample_steps(64, s, g) for _ in range(200)])
    assert set(draws[draws <= 10].tolist()) == set(range(11))      # every growth step is drawn
    uniform = sample_steps(100_000, UniGEMSettings(oversample=None), g)
    frac, p = float((uniform <= 10).float().mean()), 11 / 1001
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / 100_000)
    with pytest.raises(ValueError, match="oversample"):
        UniGEMSettings(oversample=1.5)


def test_branch_routing_follows_t_per_molecule():
    model = unigem_model()
    graphs = molecules()
    t = torch.tensor([0.005, 0.5, 0.01])                           # steps 5, 500, 10: growth, nucleation, growth
    assert model.growth(t).tolist() == [True, False, True]
    before = model(graphs, t)
    with torch.no_grad():
        for p in model.backbone.growth.parameters():
            p.add_(0.05 * torch.randn_like(p))
    after = model(graphs, t)
    atom_mol = graphs.batch
    changed = (before["eps"] - after["eps"]).abs().sum(-1) > 1e-6
    assert changed[atom_mol != 1].all() and not changed[atom_mol == 1].any()
    # a mixed batch gives what each molecule gets alone
    for i in range(3):
        alone = model(graphs.select(torch.tensor([i])), t[i:i + 1])
        assert torch.allclose(alone["prop"], after["prop"][i:i + 1], atol=1e-5)
        assert torch.allclose(alone["eps"], after["eps"][atom_mol == i], atol=1e-5)


def test_outputs_are_equivariant_and_heads_invariant():
    model = unigem_model()
    graphs = molecules()
    t = torch.tensor([0.005, 0.5, 0.2])
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1)))
    out = model(graphs, t)
    rotated = model(graphs.with_pos(graphs.pos @ q.T + torch.tensor([1.0, -2.0, 0.5])), t)
    assert torch.allclose(rotated["eps"], out["eps"] @ q.T, atol=1e-4)
    assert torch.allclose(rotated["type_out"], out["type_out"], atol=1e-4)
    assert torch.allclose(rotated["prop"], out["prop"], atol=1e-4)


def test_type_decoding_maps_head_argmax_to_elements():
    model = unigem_model()
    scores = torch.tensor([[0.1, 0.9, 0, 0, 0], [0, 0, 0, 0, 2.0], [3.0, 0, 0, 0, 0]])
    assert model.decode_types({"type_out": scores}).tolist() == [6, 9, 1]
    assert type_index(torch.tensor([1, 6, 7, 8, 9])).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"\[17\]"):
        type_index(torch.tensor([6, 17]))


def test_predictive_losses_reach_the_heads_only_in_the_growth_phase():
    graphs = molecules()
    norm = PropertyNormalizer.from_values("lumo", "meV", graphs.props[:, 0].numpy())
    model = unigem_model()
    objective = UniGEMObjective(SCHEDULE, UniGEMSettings(), "unigem", norm)
    for steps, expect_grad in ((torch.tensor([500, 11, 999]), False), (torch.tensor([500, 3, 999]), True)):
        model.zero_grad()
        loss, logs = objective(model, graphs, torch.Generator().manual_seed(0), steps=steps)
        loss.backward()
        head_grad = sum(float(p.grad.abs().sum()) for p in model.type_head.parameters() if p.grad is not None)
        assert (head_grad > 0) == expect_grad
        assert math.isfinite(logs["coord"])


def test_joint_and_predictor_objectives_train_their_outputs():
    graphs = molecules()
    norm = PropertyNormalizer.from_values("lumo", "meV", graphs.props[:, 0].numpy())
    for mode, key in (("joint", "eps_types"), ("predictor", "prop")):
        model = unigem_model(mode=mode)
        loss, _ = UniGEMObjective(SCHEDULE, UniGEMSettings(), mode, norm)(model, graphs, torch.Generator().manual_seed(0))
        loss.backward()
        head = model.type_noise_head if mode == "joint" else model.property_head.graph
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_ancestral_sampler_reproduces_a_gaussian_with_the_exact_denoiser():
    # exact only as T grows (the reverse kernel's variance is the posterior's given x_0): 0.91 of the
    # true variance at T = 50, 0.96 at 200, 1.004 at 1000
    schedule = PolynomialSchedule(1000)
    std, n = 0.7, 4
    sizes, probs = size_distribution(np.full(10, n))
    graphs = empty_batch(np.full(3000, n), dtype=torch.float64)
    x0, _, _ = ancestral_sample(exact_gaussian_eps(std, schedule), schedule, graphs, torch.Generator().manual_seed(0))
    # centred N(0, std^2 I): each coordinate has variance std^2 (n - 1) / n
    var = float(x0.var())
    assert abs(var / (std ** 2 * (n - 1) / n) - 1) < 0.02
    centre = torch.zeros(3000, 3, dtype=torch.float64).index_add_(0, graphs.batch, x0)
    assert float(centre.abs().max()) < 1e-10
    assert sizes.tolist() == [4] and probs.tolist() == [1.0]
