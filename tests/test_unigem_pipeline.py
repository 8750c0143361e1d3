"""QM9 end to end on the session's Ray, from the committed fixture: UniGEM (two Train workers,
DDP over the two-branch network), generation in actors, EDM metrics and the property MAE; the EDM
joint baseline and the from-scratch predictor through the same stages; config errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from moldiff.config import ConfigError, apply_overrides, validate_config
from moldiff.data.store import read_dataset
from moldiff.experiment import run_experiment
from moldiff.metrics.report import load_report

FIXTURES = Path(__file__).parent / "fixtures"


def tiny_qm9(tmp_path, name, **overrides):
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "data": {"source": "qm9", "root": str(tmp_path / "data"), "qm9": {"csv_dir": str(FIXTURES)}},
        "model": {"backbone": "branched_egnn", "hidden": 16, "layers": 3, "shared_layers": 1},
        "diffusion": {"process": "polynomial", "n_steps": 40},
        "objective": {"name": "unigem", "unigem": {"nucleation_step": 1, "property": "lumo"}},
        "training": {"epochs": 2, "batch_size": 32, "warmup_steps": 0, "ema_decay": 0.0},
        "sampling": {"n_samples": 12, "batch_size": 6, "seeds": [0, 1]},
        "ray": {"num_workers": 1, "num_sampling_actors": 2},
    }
    return validate_config(apply_overrides(raw, [f"{k}={v}" for k, v in overrides.items()]))


def test_unigem_trains_generates_and_evaluates(ray_session, tmp_path):
    cfg = tiny_qm9(tmp_path, "unigem_e2e", **{"ray.num_workers": 2})
    metrics = run_experiment(cfg, command="pytest", log=lambda m: None)
    run = cfg.run_dir
    meta = json.loads((run / "checkpoints/final/meta.json").read_text())
    assert meta["world_size"] == 2 and meta["property_normalizer"]["name"] == "lumo"
    assert meta["property_normalizer"]["unit"] == "meV" and meta["property_normalizer"]["mad"] > 0
    for seed in (0, 1):
        table, manifest = read_dataset(run / f"samples/seed_{seed}")
        assert table.num_rows + manifest.generator["n_nonfinite"] == 12
        from ase.io import read          # the extxyz copy holds the same molecules as the Parquet samples
        frames = read(run / f"samples/seed_{seed}.extxyz", index=":")
        assert len(frames) == table.num_rows
        assert list(frames[0].numbers) == table.column("z")[0].as_py()
        assert np.allclose(frames[-1].positions.reshape(-1), table.column("pos")[table.num_rows - 1].as_py(), atol=1e-5)
    saved = load_report(run)
    for name in ("atom_stability", "molecule_stability", "validity", "uniqueness", "novelty", "lumo_mae",
                 "val_lumo_mae"):
        assert np.isfinite(saved[name].mean) and saved[name].floor is not None, name
    assert len(saved["validity"].per_seed) == 2
    # the data's own stability is the ceiling, and QM9 molecules are nearly all stable under EDM's rule
    assert saved["atom_stability"].floor_mean > 0.95
    assert saved["lumo_mae"].floor_mean > 0 and saved["lumo_mae"].unit == "meV"
    assert saved["val_lumo_mae"].labels == {"split": "val"} and saved["val_lumo_mae"].metric == "lumo_mae"
    assert metrics["lumo_mae"].per_seed == saved["lumo_mae"].per_seed
    # a picture of the first seed's molecules (up to 16: here all 12, or the finite ones and a '*'), on the run's page
    from PIL import Image
    assert Image.open(run / "plots/molecules.png").size == (4 * 220, 3 * 220)
    assert "![molecules](plots/molecules.png)" in (run / "results.md").read_text()
    # PoseBusters beside validity and stability, on evaluation again (the same samples; the first
    # seed's only: PoseBusters' energy ratio embeds 50 conformers of each distinct molecule, and one
    # implausible molecule of this untrained model's second seed took two minutes of that)
    from moldiff.config import apply_overrides, validate_config
    busted = validate_config(apply_overrides(cfg.model_dump(mode="json"),
                                             ["evaluation.posebusters=true", "sampling.seeds=[0]"]))
    again = run_experiment(busted, stages=["evaluate"], command="pytest", log=lambda m: None)
    assert again["validity"].per_seed == saved["validity"].per_seed[:1]
    assert 0 <= again["posebusters_all"].mean <= again["posebusters_sanitization"].mean <= 1
    assert again["posebusters_bond_lengths"].floor_mean > 0.9      # the QM9 test molecules themselves


def test_joint_baseline_and_predictor_run_through_the_same_stages(ray_session, tmp_path):
    joint = tiny_qm9(tmp_path, "edm_joint", **{"objective.unigem.mode": "joint", "sampling.seeds": "[0]"})
    saved = run_experiment(joint, command="pytest", log=lambda m: None)
    assert "lumo_mae" not in saved and np.isfinite(saved["validity"].mean)
    predictor = tiny_qm9(tmp_path, "predictor", **{"objective.unigem.mode": "predictor", "sampling.seeds": "[0]"})
    log = []
    saved = run_experiment(predictor, command="pytest", log=log.append)
    assert sorted(saved.keys()) == ["lumo_mae", "val_lumo_mae"] and any("generates nothing" in m for m in log)
    # a sweep trial judges the property alone; its finalists generate
    quick = tiny_qm9(tmp_path, "mae_only", **{"evaluation.generate": "false", "sampling.seeds": "[0]"})
    saved = run_experiment(quick, command="pytest", log=lambda m: None)
    assert sorted(saved.keys()) == ["lumo_mae", "val_lumo_mae"] and not (quick.run_dir / "samples").exists()


def test_qm9_configs_fail_early_with_the_key_named(tmp_path):
    with pytest.raises(ConfigError, match="process: polynomial"):
        tiny_qm9(tmp_path, "bad_schedule", **{"diffusion.process": "vp"})
    with pytest.raises(ConfigError, match="objective.name unigem trains model.backbone branched_egnn"):
        tiny_qm9(tmp_path, "bad_backbone", **{"model.backbone": "egnn"})
    with pytest.raises(ConfigError, match="shared_layers"):
        tiny_qm9(tmp_path, "bad_layers", **{"model.shared_layers": 3})
    with pytest.raises(ConfigError, match="nucleation_step"):
        tiny_qm9(tmp_path, "bad_tn", **{"objective.unigem.nucleation_step": 40})
