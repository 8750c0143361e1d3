"""The Ray Train per-worker loop (runs on every worker; DDP when there are several).

Rank 0 writes checkpoints and TensorBoard scalars; every rank reports each epoch (Ray Train's
report is a barrier). Restoring is automatic: when the run's storage already holds a checkpoint,
``ray.train.get_checkpoint()`` returns it and training continues from the next epoch.

On a GPU the step never waits for the host: the cached shard, batches, noise and logged values
stay on the device (``train.logs``), gradients of hand-averaged models are summed in buckets, and
values reach the host once per epoch, in one collective across workers.
"""
from __future__ import annotations

import functools
import math
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import torch

from .. import accelerator
from ..config import validate_config
from ..data.batch import GraphBatch, collate_arrow
from ..models import build_model, state_scale
from ..objectives import build_objective
from ..objectives.registry import objective_spec
from ..plugins import install as install_plugins
from .checkpoint import load_optimizer, load_weights, save_checkpoint
from .ema import EMA
from .logs import EpochLogs, StepValues
from .optim import build_optimizer, build_scheduler


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


class ShardBatches:
    """Graph batches from this worker's Ray Data shard.

    With ``cache=True`` the shard is pulled through Ray Data once, kept as one collated batch, and
    reshuffled locally every epoch; every rank then runs exactly ``steps_per_epoch`` steps (DDP
    needs equal step counts). Otherwise batches stream from the shard every epoch.
    """

    def __init__(self, shard, batch_size: int, steps_per_epoch: int, cache: bool, seed: int, rank: int,
                 collate=collate_arrow, device: torch.device = torch.device("cpu")):
        self.shard, self.batch_size, self.steps_per_epoch = shard, batch_size, steps_per_epoch
        self.cache, self.seed, self.rank, self.collate, self.device = cache, seed, rank, collate, device
        self._all: Optional[GraphBatch] = None
        self._sizes: Optional[np.ndarray] = None       # molecule sizes of the cached shard, on the host

    def _load(self) -> GraphBatch:
        tables = list(self.shard.iter_batches(batch_size=4096, batch_format="pyarrow"))
        if not tables:
            raise RuntimeError(f"training shard of rank {self.rank} is empty: fewer molecules than workers?")
        return self.collate(pa.concat_tables(tables))

    def epoch(self, epoch: int) -> Iterator[GraphBatch]:
        if not self.cache:
            for table in self.shard.iter_batches(batch_size=self.batch_size, batch_format="pyarrow", drop_last=True,
                                                 local_shuffle_buffer_size=4 * self.batch_size,
                                                 local_shuffle_seed=epoch_seed(self.seed, self.rank, epoch)):
                yield self.collate(table).to(self.device)
            return
        if self._all is None:
            loaded = self._load()
            if isinstance(loaded, GraphBatch):
                self._sizes = loaded.n_atoms.numpy()
            self._all = loaded.to(self.device)          # the whole shard lives on the device
        n = self._all.num_graphs
        rng = np.random.default_rng(epoch_seed(self.seed, self.rank, epoch))
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(self.steps_per_epoch * self.batch_size / n))])
        for i in range(self.steps_per_epoch):
            idx = torch.as_tensor(order[i * self.batch_size:(i + 1) * self.batch_size])
            if self._sizes is not None:
                yield self._all.select(idx, host_n_atoms=self._sizes)
            else:
                yield self._all.select(idx.to(self.device))


def _prepare_states(batch, scale: float, rotate: bool, generator):
    from ..data.vectors import VectorBatch, random_rotations
    x = batch.x / scale
    return VectorBatch(random_rotations(x, generator) if rotate else x)


def _quiet_ray_train_reports() -> None:
    """Ray Train V2 logs every report (metrics and all) at INFO from an internal module logger."""
    import logging
    try:
        from ray.train.v2._internal.execution import context
        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:   # the internal module moved: keep Ray's logging as it is
        pass


