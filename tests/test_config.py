from pathlib import Path

import pytest
import yaml

from moldiff.config import ConfigError, apply_overrides, dump_config, load_config, validate_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_experiment_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.name


def write(tmp_path, raw) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_names_path_and_allowed_keys(tmp_path):
    path = write(tmp_path, {"name": "x", "training": {"epohcs": 3}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "training.epohcs" in msg and "unknown key" in msg
    assert "epochs" in msg and "batch_size" in msg          # the allowed keys are listed


def test_wrong_type_and_out_of_range(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {"name": "x", "training": {"epochs": "many", "lr": -1}}))
    msg = str(err.value)
    assert "training.epochs" in msg and "'many'" in msg
    assert "training.lr" in msg and "greater than 0" in msg


def test_literal_lists_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {"name": "x", "diffusion": {"process": "vpp"}}))
    assert "diffusion.process" in str(err.value) and "'ve'" in str(err.value) and "'vp'" in str(err.value)


def test_cross_field_checks(tmp_path):
    with pytest.raises(ConfigError, match="sigma_min"):
        load_config(write(tmp_path, {"name": "x", "diffusion": {"sigma_min": 5, "sigma_max": 1}}))
    with pytest.raises(ConfigError, match="data.npz is missing"):
        load_config(write(tmp_path, {"name": "x", "data": {"source": "npz"}}))


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path, {"name": "x"})
    cfg = load_config(path, ["training.epochs=7", "ray.use_gpu=true", "sampling.seeds=[4, 5]", "model.cutoff=null"])
    assert cfg.training.epochs == 7 and cfg.ray.use_gpu is True and cfg.sampling.seeds == [4, 5]
    assert cfg.model.cutoff is None
    with pytest.raises(ConfigError, match="not of the form"):
        load_config(path, ["training.epochs"])
    with pytest.raises(ConfigError, match="training.nope"):
        load_config(path, ["training.nope=1"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"name": "x", "seed": 1}, ["seed.sub=2"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips():
    cfg = validate_config({"name": "x", "training": {"epochs": 3}})
    again = validate_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_extends_merges_sections_and_detects_cycles(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"name": "base", "training": {"epochs": 50, "lr": 0.01}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "name": "child",
                                                         "training": {"epochs": 5}}))
    cfg = load_config(tmp_path / "child.yaml", ["training.batch_size=8"])
    assert (cfg.name, cfg.training.epochs, cfg.training.lr, cfg.training.batch_size) == ("child", 5, 0.01, 8)
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\nname: c\n")
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "c.yaml")


GPU_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments" / "configs" / "gpu").glob("*.yaml"))


def test_the_paper_scale_gpu_configs_are_there():
    assert {p.stem for p in GPU_CONFIGS} >= {"psm_lj13_biased", "psm_lj13_table2", "psm_lj55_table2", "fp_muller_brown",
                                             "fp_alanine", "unigem_qm9", "morered_qm9"}


@pytest.mark.parametrize("path", GPU_CONFIGS, ids=lambda p: p.name)
def test_every_gpu_config_prints_through_the_cli_and_states_its_cost(path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "experiments" / "run.py"), str(path), "--print-config"],
                          capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["ray"]["use_gpu"] is True
    assert "Expected cost" in cfg["description"] and "GPU" in cfg["description"]


def test_gpu_configs_use_the_papers_sizes():
    by_name = {p.stem: load_config(p) for p in GPU_CONFIGS}
    unigem, morered = by_name["unigem_qm9"], by_name["morered_qm9"]
    assert (unigem.model.hidden, unigem.model.layers, unigem.model.shared_layers) == (256, 9, 1)
    assert unigem.training.epochs == 2000 and unigem.data.qm9.max_heavy_atoms is None
    assert morered.model.hidden == 256 and morered.training.grad_clip == 0.5
    table6, table7 = by_name["psm_lj13_biased"], by_name["psm_lj13_table2"]
    assert (table6.training.epochs, table6.diffusion.sigma_min, table6.diffusion.sigma_max) == (2000, 0.1, 5.0)
    assert (table7.training.epochs, table7.diffusion.sigma_max, table7.sampling.n_steps) == (5000, 8.0, 1000)
    assert by_name["fp_alanine"].training.batch_size == 1024 and by_name["fp_alanine"].model.hidden == 96
