"""Ray Train: two DDP workers, checkpoints every epoch, automatic resume from the run's storage."""
import json

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
    checkpoints = sorted(p.name for p in (storage_path(cfg) / "train").glob("checkpoint_*") if p.is_dir())
    assert len(checkpoints) == 2                      # one per epoch (keep_checkpoints = 2)

    # same run name and storage: training continues from the stored checkpoint, not from scratch
    longer = tiny_config("ddp", **{"ray.num_workers": 2, "ray.cpus_per_worker": 0.5, "training.epochs": 3})
    final = train(longer, data, log=lambda m: None)
    meta = load_meta(final)
    assert meta["epoch"] == 3 and meta["resumed_from_epoch"] == 2 and meta["step"] == 3 * steps_per_epoch
    model, _, _ = load_model(final)
    assert sum(p.numel() for p in model.parameters()) > 0
    events = list((cfg.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "rank 0 writes TensorBoard scalars"
    assert json.loads((final / "meta.json").read_text())["metrics"]["molecules_per_s"] > 0
