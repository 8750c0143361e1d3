"""tracking.mlflow / tracking.wandb: a run's config, training curve and evaluation land in MLflow
(a local SQLite store, no server) and in W&B (offline run files, no account), through Ray Train's
setup_mlflow / setup_wandb on rank 0 and the driver after evaluation."""
import json
import struct

import numpy as np
from mlflow.tracking import MlflowClient

from moldiff.experiment import run_experiment
from moldiff.tracking import RUN_DIR_TAG, mlflow_uri, wandb_dir, wandb_run_id


def wandb_records(path):
    """The records of an offline W&B run file (``run-<id>.wandb``): a 7-byte header, then LevelDB
    log chunks in 32 KiB blocks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) holding
    the run's protobuf records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, block, records, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:                  # a block's tail too short for a chunk header
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            records.append(record)
            buf = b""
    return records


def wandb_logged(run_file):
    """(config, history rows, final summary) of an offline W&B run file."""
    def items(update):
        return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in update}
    config, history, summary = {}, [], {}
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":                       # the config given to wandb.init
            config.update(items(r.run.config.update))
        elif kind == "config":
            config.update(items(r.config.update))
        elif kind == "history":
            history.append(items(r.history.item))
        elif kind == "summary":
            summary.update(items(r.summary.update))
    return config, history, summary


def test_a_tracked_run_logs_its_config_training_curve_and_evaluation(ray_session, tiny_config):
    cfg = tiny_config("tracked", **{"tracking.mlflow": "true", "tracking.wandb": "true", "training.epochs": 3,
                                    "ray.num_workers": 2})
    log = []
    report = run_experiment(cfg, command="pytest", log=log.append)
    assert any("logged to MLflow" in m for m in log) and any("logged to W&B offline" in m for m in log)
    assert mlflow_uri(cfg).startswith("sqlite:///") and (cfg.run_dir.parent / "mlflow.db").is_file()
    client = MlflowClient(mlflow_uri(cfg))
    experiment = client.get_experiment_by_name("moldiff")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1                                  # rank 0 only, and evaluation joined it
    run = runs[0]
    assert run.data.tags[RUN_DIR_TAG] == str(cfg.run_dir) and run.info.run_name == "tracked"
    assert run.data.params["training.epochs"] == "3" and run.data.params["objective.name"] == "dsm"
    curve = client.get_metric_history(run.info.run_id, "train.loss")
    assert len(curve) == 3 and all(np.isfinite(m.value) for m in curve)
    assert [m.step for m in curve] == sorted(m.step for m in curve) and curve[-1].step == 3 * 2   # 64 frames over 2 workers x 16: 2 steps an epoch
    tvd = report["distance_tvd"]
    assert run.data.metrics["eval.distance_tvd"] == tvd.mean
    assert run.data.metrics["eval.distance_tvd.noise_floor"] == tvd.floor_mean


    # W&B, offline: the training run (rank 0 only) and the evaluation under the run directory's one id
    runs = sorted((wandb_dir(cfg) / "wandb").glob("offline-run-*"))
    assert [r.name.rsplit("-", 1)[1] for r in runs] == [wandb_run_id(cfg)] * 2, runs
    trained, evaluated = (wandb_logged(r / f"run-{wandb_run_id(cfg)}.wandb") for r in runs)
    config, history, _ = trained
    assert config["training.epochs"] == 3 and config["objective.name"] == "dsm"
    losses = [(row["_step"], row["train.loss"]) for row in history if "train.loss" in row]
    assert [s for s, _ in losses] == [2, 4, 6] and all(np.isfinite(v) for _, v in losses)
    assert [v for _, v in losses] == [m.value for m in curve]         # the same curve MLflow has
    summary = evaluated[2]
    assert summary["eval.distance_tvd"] == tvd.mean and summary["eval.distance_tvd.noise_floor"] == tvd.floor_mean


def test_tracking_is_off_by_default(tiny_config):
    assert tiny_config().tracking.mlflow is False and tiny_config().tracking.wandb is False
    assert tiny_config().tracking.wandb_mode == "offline"
