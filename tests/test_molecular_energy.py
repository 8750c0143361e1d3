"""The conservative molecular model (energy head on the EGNN or the e3nn backbone) and the Fokker-Planck residual added to DSM /
PSM on molecules: symmetries, the score as the gradient of log p, the FP term's estimator against
the exact residual, and the combination rules."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from moldiff.config import ConfigError
from moldiff.data.batch import fixed_size_batch
from moldiff.diffusion.schedules import build_schedule
from moldiff.models import build_model
from moldiff.models.molecular_energy import MolecularEnergyModel
from moldiff.objectives import build_objective
from moldiff.objectives.fokker_planck import FokkerPlanckSettings, exact_residual, weak_residuals
from moldiff.objectives.terms import CombinedObjective, FokkerPlanckTerm


def energy_config(tiny_config, **extra):
    return tiny_config("energy", **{"model.energy_head": "true", **extra})


def molecules(n_mol=4, n_atoms=13, seed=0):
    rng = np.random.default_rng(seed)
    return fixed_size_batch(np.full(n_atoms, 18), rng.normal(size=(n_mol, n_atoms, 3)), dtype=torch.float64)


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
def test_log_density_is_invariant_and_the_score_is_its_equivariant_centred_gradient(tiny_config, backbone):
    torch.manual_seed(0)
    model = build_model(energy_config(tiny_config, **{"model.backbone": backbone}), 0.7).double()
    assert isinstance(model, MolecularEnergyModel) and model.conservative
    g, t = molecules(), torch.full((4,), 0.3, dtype=torch.float64)
    out = model(g, t)
    rot = torch.tensor(Rotation.random(random_state=1).as_matrix())
    moved = model(g.with_pos(g.pos @ rot.T + torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)), t)
    assert torch.allclose(moved["log_density"], out["log_density"], atol=1e-10)
    assert torch.allclose(moved["eps"], out["eps"] @ rot.T, atol=1e-10)
    assert out["eps"].reshape(4, 13, 3).mean(1).abs().max() < 1e-12        # no centre-of-geometry component
    perm = torch.randperm(13)
    permuted = g.with_pos(g.pos.reshape(4, 13, 3)[:, perm].reshape(-1, 3))
    assert torch.allclose(model(permuted, t)["log_density"], out["log_density"], atol=1e-10)
    # eps = -sigma * grad log p, by finite differences in the flat 3n coordinates
    flat = model.as_state_model(g)
    x = g.pos.reshape(4, -1)
    _, score = flat.log_density_and_score(x, t)
    sigma = float(model.schedule.sigma(t[:1]))
    assert torch.allclose(out["eps"].reshape(4, -1), -sigma * score, atol=1e-12)
    h = 1e-5
    for i in (0, 7, 38):
        e = torch.zeros_like(x)
        e[:, i] = h
        fd = (flat.log_density(x + e, t) - flat.log_density(x - e, t)) / (2 * h)
        assert torch.allclose(fd, score[:, i], atol=1e-7)
    with torch.no_grad():                                   # samplers call it without grad: it still works
        assert torch.allclose(model(g, t)["eps"], out["eps"], atol=1e-12)


@pytest.mark.parametrize("backbone", ["egnn", "e3nn"])
def test_the_weak_residual_of_a_molecular_energy_model_matches_the_exact_one(tiny_config, backbone):
    torch.manual_seed(2)
    cfg = energy_config(tiny_config, **{"model.hidden": 8, "model.layers": 1, "model.time_max_freq": 20,
                                        "model.backbone": backbone})
    model = build_model(cfg, 1.0).double()
    g = molecules(n_mol=3, n_atoms=3, seed=1)                 # D = 9: the exact Laplacian is cheap
    flat = model.as_state_model(g)
    x = g.pos.reshape(3, -1)
    t = torch.tensor([0.01, 0.2, 0.7], dtype=torch.float64)
    exact = exact_residual(flat, model.schedule, x, t)
    s = FokkerPlanckSettings(alpha=1.0, probe_sigma=1e-3)
    n_probes = 3000
    probes = s.probe_sigma * torch.randn((n_probes, 3, 9), dtype=torch.float64)
    weak = weak_residuals(flat, model.schedule, x, t, probes, s, create_graph=False, dim=6).detach()
    # the full-space divergence term f D vanishes for VE (f = 0), so dim only matters for VP
    mean, stderr = weak.mean(0), weak.std(0) / math.sqrt(n_probes)
    assert torch.all((mean - exact).abs() < 5 * stderr + 1e-3 * exact.abs().clamp(min=1.0)), (mean, exact, stderr)


def test_psm_plus_the_fokker_planck_term_trains_a_conservative_model(tiny_config):
    cfg = energy_config(tiny_config, **{"objective.name": "psm", "objective.terms": "[fokker_planck]",
                                        "objective.fokker_planck.alpha": 0.1, "model.time_max_freq": 20})
    objective = build_objective(cfg, 1.0)
    assert isinstance(objective, CombinedObjective) and isinstance(objective.terms[0][2], FokkerPlanckTerm)
    assert objective.terms[0][:2] == ("fokker_planck", 0.1) and cfg.variant == "piecewise"
    torch.manual_seed(0)
    model = build_model(cfg, 0.7).double()
    g = molecules()
    g.forces = torch.randn_like(g.pos)
    loss, logs = objective(model, g, torch.Generator().manual_seed(0))
    assert float(logs["loss"]) == pytest.approx(float(logs["objective_loss"]) + 0.1 * float(logs["fp"]))
    loss.backward()
    head = [p.grad for p in model.head.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in head) and sum(gr.abs().sum() for gr in head) > 0
    # without the term the objective is PSM's own
    plain = build_objective(energy_config(tiny_config, **{"objective.name": "psm"}), 1.0)
    assert not isinstance(plain, CombinedObjective)


def test_the_term_needs_what_it_works_on(tiny_config):
    with pytest.raises(ConfigError, match="needs a conservative model: set model.energy_head"):
        tiny_config("x", **{"objective.terms": "[fokker_planck]"})
    with pytest.raises(ConfigError, match="time_max_freq 1000 makes that biased: set it to at most 50"):
        energy_config(tiny_config, **{"objective.terms": "[fokker_planck]"})
    with pytest.raises(ConfigError, match="unknown term 'fp'"):
        energy_config(tiny_config, **{"objective.terms": "[fp]"})
    # both molecular backbones have an energy version, so either takes the term
    cfg = energy_config(tiny_config, **{"model.backbone": "e3nn", "model.time_max_freq": "20",
                                        "objective.terms": "[fokker_planck]"})
    assert cfg.objective.terms == ["fokker_planck"] and cfg.model.energy_head
    with pytest.raises(ConfigError, match="training.precision: bf16 does not fit"):
        energy_config(tiny_config, **{"training.precision": "bf16"})
