"""A new objective is one module plus one registry line: this test module is that module. It
registers a sigma-weighted denoising score matching objective (loss weight sigma_t^p, a member of
the likelihood-weighting family) without editing the package, and trains, samples and evaluates it
end to end through the real entry point (Ray Train workers and sampling actors included)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field

from moldiff.config import ConfigError
from moldiff.diffusion.process import noise_batch, sample_time
from moldiff.diffusion.schedules import build_schedule
from moldiff.objectives.registry import OBJECTIVES, ObjectiveSpec, build_objective, register_objective
from moldiff.objectives.score_matching import per_molecule_mse


class SigmaWeightedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    power: float = Field(1.0, ge=0, description="p of the loss weight sigma_t^p")


class SigmaWeightedDSM:
    """L = E_t [ sigma_t^p / E_t[sigma_t^p] * || eps_theta(x_t, t) - eps ||^2 ] (per molecule)."""

    def __init__(self, schedule, power: float):
        self.schedule, self.power = schedule, power

    def __call__(self, model, graphs, generator=None):
        t = sample_time(graphs.num_graphs, self.schedule.t_min, generator, graphs.pos.device, graphs.pos.dtype)
        xt, _, eps = noise_batch(self.schedule, graphs, t, generator)
        per_mol = per_molecule_mse(model(graphs.with_pos(xt), t)["eps"], eps, graphs)
        weight = self.schedule.alpha_sigma(t)[1] ** self.power
        loss = (weight * per_mol).sum() / weight.sum()
        return loss, {"loss": loss.detach(), "eps_mse": per_mol.detach().mean()}


def build(cfg, dataset_kT, extras):
    settings = OBJECTIVES["sigma_weighted_dsm"].options(cfg)
    return SigmaWeightedDSM(build_schedule(cfg.diffusion), settings.power)


SPEC = ObjectiveSpec("sigma_weighted_dsm", build, trains_on=("molecules",), settings=SigmaWeightedSettings,
                     variant=lambda o: f"sigma_weighted_p{o.options.get('power', 1.0):g}")


@pytest.fixture
def registered():
    import ray
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])   # Ray's workers cannot import tests/
    register_objective(SPEC)
    yield SPEC
    del OBJECTIVES[SPEC.name]


def test_a_registered_objective_is_checked_like_a_built_in_one(registered, tiny_config):
    cfg = tiny_config("toy", **{"objective.name": "sigma_weighted_dsm", "objective.options.power": 2})
    assert cfg.variant == "sigma_weighted_p2"
    with pytest.raises(ConfigError, match="objective.options.powr: Extra inputs are not permitted"):
        tiny_config("toy", **{"objective.name": "sigma_weighted_dsm", "objective.options.powr": 2})
    with pytest.raises(ConfigError, match="does not fit data.source 'muller_brown'"):
        tiny_config("toy", **{"objective.name": "sigma_weighted_dsm", "data.source": "muller_brown",
                              "model.backbone": "mlp"})
    with pytest.raises(ConfigError, match="dsm takes no options"):
        tiny_config("toy", **{"objective.options.power": 2})
    with pytest.raises(ConfigError, match="unknown objective 'sigma_weighted_dsmm'"):
        tiny_config("toy", **{"objective.name": "sigma_weighted_dsmm"})


def test_with_power_zero_it_is_plain_dsm_and_otherwise_it_is_not(registered, tiny_config):
    from moldiff.data.batch import from_arrays
    from moldiff.models import build_model

    cfg = tiny_config("toy", **{"objective.name": "sigma_weighted_dsm", "objective.options.power": 0})
    dsm_cfg = tiny_config("toy")
    torch.manual_seed(0)
    model = build_model(dsm_cfg, 1.0)
    rng = np.random.default_rng(0)
    graphs = from_arrays(np.tile(np.full(13, 18), 8), rng.normal(size=(8 * 13, 3)), np.full(8, 13))
    losses = {}
    for name, c in (("toy0", cfg), ("dsm", dsm_cfg),
                    ("toy2", tiny_config("toy", **{"objective.name": "sigma_weighted_dsm", "objective.options.power": 2}))):
        loss, _ = build_objective(c)(model, graphs, torch.Generator().manual_seed(3))
        losses[name] = float(loss.detach())
    assert losses["toy0"] == pytest.approx(losses["dsm"], rel=1e-6)
    assert abs(losses["toy2"] - losses["dsm"]) > 1e-3 * losses["dsm"]


def test_a_registered_objective_trains_samples_and_evaluates_end_to_end(registered, ray_session, tiny_config):
    from moldiff.experiment import run_experiment
    from moldiff.metrics.report import load_report
    from moldiff.train.checkpoint import load_meta

    cfg = tiny_config("toy_e2e", **{"objective.name": "sigma_weighted_dsm", "objective.options.power": 1.5,
                                    "ray.num_workers": 2})
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
    meta = load_meta(cfg.run_dir / "checkpoints" / "final")
    assert meta["config"]["objective"]["name"] == "sigma_weighted_dsm" and meta["world_size"] == 2
    assert np.isfinite(meta["metrics"]["loss"]) and np.isfinite(meta["metrics"]["eps_mse"])
    saved = load_report(cfg.run_dir)
    assert saved.workflow == "molecules" and saved.variant == "sigma_weighted_p1.5"
    assert np.isfinite(saved["distance_tvd"].mean) and report["distance_tvd"].per_seed == saved["distance_tvd"].per_seed
    assert (cfg.run_dir / "samples" / "seed_0" / "data.parquet").exists()
