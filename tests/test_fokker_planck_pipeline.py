"""Müller-Brown end to end on the session's Ray: Langevin data, a conservative model and a mixture
of experts trained concurrently as separate Ray Train runs, iid sampling and simulation with the
learned forces in actors, and the free-energy evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from moldiff.config import ConfigError, apply_overrides, validate_config
from moldiff.data.vectors import read_states
from moldiff.experiment import run_experiment
from moldiff.train.checkpoint import load_model
from moldiff.train.experts import expert_configs


def tiny_mb(tmp_path, name, **overrides):
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "data": {"source": "muller_brown", "root": str(tmp_path / "data"),
                 "muller_brown": {"n_chains": 8, "burn_in": 200, "n_frames": 40, "save_every": 20,
                                  "reference_chains": 8, "n_tasks": 1},
                 "train": {"selection": "all"}},
        "model": {"backbone": "mlp", "hidden_layers": [16, 16]},
        "diffusion": {"process": "vp"},
        "objective": {"name": "fokker_planck", "fokker_planck": {"alpha": 0.0}},
        "training": {"epochs": 2, "batch_size": 64, "warmup_steps": 0, "optimizer": "adamw", "ema_decay": 0.0},
        "sampling": {"sampler": "em", "n_steps": 20, "n_samples": 200, "seeds": [0], "batch_size": 100},
        "simulation": {"enabled": True, "n_chains": 4, "n_frames": 30, "save_every": 5, "num_actors": 2},
        "ray": {"num_workers": 1, "num_sampling_actors": 2},
    }
    return validate_config(apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()]))


def test_single_energy_model_trains_samples_simulates_and_evaluates(ray_session, tmp_path):
    cfg = tiny_mb(tmp_path, "mb_single", **{"objective.fokker_planck.alpha": 5e-4, "ray.num_workers": 2})
    metrics = run_experiment(cfg, command="pytest", log=lambda m: None)
    run = cfg.run_dir
    for rel in ("checkpoints/final/model.pt", "metrics.json", "results.md", "plots/free_energy.png",
                "samples/seed_0/iid/data.parquet", "samples/seed_0/sim/data.parquet", "timings.json"):
        assert (run / rel).exists(), rel
    iid, _, _ = read_states(run / "samples/seed_0/iid")
    sim, _, group = read_states(run / "samples/seed_0/sim")
    assert iid.shape[1] == 2 and len(iid) <= 200
    assert len(sim) == 4 * 30 and sorted(set(group)) == [0, 1, 2, 3]
    blocks = sorted((run / "simulation/seed_0").rglob("block_*.npy"))
    assert sum(np.load(b).shape[0] * np.load(b).shape[1] for b in blocks) == 4 * 30   # frames written as made
    saved = json.loads((run / "metrics.json").read_text())
    for name in ("iid_js", "sim_js", "iid_pmf", "sim_pmf", "gap_js", "iid_pop_A", "sim_pop_C"):
        assert np.isfinite(saved["metrics"][name]["mean"]) and name in saved["noise_floor"], name
    assert saved["variant"] == "fokker_planck" and metrics["metrics"]["sim_js"] == saved["metrics"]["sim_js"]
    # two Train workers average gradients by hand (no DDP): both ran and the run finished
    assert json.loads((run / "checkpoints/final/meta.json").read_text())["world_size"] == 2


def test_experts_train_concurrently_and_assemble_into_a_mixture(ray_session, tmp_path):
    members = [{"model.hidden_layers": [16, 16], "objective.fokker_planck.alpha": 5e-4},
               {"model.hidden_layers": [8], "model.conservative": False},
               {"model.hidden_layers": [8], "training.epochs": 1}]
    cfg = tiny_mb(tmp_path, "mb_mix", **{"experts": json.dumps({"boundaries": [0.1, 0.6], "members": members})})
    configs = expert_configs(cfg)
    assert [c.training.time_interval for c in configs] == [[0.0, 0.1], [0.1, 0.6], [0.6, 1.0]]
    assert configs[1].model.conservative is False and configs[2].training.epochs == 1
    log = []
    run_experiment(cfg, command="pytest", log=log.append)
    assert any("training 3 of 3 experts, 2 at a time" in m for m in log)
    mixture, _, meta = load_model(cfg.run_dir / "checkpoints/final")
    assert meta["mixture"]["boundaries"] == [0.1, 0.6] and len(mixture.experts) == 3
    assert mixture.expert_at(1e-5).conservative and not mixture.experts[1].conservative
    assert (cfg.run_dir / "samples/seed_0/sim/data.parquet").exists()
    # a rerun finds every expert trained and only re-assembles the mixture
    log.clear()
    run_experiment(cfg, stages=["train"], command="pytest", log=log.append)
    assert sum("already trained" in m for m in log) == 3


def test_bad_expert_member_and_mismatched_system_fail_before_anything_runs(tmp_path):
    cfg = tiny_mb(tmp_path, "mb_bad", **{"experts": json.dumps(
        {"boundaries": [0.3], "members": [{"model.hidden_layerz": [4]}, {}]})})
    with pytest.raises(ConfigError, match=r"(?s)experts.members\[0\].*hidden_layerz"):
        expert_configs(cfg)
    with pytest.raises(ConfigError, match="2 members"):
        tiny_mb(tmp_path, "x", **{"experts": json.dumps({"boundaries": [0.3], "members": [{}]})})
    with pytest.raises(ConfigError, match="does not fit data.source"):
        tiny_mb(tmp_path, "x", **{"model.backbone": "egnn"})
    with pytest.raises(ConfigError, match="conservative"):
        tiny_mb(tmp_path, "x", **{"model.conservative": False, "objective.fokker_planck.alpha": 1e-3})
