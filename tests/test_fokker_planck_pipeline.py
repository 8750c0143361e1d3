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
from moldiff.metrics.report import load_report
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
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
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
    saved = load_report(run)
    for name in ("iid_js", "sim_js", "iid_pmf", "sim_pmf", "gap_js", "iid_pop_A", "sim_pop_C"):
        assert np.isfinite(saved[name].mean) and saved[name].floor is not None, name
    assert saved.variant == "fokker_planck" and saved.workflow == "states"
    assert report["sim_js"].per_seed == saved["sim_js"].per_seed
    # structure instead of names: iid and simulation side by side, the gap has no training-set value
    assert saved["sim_js"].labels == {"mode": "sim", "footing": "reference"} and saved["sim_js"].metric == "js"
    assert [e.key for e in saved.select(metric="js")] == ["iid_js", "sim_js", "gap_js"]
    assert saved["iid_js"].train_set is not None and saved["gap_js"].train_set is None
    # the paper's footing beside ours: the same states against the training data
    for mode in ("iid", "sim"):
        entry = saved[f"{mode}_js_vs_train"]
        assert entry.labels == {"mode": mode, "footing": "training_data"} and np.isfinite(entry.mean)
        assert entry.floor_mean is not None and entry.floor_mean > 0      # the reference against the training data
    assert saved["iid_js"].labels["footing"] == "reference"
    # two Train workers average gradients by hand (no DDP): both ran and the run finished
    meta = json.loads((run / "checkpoints/final/meta.json").read_text())
    assert meta["world_size"] == 2
    # the trained energy model as an ASE calculator: kT and units read from its checkpoint, and the
    # forces those its simulation used
    from ase import Atoms
    from moldiff.ase import MoldiffCalculator
    from moldiff.sampling.vector import learned_forces
    assert meta["dataset"]["kT"] == cfg.data.muller_brown.kT and "Müller-Brown" in meta["dataset"]["units"]["energy"]
    atoms = Atoms("H", positions=[[-0.5, 1.4, 0.0]], calculator=MoldiffCalculator(run))
    model, _, _ = load_model(run / "checkpoints/final")
    expected = learned_forces(model.double(), cfg.data.muller_brown.kT, cfg.simulation.t_sim,
                              model.state_scale)(np.array([[-0.5, 1.4]]))[0]
    forces = atoms.get_forces()
    assert forces[0, :2] == pytest.approx(expected, rel=1e-6) and forces[0, 2] == 0.0
    assert np.isfinite(atoms.get_potential_energy())


def test_experts_train_concurrently_and_assemble_into_a_mixture(ray_session, tmp_path):
    members = [{"model.hidden_layers": [16, 16], "objective.fokker_planck.alpha": 5e-4, "training.epochs": 40},
               {"model.hidden_layers": [8], "model.conservative": False, "training.epochs": 40},
               {"model.hidden_layers": [8], "training.epochs": 1}]
    cfg = tiny_mb(tmp_path, "mb_mix", **{"experts": json.dumps({"boundaries": [0.1, 0.6], "members": members})})
    configs = expert_configs(cfg)
    assert [c.training.time_interval for c in configs] == [[0.0, 0.1], [0.1, 0.6], [0.6, 1.0]]
    assert configs[1].model.conservative is False and configs[2].training.epochs == 1
    log = []
    run_experiment(cfg, command="pytest", log=log.append)
    assert any("training 3 of 3 experts, 2 at a time" in m for m in log)
    # the first two trained at the same time (2 CPUs, one 1-CPU worker each): their windows overlap
    windows = [json.loads((c.run_dir / "checkpoints/final/meta.json").read_text())["trained_between"]
               for c in configs[:2]]
    assert max(w[0] for w in windows) < min(w[1] for w in windows), windows
    mixture, _, meta = load_model(cfg.run_dir / "checkpoints/final")
    assert meta["mixture"]["boundaries"] == [0.1, 0.6] and len(mixture.experts) == 3
    assert mixture.expert_at(1e-5).conservative and not mixture.experts[1].conservative
    from moldiff.ase import MoldiffCalculator
    assert MoldiffCalculator(cfg.run_dir).kind == "energy"       # the expert that holds t_sim
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


def test_alanine_dipeptide_end_to_end_on_backbone_dihedrals(ray_session, tmp_path):
    raw = {
        "name": "ala", "output_dir": str(tmp_path / "runs"),
        "data": {"source": "alanine", "root": str(tmp_path / "data"),
                 "alanine": {"n_replicas": 2, "swap_every": 50, "save_every": 50, "equilibration_steps": 100,
                             "n_frames": 60, "chunk_frames": 30, "n_runs": 2, "reference_runs": 1},
                 "train": {"selection": "all"}},
        "model": {"backbone": "graph_transformer", "hidden": 8, "layers": 1, "heads": 2, "head_dim": 4},
        "diffusion": {"process": "vp"},
        "objective": {"name": "fokker_planck", "fokker_planck": {"alpha": 1e-4}},
        "training": {"epochs": 1, "batch_size": 32, "warmup_steps": 0, "augment_rotations": True},
        "sampling": {"sampler": "em", "n_steps": 10, "n_samples": 40, "seeds": [0], "batch_size": 40},
        "simulation": {"enabled": True, "dt": 0.002, "n_chains": 2, "n_frames": 5, "save_every": 10, "num_actors": 1},
        "evaluation": {"js_bins": 16, "pmf_bins": 16},
        "ray": {"num_workers": 1, "num_sampling_actors": 1},
    }
    cfg = validate_config(raw)
    run_experiment(cfg, command="pytest", log=lambda m: None)
    train, manifest, group = read_states(next((tmp_path / "data").glob("alanine-train-*[!s]")))
    assert train.shape == (120, 15) and sorted(set(group)) == [0, 1]
    assert np.allclose(train.reshape(-1, 5, 3).mean(1), 0, atol=1e-6)            # centred beads
    assert manifest.units["length"] == "nm" and abs(manifest.kT - 2.494) < 1e-3     # R * 300 K, kJ/mol
    assert len(manifest.generator["masses"]) == 15
    saved = load_report(cfg.run_dir)
    for name in ("iid_js", "sim_js", "iid_pmf", "iid_phi_positive", "sim_phi_positive"):
        assert np.isfinite(saved[name].mean), name
    sim, _, _ = read_states(cfg.run_dir / "samples/seed_0/sim")
    # the simulation runs in nm with the learned forces un-scaled: bead-bead distances stay molecular
    d = np.linalg.norm(np.diff(sim.reshape(-1, 5, 3), axis=1), axis=-1)
    assert sim.shape == (10, 15) and np.all(d < 5.0)


def test_variant_names_of_the_paper(tmp_path):
    both = [{"objective.fokker_planck.alpha": 5e-4}, {}, {}]
    nested = [{"objective": {"fokker_planck": {"alpha": 5e-4}}}, {}, {}]
    assert tiny_mb(tmp_path, "a").variant == "diffusion"
    assert tiny_mb(tmp_path, "b", **{"objective.fokker_planck.alpha": 1e-3}).variant == "fokker_planck"
    for members, name in (([{}, {}, {}], "mixture"), (both, "both"), (nested, "both")):
        cfg = tiny_mb(tmp_path, "c", **{"experts": json.dumps({"boundaries": [0.1, 0.6], "members": members})})
        assert cfg.variant == name
