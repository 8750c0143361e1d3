"""End to end: ``ray job submit --working-dir . -- python experiments/run.py ...`` against a local
two-node cluster (a head and a worker raylet) that the test starts and stops. The two Train
workers are placed on different nodes (STRICT_SPREAD), and the job must not depend on moldiff
being installed: the driver imports it from the uploaded working dir, the workers from py_modules.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moldiff.local_cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    bin_dir = str(Path(sys.executable).parent)
    # the job's `python` is resolved on the cluster's PATH: the environment the cluster started in
    env = {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    with LocalCluster(n_workers=1, cpus_per_node=2, env=env) as c:
        yield c


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
    cmd = [str(Path(sys.executable).with_name("ray")), "job", "submit", "--address", cluster.dashboard_url,
           "--working-dir", str(ROOT), "--", "python", "experiments/run.py", "experiments/configs/dsm_lj13.yaml",
           *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT, env=cluster.env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert re.search(r"Job '.*' succeeded", out), out[-3000:]
    # the driver imported moldiff from the uploaded working dir, not from this checkout or site-packages
    origin = re.search(r"moldiff \S+ from (\S+)", out).group(1)
    assert "runtime_resources" in origin and not origin.startswith(str(ROOT)), origin
    run = tmp_path / "runs" / "job"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_samples"] > 0 and "distance_tvd" in metrics["noise_floor"]
    meta = json.loads((run / "checkpoints" / "final" / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert (run / "plots" / "hr.png").is_file() and (run / "samples" / "seed_0.extxyz").is_file()
