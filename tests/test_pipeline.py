"""The whole experiment in-process on the session's Ray: one run directory with everything in it."""
import json

import numpy as np
from ase.io import read as ase_read
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from moldiff.data.store import read_dataset
from moldiff.experiment import run_experiment
from moldiff.metrics.report import load_report


def test_run_directory_is_complete(ray_session, tiny_config):
    cfg = tiny_config("pipe", **{"sampling.seeds": "[0, 1]"})
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
    run = cfg.run_dir
    for rel in ("config.yaml", "command.txt", "checkpoints/final/model.pt", "metrics.json", "results.md",
                "plots/hr.png", "plots/energy.png", "samples/seed_0/data.parquet", "samples/seed_1.extxyz"):
        assert (run / rel).exists(), rel
    raw = json.loads((run / "metrics.json").read_text())
    assert raw["schema"] == "moldiff.report/2" and raw["workflow"] == "molecules"
    saved = load_report(run)
    assert saved.seeds == [0, 1] and saved.n_samples <= 20 and saved.seed_kind == "sampling"
    for name in ("distance_tvd", "hr_mae", "energy_tvd", "w2"):
        entry = saved[name]
        assert np.isfinite(entry.mean) and len(entry.per_seed) == 2 and len(entry.floor) == 2
        assert entry.train_set is not None and np.isfinite(entry.train_set)     # the training set's own score
    assert report["distance_tvd"].mean == saved["distance_tvd"].mean
    # the h(r) curves are stored as data on the reference's grid (pages redraw them from here)
    curves = json.loads((run / "plots" / "hr.json").read_text())
    assert set(curves["curves"]) == {"reference", "training set", "samples"}
    assert all(len(c) == len(curves["r"]) == cfg.evaluation.distance_bins for c in curves["curves"].values())
    assert curves["sizes"]["samples"] == 2 * saved.n_samples
    samples, manifest = read_dataset(run / "samples" / "seed_0")
    frames = ase_read(run / "samples" / "seed_0.extxyz", index=":")
    assert len(frames) == samples.num_rows and manifest.units == {"length": "reduced (r_m = 1)",
                                                                   "energy": "reduced (pair well depth 1)",
                                                                   "forces": "reduced"}
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    assert {"train/loss", "train/lr", "train/molecules_per_s"} <= set(acc.Tags()["scalars"])
    # the evaluation beside them: sample-quality metrics with their floors, and the plots as images
    assert {"eval/distance_tvd", "eval_noise_floor/distance_tvd", "eval/w2"} <= set(acc.Tags()["scalars"])
    assert acc.Scalars("eval/distance_tvd")[-1].value == np.float32(saved["distance_tvd"].mean)
    assert {"plots/hr", "plots/energy"} <= set(acc.Tags()["images"])

    # evaluation alone, again, from the run directory's own config and samples
    again = run_experiment(cfg, stages=["evaluate"], command="pytest", log=lambda m: None)
    assert again["distance_tvd"].per_seed == saved["distance_tvd"].per_seed
