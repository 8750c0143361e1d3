"""Bad checkpoints fail with one clear error naming the file and what is wrong: corrupt, truncated
or missing weights, unreadable or incomplete metadata, weights that do not fit; another run's model
of the wrong kind (sampling.checkpoint, relaxation.time_run) and a changed architecture under an
existing run name are refused before anything is written."""
from __future__ import annotations

import json

import pytest

from moldiff.models import build_model
from moldiff.train.checkpoint import CheckpointError, load_model, save_checkpoint
from moldiff.train.run_checks import architecture_changes, check_run_name, check_trained_by
from moldiff.workflows import trained_checkpoint, workflow_for
from test_fokker_planck_pipeline import tiny_mb
from test_morered_pipeline import tiny_morered


def saved(cfg, directory, state_dim=2):
    """A real checkpoint of ``cfg``'s (untrained) model, as training writes it."""
    model = build_model(cfg, 1.0, state_dim)
    save_checkpoint(directory, model_state=model.state_dict(), ema_state=None, optimizer_state=None,
                    scheduler_state=None, meta={"config": cfg.model_dump(mode="json"), "sigma_data": 1.0,
                                                "state_dim": state_dim})
    return directory


def test_damaged_checkpoints_name_the_file_and_the_fault(tiny_config, tmp_path):
    cfg = tiny_config()
    good = saved(cfg, tmp_path / "good")
    model, _, _ = load_model(good)
    assert sum(p.numel() for p in model.parameters()) > 0

    corrupt = saved(cfg, tmp_path / "corrupt")
    (corrupt / "model.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"corrupt/model.pt: cannot load checkpoint.*rerun that run's train stage"):
        load_model(corrupt)

    truncated = saved(cfg, tmp_path / "truncated")
    data = (truncated / "model.pt").read_bytes()
    (truncated / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated/model.pt: cannot load checkpoint"):
        load_model(truncated)

    missing = saved(cfg, tmp_path / "missing")
    (missing / "model.pt").unlink()
    with pytest.raises(CheckpointError, match=r"missing/model.pt: checkpoint file missing"):
        load_model(missing)

    bad_meta = saved(cfg, tmp_path / "bad_meta")
    (bad_meta / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"bad_meta/meta.json: not valid JSON"):
        load_model(bad_meta)

    no_config = saved(cfg, tmp_path / "no_config")
    meta = json.loads((no_config / "meta.json").read_text())
    del meta["config"]
    (no_config / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"no_config/meta.json: missing key 'config'"):
        load_model(no_config)

    refit = saved(cfg, tmp_path / "refit")                 # weights of one width, a config of another
    meta = json.loads((refit / "meta.json").read_text())
    meta["config"]["model"]["hidden"] = 32
    (refit / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"refit/model.pt: weights do not fit the configured model"):
        load_model(refit)
    with pytest.raises(CheckpointError, match="meta.json: checkpoint metadata missing"):
        load_model(tmp_path)                               # no meta.json at all


def test_another_runs_model_of_the_wrong_kind_is_refused(tiny_config, tmp_path):
    mb = saved(tiny_mb(tmp_path, "mb"), tmp_path / "runs" / "mb" / "checkpoints" / "final")
    lj = tiny_config("lj", **{"sampling.checkpoint": str(tmp_path / "runs" / "mb")})
    with pytest.raises(CheckpointError, match=r"sampling.checkpoint: .* of the states workflow .* molecules workflow"):
        trained_checkpoint(lj, lj.run_dir)
    empty = saved(tiny_mb(tmp_path, "mb2"), tmp_path / "mb2")
    (empty / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model.pt: weights missing or empty"):
        check_trained_by(tiny_mb(tmp_path, "mb3"), empty, "sampling.checkpoint")
    # relaxation.time_run must hold a time (or joint) MoreRed model, not a noise model
    noise = saved(tiny_morered(tmp_path, "noise", "noise", **{"relaxation.samplers": "[ddpm]"}),
                  tmp_path / "noise_run" / "checkpoints" / "final")
    relax = tiny_morered(tmp_path, "relax", "noise", **{"relaxation.samplers": "[itp]",
                                                        "relaxation.time_run": str(tmp_path / "noise_run")})
    with pytest.raises(CheckpointError, match=r"relaxation.time_run: .* holds a morered.noise model; this needs one of "
                                              r"morered.time, morered.joint"):
        workflow_for(relax).check_models(relax)


def test_a_changed_architecture_under_an_existing_run_name_is_refused(tiny_config):
    cfg = tiny_config("named")
    saved(cfg, cfg.run_dir / "checkpoints" / "final")
    check_run_name(cfg, ["train", "sample", "evaluate"])                          # the same model: fine
    check_run_name(tiny_config("named", **{"training.epochs": 9}), ["train"])     # more training: fine
    wider = tiny_config("named", **{"model.hidden": 32, "diffusion.sigma_max": 5.0})
    with pytest.raises(CheckpointError) as err:
        check_run_name(wider, ["sample", "evaluate"])
    assert "model.hidden: 16 -> 32" in str(err.value) and "diffusion.sigma_max: 8.0 -> 5.0" in str(err.value)
    assert "Pick another name" in str(err.value) and str(cfg.run_dir) in str(err.value)
    check_run_name(tiny_config("named", **{"model.hidden": 32, "sampling.checkpoint": "x"}), ["sample"])  # not its own
    assert architecture_changes({"model": {"hidden": 16}}, {"model": {"hidden": 16, "new_option": 1}}) == []


def test_the_command_line_refuses_a_changed_architecture_before_writing(tiny_config, tmp_path):
    """experiments/run.py: exit 2 with the differing keys; the run's saved config is untouched."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from moldiff.config import dump_config
    cfg = tiny_config("cli")
    saved(cfg, cfg.run_dir / "checkpoints" / "final")
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    before = (cfg.run_dir / "config.yaml").read_text()
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump({**yaml.safe_load(before), "model": {
        **yaml.safe_load(before)["model"], "hidden": 24}}))
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": str(Path(sys.executable).parent), "RAY_AUTH_MODE": "disabled", "MOLDIFF_DASHBOARD": "0",
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "127.0.0.1:1"}   # no cluster there: refused before Ray
    proc = subprocess.run([sys.executable, "experiments/run.py", str(tmp_path / "wide.yaml"), "--stages", "evaluate"],
                          capture_output=True, text=True, cwd=root, timeout=90, env=env)
    assert proc.returncode == 2 and "model.hidden: 16 -> 24" in proc.stderr, proc.stderr[-2000:]
    assert (cfg.run_dir / "config.yaml").read_text() == before
