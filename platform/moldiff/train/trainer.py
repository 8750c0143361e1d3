"""Driver side of training: Ray Data dataset, TorchTrainer, and the run's final checkpoint."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import ExperimentConfig
from ..data.sources import PreparedData
from ..data.store import DATA_FILE, read_dataset
from ..objectives import build_objective
from ..objectives.registry import objective_spec
from ..plugins import registered as registered_plugins
from .checkpoint import copy_checkpoint
from .loop import train_loop_per_worker

FINAL_CHECKPOINT = Path("checkpoints") / "final"


def coordinate_scale(train_path: Path) -> float:
    """Per-coordinate std of the centred training positions (the model's sigma_data); for
    state-vector datasets the std of the states."""
    from ..data.store import positions
    table, _ = read_dataset(train_path, validate=False)
    if "x" in table.column_names:
        return float(table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False).std())
    centred = np.concatenate([p - p.mean(0) for p in positions(table)])
    return float(centred.std())


def storage_path(cfg: ExperimentConfig) -> Path | str:
    """Where Ray Train keeps this run's checkpoints (its run is named ``train`` there):
    ``<run_dir>/ray`` by default; with ``ray.storage_path``, ``<storage_path>/<run name>``, so that
    runs sharing one storage never resume from each other's checkpoints. A URI (``s3://...``)
    stays a string; a path becomes an absolute Path."""
    from ..config import is_uri

    given = cfg.ray.storage_path
    if not given:
        return cfg.run_dir / "ray"
    if is_uri(given):
        return given.rstrip("/") + "/" + cfg.name
    return Path(given).expanduser().resolve() / cfg.name


# A split this small is read by the driver and handed to the object store as Arrow blocks: the same
# materialized dataset, without the read tasks' worker processes (seconds of start-up per run, more
# than reading the file costs). Larger splits are read by Ray Data's distributed tasks.
DRIVER_READ_BYTES = 256 * 2**20


def training_dataset(cfg: ExperimentConfig, data: PreparedData):
    """The training split as a Ray Dataset (read into the object store once with ``data.materialize``)."""
    import pyarrow.parquet as pq
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    file = data.train / DATA_FILE
    if cfg.data.materialize and file.stat().st_size <= DRIVER_READ_BYTES:
        table = pq.read_table(file)
        # several blocks, so that the split over Train workers need not cut one block per worker
        n_blocks = max(1, min(table.num_rows, 4 * cfg.ray.num_workers))
        size = -(-table.num_rows // n_blocks)
        return ray.data.from_arrow([table.slice(i, size) for i in range(0, table.num_rows, size)])
    dataset = ray.data.read_parquet(str(file))
    return dataset.materialize() if cfg.data.materialize else dataset


def train(cfg: ExperimentConfig, data: PreparedData, log: Callable[[str], None] = print,
          loop: Callable[[dict], None] = train_loop_per_worker, dataset=None) -> Path:
    """Fit with Ray Train; returns the run's final checkpoint directory (``<run_dir>/checkpoints/final``).
    ``loop``: the per-worker function (tests wrap the real one to watch what it does). ``dataset``:
    the training split already read (:func:`training_dataset`; experts share one), else read here."""
    import ray.train
    from ray.train.torch import TorchTrainer

    if dataset is None:
        dataset = training_dataset(cfg, data)
    n_train = data.train_manifest.n_molecules
    workers = cfg.ray.num_workers
    if n_train < workers:
        raise ValueError(f"{data.train}: {n_train} molecules cannot be split over ray.num_workers={workers}")
    steps_per_epoch = max(1, math.ceil(n_train / (workers * cfg.training.batch_size)))
    sigma_data = coordinate_scale(data.train)
    # what the objective needs from the training split (a property normaliser, reference energies)
    extras = objective_spec(cfg.objective.name).training_extras(cfg, data)
    build_objective(cfg, data.train_manifest.kT, extras)   # fail here, not in a worker, on a bad objective setup
    resources = {"CPU": cfg.ray.cpus_per_worker}
    if cfg.ray.use_gpu:
        resources["GPU"] = 1          # NCCL between workers: Ray Train's default backend with GPUs
    log(f"[train] {n_train} molecules, {workers} worker(s), {steps_per_epoch} steps/epoch x {cfg.training.epochs} "
        f"epochs, sigma_data {sigma_data:.3f}, storage {storage_path(cfg)}")
    trainer = TorchTrainer(
        loop,
        train_loop_config={"config": cfg.model_dump(mode="json"), "sigma_data": sigma_data,
                           "state_dim": data.train_manifest.generator.get("state_dim", 2),
                           "steps_per_epoch": steps_per_epoch, "run_dir": str(cfg.run_dir),
                           "dataset_kT": data.train_manifest.kT, "extras": extras,
                           # kept in every checkpoint: what a trained model's numbers are in (moldiff.ase)
                           "dataset": {"kT": data.train_manifest.kT, "units": dict(data.train_manifest.units)},
                           "plugins": registered_plugins()},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=cfg.ray.use_gpu,
                                               resources_per_worker=resources,
                                               placement_strategy=cfg.ray.placement_strategy),
        run_config=ray.train.RunConfig(
            name="train", storage_path=str(storage_path(cfg)),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.training.keep_checkpoints),
            # a dead worker (lost node, killed process) restarts the group from the last checkpoint
            failure_config=ray.train.FailureConfig(max_failures=cfg.training.max_failures),
        ),
        datasets={"train": dataset},
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"training under {storage_path(cfg)} finished without a checkpoint")
    final = cfg.run_dir / FINAL_CHECKPOINT
    with result.checkpoint.as_directory() as d:
        copy_checkpoint(d, final)
    log(f"[train] final checkpoint {final}")
    return final
