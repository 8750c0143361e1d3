"""experiments/run.py fails on bad input before anything starts, with the key path in the message."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "experiments/run.py", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_bad_override_fails_fast_with_key_path():
    proc = run("experiments/configs/dsm_lj13.yaml", "training.epochs=-3")
    assert proc.returncode == 2
    assert "training.epochs" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert "starting" not in proc.stdout                       # Ray was never started


def test_unknown_stage_and_missing_config():
    proc = run("experiments/configs/dsm_lj13.yaml", "--stages", "train,deploy")
    assert proc.returncode == 2 and "deploy" in proc.stderr and "allowed: data, train, sample, evaluate" in proc.stderr
    proc = run("experiments/configs/nope.yaml")
    assert proc.returncode == 2 and "config file not found" in proc.stderr


def test_print_config_shows_the_resolved_values():
    proc = run("experiments/configs/dsm_lj13.yaml", "ray.num_workers=2", "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert "num_workers: 2" in proc.stdout and "pair_convention: double" in proc.stdout


def test_options_may_come_between_config_and_overrides():
    proc = run("experiments/configs/dsm_lj13.yaml", "--print-config", "ray.num_workers=3", "training.epochs=7")
    assert proc.returncode == 0, proc.stderr
    assert "num_workers: 3" in proc.stdout and "epochs: 7" in proc.stdout


def moldiff(*args):
    """The installed console script (pyproject's project.scripts)."""
    exe = Path(sys.executable).with_name("moldiff")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_moldiff_command_runs_the_same_code_as_experiments_run():
    proc = moldiff("run", "experiments/configs/dsm_lj13.yaml", "ray.num_workers=2", "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == run("experiments/configs/dsm_lj13.yaml", "ray.num_workers=2", "--print-config").stdout
    proc = moldiff("sweep", "experiments/studies/psm_lj13_seeds.yaml", "--print-config")
    assert proc.returncode == 0 and "# 18 grid point(s)" in proc.stdout
    assert moldiff("run", "experiments/configs/dsm_lj13.yaml", "training.epochs=-3").returncode == 2
    proc = moldiff("publish", "nope")
    assert proc.returncode == 2 and "moldiff publish {results,study,sweep,morered}" in proc.stderr
    proc = moldiff("publish", "study", "--help")
    assert proc.returncode == 0 and "--keep-previous" in proc.stdout
    assert moldiff("frobnicate").returncode == 2 and "moldiff calc RUN_DIR FILE" in moldiff("--help").stdout