def _record_worker(run_dir: Path, rank: int, world: int, start_epoch: int, device: torch.device) -> None:
    """``<run_dir>/workers/rank<r>.json``: which process, node and device each rank runs on now (for
    operators looking for a stuck or dead worker, and for checks that training ran on a GPU;
    rewritten when a restarted group resumes)."""
    import json
    import os
    import socket

    import ray

    import moldiff
    from ..atomic import write_text

    (run_dir / "workers").mkdir(parents=True, exist_ok=True)
    info = {"rank": rank, "world_size": world, "pid": os.getpid(), "host": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(), "start_epoch": start_epoch, "since": time.time(),
            "moldiff": str(Path(moldiff.__file__).parent),          # which copy of the package this rank runs
            **accelerator.device_record(device),
            "backend": torch.distributed.get_backend() if world > 1 and torch.distributed.is_initialized() else None}
    write_text(run_dir / "workers" / f"rank{rank}.json", json.dumps(info) + "\n")


def tensor_digest(tensors) -> str:
    """A hash of tensors' exact bytes (in order): equal digests are bitwise-equal tensors."""
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _record_trained(run_dir: Path, rank: int, model: torch.nn.Module, batch) -> None:
    """Adds to ``workers/rank<r>.json`` what this rank ended with: a digest of its weights (every
    rank's must be bitwise the same: they step on the mean gradient) and of the last epoch's first
    batch (which must differ between ranks: each trains on its own shard)."""
    import json

    from ..atomic import write_text

    record = run_dir / "workers" / f"rank{rank}.json"
    info = json.loads(record.read_text())
    info["weights_digest"] = tensor_digest(model.state_dict().values())
    info["last_epoch_first_batch_digest"] = None if batch is None else tensor_digest(
        [batch.pos if hasattr(batch, "pos") else batch.x])
    write_text(record, json.dumps(info) + "\n")


