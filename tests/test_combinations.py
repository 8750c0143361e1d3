"""Objectives that combine, end to end through Ray: a PSM force-window expert below t_p with a DSM
expert above it (time-interval experts on molecules), and PSM plus the Fokker-Planck term on a
conservative EGNN."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from moldiff.experiment import run_experiment
from moldiff.metrics.report import load_report
from moldiff.train.checkpoint import load_meta, load_model

EXPERTS = json.dumps({"boundaries": [0.1], "members": [
    {"objective.name": "psm", "objective.psm.weighting": "piecewise", "objective.psm.t_p": 0.05},
    {"objective.name": "dsm"}]})


def test_a_psm_window_expert_and_a_dsm_expert_train_in_parallel_and_sample_as_one_model(ray_session, tiny_config):
    cfg = tiny_config("lj_experts", **{"experts": EXPERTS, "ray.cpus_per_worker": 0.5})
    log = []
    report = run_experiment(cfg, command="pytest", log=log.append)
    experts = [cfg.run_dir / "experts" / f"expert{i}" / "checkpoints" / "final" for i in (0, 1)]
    metas = [load_meta(e) for e in experts]
    assert [m["config"]["objective"]["name"] for m in metas] == ["psm", "dsm"]
    assert [m["config"]["training"]["time_interval"] for m in metas] == [[0.0, 0.1], [0.1, 1.0]]
    assert any("expert 0 on t in [0, 0.1): piecewise" in m for m in log)
    mixture, _, _ = load_model(cfg.run_dir / "checkpoints" / "final")
    # each molecule goes to the expert that holds its t
    from moldiff.data.batch import fixed_size_batch
    g = fixed_size_batch(np.full(13, 18), np.random.default_rng(0).normal(size=(2, 13, 3)))
    t = torch.tensor([0.05, 0.5])
    with torch.no_grad():
        mixed = mixture(g, t)["eps"]
        low = mixture.experts[0](g.select(torch.tensor([0])), t[:1])["eps"]
        high = mixture.experts[1](g.select(torch.tensor([1])), t[1:])["eps"]
    assert torch.allclose(mixed, torch.cat([low, high]), atol=1e-6)
    assert np.isfinite(report["distance_tvd"].mean) and load_report(cfg.run_dir).variant == "mixture"


def test_psm_plus_the_fokker_planck_term_trains_samples_and_simulates_end_to_end(ray_session, tiny_config):
    cfg = tiny_config("lj_psm_fp", **{"objective.name": "psm", "objective.terms": "[fokker_planck]",
                                      "objective.fokker_planck.alpha": 1e-3, "model.energy_head": "true",
                                      "model.time_max_freq": 20, "ray.num_workers": 2, "ray.cpus_per_worker": 0.5,
                                      "simulation.enabled": "true", "simulation.n_chains": 6, "simulation.burn_in": 10,
                                      "simulation.n_frames": 4, "simulation.save_every": 5, "simulation.dt": 0.002,
                                      "simulation.num_actors": 2})
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
    meta = load_meta(cfg.run_dir / "checkpoints" / "final")
    assert meta["world_size"] == 2 and np.isfinite(meta["metrics"]["fp"]) and np.isfinite(meta["metrics"]["objective_loss"])
    # gradients averaged by hand (an energy model): each rank its own data, bitwise the same weights
    ranks = [json.loads((cfg.run_dir / "workers" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["last_epoch_first_batch_digest"] != ranks[1]["last_epoch_first_batch_digest"]
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    assert meta["metrics"]["loss"] == pytest.approx(meta["metrics"]["objective_loss"] + 1e-3 * meta["metrics"]["fp"],
                                                    rel=1e-5)
    model, _, _ = load_model(cfg.run_dir / "checkpoints" / "final")
    assert model.conservative and np.isfinite(report["distance_tvd"].mean)
    # Langevin with the learned forces: 6 chains x 4 frames, judged like the iid samples, side by side
    from moldiff.data.store import read_dataset
    frames, manifest = read_dataset(cfg.run_dir / "samples" / "sim_seed_0")
    assert frames.num_rows + manifest.generator["n_diverged"] == 24
    assert sorted(set(frames.column("group").to_pylist())) == list(range(6)) or manifest.generator["n_diverged"]
    blocks = sorted((cfg.run_dir / "simulation" / "seed_0").rglob("block_*.npy"))
    assert sum(np.load(b).shape[0] * np.load(b).shape[1] for b in blocks) == 24
    saved = load_report(cfg.run_dir)
    assert saved["sim_distance_tvd"].labels == {"mode": "sim"} and saved["distance_tvd"].labels == {"mode": "iid"}
    assert [e.key for e in saved.select(metric="distance_tvd")] == ["distance_tvd", "sim_distance_tvd"]
    assert saved.context["n_simulation_frames"] <= 24

