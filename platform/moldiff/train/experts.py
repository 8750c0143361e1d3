"""A mixture of time-interval experts, trained in parallel: every expert is its own Ray Train run
(its own config, storage and checkpoints under ``<run_dir>/experts/``), launched concurrently from
Ray tasks, and the mixture checkpoint is assembled from their final checkpoints.

Expert i trains on [b_{i-1}, b_i) only, with the run's config plus ``experts.members[i]``; the
experts never see each other, so training them in parallel is the same as training them in turn.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from ..config import ConfigError, ExperimentConfig, apply_overrides, flatten, validate_config
from ..data.sources import PreparedData
from ..plugins import registered as registered_plugins
from .checkpoint import CheckpointError, load_meta, save_mixture
from .trainer import FINAL_CHECKPOINT, train, training_dataset


def expert_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One validated config per expert (low t first); errors name the member."""
    ex = cfg.experts
    base = cfg.model_dump(mode="json")
    base.pop("experts")
    edges = [0.0, *ex.boundaries, 1.0]
    out = []
    for i, member in enumerate(ex.members):
        overrides = [f"{k}={_yaml_value(v)}" for k, v in flatten(member).items()]
        try:
            raw = apply_overrides(base, overrides)
        except ConfigError as err:
            raise ConfigError(f"experts.members[{i}]: {err}") from None
        raw["name"] = f"expert{i}"
        raw["output_dir"] = str(cfg.run_dir / "experts")
        raw["training"]["time_interval"] = [edges[i], edges[i + 1]]
        raw["simulation"]["enabled"] = False
        # each expert's checkpoints under the run's own storage (the default: <expert run_dir>/ray)
        raw["ray"]["storage_path"] = _join(cfg.ray.storage_path, cfg.name, "experts") if cfg.ray.storage_path else None
        out.append(validate_config(raw, source=f"{cfg.name}: experts.members[{i}] (interval [{edges[i]:g}, {edges[i + 1]:g}))"))
    return out


def describe_expert(c: ExperimentConfig) -> str:
    """What an expert is, for the log: its objective variant and network."""
    m = c.model
    net = f"{m.backbone} {m.hidden_layers}" if c.data.is_vector_system else f"{m.backbone} {m.hidden}x{m.layers}"
    energy = c.model.conservative if c.data.is_vector_system else c.model.energy_head
    extra = f", alpha {c.objective.fokker_planck.alpha:g}" if c.objective.name == "fokker_planck" else ""
    return f"{c.objective.variant}{extra}, {net}{' (conservative)' if energy else ''}"


def _join(base: str, *parts: str) -> str:
    from ..config import is_uri
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base).expanduser().resolve().joinpath(*parts))


def _yaml_value(value) -> str:
    import json
    return json.dumps(value)           # JSON is YAML: lists, numbers, strings and null round-trip


def _finished(cfg: ExperimentConfig) -> bool:
    final = cfg.run_dir / FINAL_CHECKPOINT
    try:
        return int(load_meta(final).get("epoch", -1)) == cfg.training.epochs
    except CheckpointError:
        return False


def _train_expert(cfg_json: dict, data: PreparedData, plugins: dict | None = None, dataset=None) -> str:
    from ..plugins import install
    install(plugins)
    cfg = validate_config(cfg_json, source="expert config")
    return str(train(cfg, data, lambda m: print(m, flush=True), dataset=dataset))


def train_experts(cfg: ExperimentConfig, data: PreparedData, log: Callable[[str], None] = print) -> Path:
    import ray

    configs = expert_configs(cfg)
    per_run = max(c.ray.num_workers * c.ray.cpus_per_worker for c in configs)
    limit = cfg.experts.max_concurrent or max(1, math.floor(ray.cluster_resources().get("CPU", 1) / per_run))
    todo = [i for i, c in enumerate(configs) if not _finished(c)]
    for i in sorted(set(range(len(configs))) - set(todo)):
        log(f"[experts] expert {i} already trained ({configs[i].run_dir / FINAL_CHECKPOINT})")
    log(f"[experts] training {len(todo)} of {len(configs)} experts, {min(limit, len(todo) or 1)} at a time, "
        f"each its own Ray Train run")
    # the task only drives its trainer; the trainer's workers hold the CPUs (Ray lends a task's CPU
    # back while it blocks, but a driver that holds none never stands in a worker's way)
    task = ray.remote(num_cpus=0, scheduling_strategy="DEFAULT")(_train_expert)
    # every expert trains on the same split: read it into the object store once, here, while the
    # CPUs are free (an expert that read it itself would wait for a CPU its running siblings hold)
    shared = training_dataset(configs[0], data) if todo and configs[0].data.materialize else None
    pending: dict = {}
    t0 = time.time()
    while todo or pending:
        while todo and len(pending) < limit:
            i = todo.pop(0)
            c = configs[i]
            lo, hi = c.training.time_interval
            log(f"[experts] expert {i} on t in [{lo:g}, {hi:g}): {describe_expert(c)}, {c.training.epochs} epochs "
                f"-> {c.run_dir}")
            pending[task.remote(c.model_dump(mode="json"), data, registered_plugins(), shared)] = i
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            i = pending.pop(ref)
            ray.get(ref)           # re-raises the expert's error, naming its run directory in the trace
            log(f"[experts] expert {i} finished ({time.time() - t0:.0f}s)")
    final = cfg.run_dir / FINAL_CHECKPOINT
    save_mixture(final, cfg.experts.boundaries, [c.run_dir / FINAL_CHECKPOINT for c in configs],
                 cfg.model_dump(mode="json"))
    log(f"[experts] mixture checkpoint {final}")
    return final