def train_loop_per_worker(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch

    _quiet_ray_train_reports()
    install_plugins(loop_config.get("plugins"))        # objectives registered outside the package
    cfg = validate_config(loop_config["config"], source="train_loop_config")
    tc = cfg.training
    torch.set_num_threads(cfg.ray.torch_threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    if cfg.ray.use_gpu and device.type != "cuda":
        accelerator.local_device(True)                  # raises, naming what this worker sees
    accelerator.set_matmul_precision(tc.precision)
    torch.manual_seed(cfg.seed)                         # identical initial weights on every rank

    vector_system = cfg.data.is_vector_system
    scale = state_scale(cfg, loop_config["sigma_data"])
    model = build_model(cfg, loop_config["sigma_data"], loop_config.get("state_dim", 2))
    extras = loop_config.get("extras") or {}
    spec = objective_spec(cfg.objective.name)
    spec.prepare_model(model, extras)            # e.g. a force field's reference energies, fitted beforehand
    # losses that differentiate through autograd.grad (energy models: scores or forces) average
    # gradients by hand: DDP's hooks support one forward and one backward per step
    manual_gradients = vector_system or getattr(model, "conservative", False)
    ema = EMA(model, tc.ema_decay) if tc.ema_decay > 0 else None
    start_epoch, step, restored = 0, 0, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            import json
            weights, restored = load_weights(d), load_optimizer(d)
            meta = json.loads((Path(d) / "meta.json").read_text())
        model.load_state_dict(weights["model"])
        if ema is not None and weights.get("ema") is not None:
            ema.load_state_dict(weights["ema"])
        start_epoch, step = int(meta["epoch"]), int(meta["step"])
    # to device; DDP when world > 1, except for energy models (gradients averaged by hand, see above)
    # a two-branch model leaves one branch unused in batches that lie all on one side of t_n
    ddp_kwargs = getattr(model, "ddp_kwargs", None)
    model = ray.train.torch.prepare_model(model, parallel_strategy=None if manual_gradients else "ddp",
                                          parallel_strategy_kwargs=None if manual_gradients else ddp_kwargs)
    core = model.module if hasattr(model, "module") else model
    if ema is not None:
        ema.shadow = {k: v.to(device) for k, v in ema.shadow.items()}
    total_steps = (tc.schedule_epochs or tc.epochs) * loop_config["steps_per_epoch"]
    optimizer = build_optimizer(model.parameters(), tc)
    scheduler = build_scheduler(optimizer, tc, total_steps)
    if restored is not None:
        optimizer.load_state_dict(restored["optimizer"])
        scheduler.load_state_dict(restored["scheduler"])
    objective = build_objective(cfg, loop_config.get("dataset_kT"), extras)

    from ..data.vectors import collate_vectors
    if vector_system:
        collate = collate_vectors
    elif spec.properties(extras):              # labels the objective regresses travel with the batch
        collate = functools.partial(collate_arrow, properties=spec.properties(extras))
    else:
        collate = collate_arrow
    batches = ShardBatches(ray.train.get_dataset_shard("train"), tc.batch_size, loop_config["steps_per_epoch"],
                           tc.cache_shard, cfg.seed, rank, collate, device)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(Path(loop_config["run_dir"]) / "tensorboard"), purge_step=step or None)
        if start_epoch:
            print(f"[train] resuming from epoch {start_epoch} (step {step})", flush=True)
    _record_worker(Path(loop_config["run_dir"]), rank, world, start_epoch, device)
    from ..tracking import training_tracker
    tracker = training_tracker(cfg)             # MLflow and/or W&B on rank 0 (no-ops elsewhere), None when off
    print_every = max(1, tc.epochs // 20)
    generator = torch.Generator(device=device)
    started = time.time()          # when this worker began training (not when its run was submitted)

    step_losses = StepValues(every=10)
    since_report = 0.0                           # seconds of training since the last report
    for epoch in range(start_epoch, tc.epochs):
        generator.manual_seed(epoch_seed(cfg.seed, rank, epoch))
        t0, logged, n_mols, first_batch = time.time(), EpochLogs(device), 0, None
        model.train()
        for graphs in batches.epoch(epoch):
            first_batch = graphs if first_batch is None else first_batch
            if vector_system:
                graphs = _prepare_states(graphs, scale, tc.augment_rotations, generator)
            with accelerator.autocast(device, tc.precision):
                loss, logs = objective(model, graphs, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if manual_gradients and world > 1:
                accelerator.average_gradients(model, world, device)
            if tc.grad_clip is not None:
                logs["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(core, step)
            step += 1
            n_mols += graphs.num_graphs
            logged.add(logs)
            if writer is not None:
                step_losses.add(step, logs["loss"])
        logged.add({"epoch_seconds": time.time() - t0})
        metrics = logged.means(world)            # the epoch's one wait for the device
        elapsed = time.time() - t0
        # the mean over workers, so every rank takes the same report decision below
        since_report += metrics["epoch_seconds"]
        if writer is not None:
            for s, value in step_losses.drain():
                writer.add_scalar("train/loss_step", value, s)
        metrics.update(epoch=epoch + 1, step=step, lr=scheduler.get_last_lr()[0],
                       molecules_per_s=n_mols * world / max(elapsed, 1e-9))
        is_last = epoch + 1 == tc.epochs
        wants_checkpoint = (epoch + 1) % tc.checkpoint_every == 0 or is_last
        if rank == 0:
            for k, v in metrics.items():
                writer.add_scalar(f"train/{k}", v, step)
            if tracker is not None:
                tracker.log_metrics({f"train.{k}": float(v) for k, v in metrics.items()}, step=step)
            if (epoch + 1) % print_every == 0 or is_last or epoch == start_epoch:
                print(f"[train] epoch {epoch + 1}/{tc.epochs} step {step} loss {metrics.get('loss', float('nan')):.4f} "
                      f"lr {metrics['lr']:.2e} {metrics['molecules_per_s']:.0f} mol/s", flush=True)
        if not (wants_checkpoint or ((epoch + 1) % tc.report_every == 0 and since_report >= tc.report_interval_s)):
            continue
        since_report = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                writer.flush()
                if wants_checkpoint:
                    save_checkpoint(
                        tmp, model_state=core.state_dict(), ema_state=None if ema is None else ema.state_dict(),
                        optimizer_state=optimizer.state_dict(), scheduler_state=scheduler.state_dict(),
                        meta={"epoch": epoch + 1, "step": step, "sigma_data": loop_config["sigma_data"],
                              "state_dim": loop_config.get("state_dim"), "dataset": loop_config.get("dataset"),
                              **extras,      # what the objective was trained with (property normaliser, ...)
                              "resumed_from_epoch": start_epoch, "world_size": world,
                              "trained_between": [started, time.time()],
                              "config": loop_config["config"], "metrics": metrics},
                    )
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
    if start_epoch < tc.epochs:
        _record_trained(Path(loop_config["run_dir"]), rank, core, first_batch)
    if writer is not None:
        writer.close()
    if tracker is not None:
        tracker.end_run()
