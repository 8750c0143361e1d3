"""Ray Train: two DDP workers, checkpoints every epoch, automatic resume from the run's storage."""
import json

import torch

from moldiff.data.sources import prepare_data
from moldiff.train.checkpoint import load_meta, load_model
from moldiff.train.trainer import storage_path, train


def test_two_workers_checkpoint_and_resume(ray_session, tiny_config):
    cfg = tiny_config("ddp", **{"ray.num_workers": 2, "ray.cpus_per_worker": 0.5, "training.epochs": 2})
    data = prepare_data(cfg.data, log=lambda m: None)
    final = train(cfg, data, log=lambda m: None)
    meta = load_meta(final)
    assert meta["epoch"] == 2 and meta["world_size"] == 2 and meta["resumed_from_epoch"] == 0
    steps_per_epoch = meta["step"] // 2
    ranks = [json.loads((cfg.run_dir / "workers" / f"rank{r}.json").read_text()) for r in (0, 1)]
    # DDP: each rank trained on its own data, and both ended with bitwise the same weights
    assert ranks[0]["last_epoch_first_batch_digest"] != ranks[1]["last_epoch_first_batch_digest"]
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    checkpoints = sorted(p.name for p in (storage_path(cfg) / "train").glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2                      # one per epoch (keep_checkpoints = 2)

    first, _, _ = load_model(final)
    # same run name and storage: training continues from the stored checkpoint, not from scratch
    longer = tiny_config("ddp", **{"ray.num_workers": 2, "ray.cpus_per_worker": 0.5, "training.epochs": 3})
    final = train(longer, data, log=lambda m: None)
    meta = load_meta(final)
    assert meta["epoch"] == 3 and meta["resumed_from_epoch"] == 2 and meta["step"] == 3 * steps_per_epoch
    model, _, _ = load_model(final)
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, first.state_dict()[k])]
    assert moved, "the third epoch changed no weight"
    events = list((cfg.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "rank 0 writes TensorBoard scalars"
    assert json.loads((final / "meta.json").read_text())["metrics"]["molecules_per_s"] > 0


def test_training_survives_a_killed_worker_and_resumes_from_its_last_checkpoint(ray_session, tiny_config):
    """FailureConfig: the worker process is killed (SIGKILL) after its first checkpoint; Ray Train
    starts a new one, which continues from the last checkpoint, not from scratch."""
    import os
    import signal
    import threading
    import time

    cfg = tiny_config("killed", **{"training.epochs": 60, "training.max_failures": 1})
    data = prepare_data(cfg.data, log=lambda m: None)
    outcome = {}

    def run():
        try:
            outcome["final"] = train(cfg, data, log=lambda m: None)
        except BaseException as err:            # surfaced below, not lost in the thread
            outcome["error"] = err
    thread = threading.Thread(target=run)
    thread.start()
    record = cfg.run_dir / "workers" / "rank0.json"
    deadline = time.time() + 300
    # killed once the controller has registered a checkpoint (it says so in its snapshot in
    # storage): one written but not yet registered would not be resumed from
    snapshot = storage_path(cfg) / "train" / "checkpoint_manager_snapshot.json"

    def registered() -> bool:
        try:
            return json.loads(snapshot.read_text()).get("latest_checkpoint_result") is not None
        except (OSError, ValueError):            # not written yet, or being rewritten
            return False
    while not (record.exists() and registered()):
        assert time.time() < deadline and thread.is_alive(), outcome
        time.sleep(0.1)
    killed = json.loads(record.read_text())
    os.kill(killed["pid"], signal.SIGKILL)
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    meta = load_meta(outcome["final"])
    assert meta["epoch"] == 60 and 0 < meta["resumed_from_epoch"] < 60
    restarted = json.loads(record.read_text())
    assert restarted["pid"] != killed["pid"] and restarted["start_epoch"] == meta["resumed_from_epoch"]
