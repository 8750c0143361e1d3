"""End to end: ``ray job submit --working-dir . -- python experiments/run.py ...`` against a local
two-node cluster (a head and a worker raylet) that the tests start and stop. The two Train
workers are placed on different nodes (STRICT_SPREAD), and the job must not depend on moldiff
being installed: the driver imports it from the uploaded working dir, the workers from py_modules.
An ablation study (``--sweep``) goes through the same door.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_raw_config
from moldiff.local_cluster import LocalCluster
from moldiff.metrics.report import load_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    bin_dir = str(Path(sys.executable).parent)
    # the job's `python` is resolved on the cluster's PATH: the environment the cluster started in
    env = {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    with LocalCluster(n_workers=1, cpus_per_node=2, env=env) as c:
        yield c


def submit(cluster, run_args: list[str]) -> str:
    """``ray job submit`` of ``python experiments/run.py <run_args>`` with the runtime env that
    cluster/README.md tells people to use; returns the job's output."""
    cmd = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", cluster.dashboard_url,
           "--working-dir", str(ROOT), "--runtime-env", str(ROOT / "cluster" / "runtime_env.yaml"),
           "--", "python", "experiments/run.py", *run_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=cluster.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"Job '.*' succeeded", out), out[-3000:]
    return out


def test_job_submit_runs_the_experiment_across_two_nodes(cluster, tmp_path):
    overrides = [
        f"output_dir={tmp_path / 'runs'}", f"data.root={tmp_path / 'data'}", "name=job",
        "data.lj.reference.n_chains=8", "data.lj.reference.burn_in=200", "data.lj.reference.n_steps=400",
        "data.lj.reference.save_every=20", "data.train.n_frames=64",
        "model.hidden=16", "model.layers=2", "training.epochs=2", "training.batch_size=16",
        "training.warmup_steps=2", "training.checkpoint_every=1",
        "ray.num_workers=2", "ray.placement_strategy=STRICT_SPREAD",
        "sampling.n_steps=10", "sampling.n_samples=20", "sampling.seeds=[0]", "sampling.batch_size=10",
        "evaluation.distance_bins=20", "evaluation.energy_bins=10", "evaluation.w2_samples=20",
    ]
    out = submit(cluster, ["experiments/configs/dsm_lj13.yaml", *overrides])
    # the driver imported moldiff from the uploaded working dir, not from this checkout or site-packages
    origin = re.search(r"moldiff \S+ from (\S+)", out).group(1)
    assert "runtime_resources" in origin and not origin.startswith(str(ROOT)), origin
    run = tmp_path / "runs" / "job"
    report = load_report(run)
    assert report.n_samples > 0 and report["distance_tvd"].floor is not None
    meta = json.loads((run / "checkpoints" / "final" / "meta.json").read_text())
    assert meta["world_size"] == 2
    ranks = [json.loads((run / "workers" / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["node_id"] != ranks[1]["node_id"], ranks           # STRICT_SPREAD: one rank per node
    assert set(cluster.node_ids()) == {r["node_id"] for r in ranks}
    for r in ranks:     # each rank imported moldiff from the job's uploaded py_modules, not the venv's install
        assert "runtime_resources" in r["moldiff"] and "py_modules" in r["moldiff"], r
        assert not r["moldiff"].startswith(str(ROOT)), r
    assert (run / "plots" / "hr.png").is_file() and (run / "samples" / "seed_0.extxyz").is_file()


def test_driver_leaves_the_jobs_own_runtime_env_settings_alone(monkeypatch):
    """Ray refuses to start a job's driver whose ray.init repeats an env var of the job's runtime
    env (cluster/runtime_env.yaml sets OMP_NUM_THREADS): the job's value wins, ours are dropped."""
    from moldiff.config import RayConfig
    from moldiff.runtime import runtime_env

    alone = runtime_env(RayConfig())
    assert alone["env_vars"]["OMP_NUM_THREADS"] == "1" and alone["py_modules"]
    job = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": job}))
    inside = runtime_env(RayConfig())
    assert not set(inside["env_vars"]) & set(job["env_vars"])
    assert set(inside["env_vars"]) | set(job["env_vars"]) == set(alone["env_vars"]) | set(job["env_vars"])
    assert inside["py_modules"] == alone["py_modules"]


def test_job_submit_runs_an_ablation_study(cluster, tmp_path):
    """A seed ablation (PSM, seeds 0 and 1) submitted as one job: each cell a Tune trial running its
    own Ray Train run on the cluster, aggregated into one table with mean +- std over the seeds and
    grouped by objective. (Two cells: every cell is a whole experiment, the suite's time is the cost;
    several objectives side by side are the in-process studies' job in tests/test_sweep.py.)"""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_raw_config(tmp_path, "base")))
    spec = {"name": "ablation", "base": "base.yaml", "metric": "distance_tvd", "max_concurrent_trials": 2,
            "variants": {"objective": {"psm": {"objective.name": "psm"}},
                         "seed": {"s0": {"seed": 0}, "s1": {"seed": 1}}}}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(spec))
    submit(cluster, ["--sweep", str(path)])
    study = tmp_path / "runs" / "ablation"
    trials = json.loads((study / "summary.json").read_text())["trials"]
    cells = sorted((t["params"]["variant.objective"], t["params"]["variant.seed"]) for t in trials if "metrics" in t)
    assert cells == [("psm", "s0"), ("psm", "s1")]
    for t in trials:                    # every cell trained through Ray Train in its own run directory
        meta = json.loads((study / t["trial"] / "checkpoints" / "final" / "meta.json").read_text())
        assert meta["world_size"] == 1 and (study / t["trial"] / "metrics.json").is_file()
    page = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "publish_study.py"), str(study),
                           "--name", "ablation", "--output-dir", str(tmp_path / "results"), "--aggregate", "seed",
                           "--group", "objective"],
                          capture_output=True, text=True, cwd=ROOT)
    assert page.returncode == 0, page.stderr[-3000:]
    table = (tmp_path / "results" / "ablation.md").read_text()
    assert "Mean ± std over the seed values ['s0', 's1']" in table
    assert f"Command: `python experiments/run.py --sweep {path}`" in table       # as the job recorded it
    assert re.search(r"^\| psm \| \S+ ± \S+ \|", table, re.M), table
    records = json.loads((tmp_path / "results" / "ablation.json").read_text())
    assert {r["variant"] for r in records} == {"psm"} and all(r["n_seeds"] == 2 for r in records)
    # mean and spread (ddof 1) of what the two trials measured (a tiny model's samples may score
    # alike in both seeds: the check is of the aggregation, not of the model)
    import numpy as np
    for metric in ("distance_tvd", "hr_mae", "w2"):
        record = [r for r in records if r["metric"] == metric][0]
        per_trial = [t["metrics"][metric] for t in trials]
        assert record["mean"] == pytest.approx(np.mean(per_trial)), metric
        assert record["std"] == pytest.approx(np.std(per_trial, ddof=1), abs=1e-12), metric
    # one h(r) figure per objective, drawn from the trials' stored curves
    from PIL import Image
    figure = tmp_path / "results" / "img" / "ablation_ablation_psm_hr.png"
    assert "(img/ablation_ablation_psm_hr.png)" in table and min(Image.open(figure).size) > 100
    # the study's reports archived (what git keeps of a study run in another session), the runs
    # deleted: the page published from the archive holds the same records
    from moldiff.reporting.archive import archive_study
    kept = archive_study(study, tmp_path / "archive")
    assert not list(kept.rglob("*.pt")) and not list(kept.rglob("*.extxyz"))     # no weights, no samples
    import shutil
    shutil.rmtree(study)
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "publish_study.py"), str(kept),
                            "--name", "ablation", "--output-dir", str(tmp_path / "again"), "--aggregate", "seed",
                            "--group", "objective"], capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((tmp_path / "again" / "ablation.json").read_text()) == records
