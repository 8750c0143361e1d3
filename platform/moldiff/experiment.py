"""One experiment end to end: data -> train -> sample -> evaluate, all in one run directory.

    <run_dir>/config.yaml            the resolved configuration
    <run_dir>/command.txt            how the run was started (appended per invocation)
    <run_dir>/ray/train/             Ray Train storage: checkpoints (resume from here)
    <run_dir>/checkpoints/final/     the final checkpoint that sampling uses
    <run_dir>/tensorboard/           training scalars
    <run_dir>/samples/ or relaxed/   what the workflow's sample stage made
    <run_dir>/metrics.json           the workflow's report (moldiff.metrics.report): per-seed values, noise floor,
                                     training-set value, units
    <run_dir>/results.md             the same as a table
    <run_dir>/plots/                 the workflow's plots
    <run_dir>/timings.json           seconds per stage and invocation

The runner names no objective, data source or backbone: the workflow (``moldiff.workflows``) that
the config resolves to does the sample and evaluate stages.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

from .atomic import write_text as write_text_atomic
from .config import STAGES, ExperimentConfig, dump_config
from .data.sources import prepare_data
from .metrics.report import Report
from .workflows import trained_checkpoint, workflow_for


def prepare_run_dir(cfg: ExperimentConfig, command: str) -> Path:
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_config(cfg))
    with open(run_dir / "command.txt", "a") as fh:
        fh.write(command + "\n")
    return run_dir


def run_experiment(cfg: ExperimentConfig, stages: Iterable[str] = STAGES, command: str = "",
                   log: Callable[[str], None] = print) -> Report | None:
    from .runtime import connect

    stages = [s for s in STAGES if s in set(stages)]
    if cfg.experts:
        from .train.experts import expert_configs
        expert_configs(cfg)                      # a bad member fails here, before any work
    # the models this run will use, before Ray starts or anything is written: a changed architecture
    # under this name, another run's model of the wrong kind
    from .train.run_checks import check_run_name
    check_run_name(cfg, stages)
    final = trained_checkpoint(cfg, cfg.run_dir)
    workflow_for(cfg).check_models(cfg)
    connect(cfg.ray)
    from .accelerator import gpus_needed, require_gpus
    # ray.use_gpu on a cluster without (enough) GPUs fails here, before any stage or file
    require_gpus(cfg.ray, gpus_needed(cfg.ray, trains="train" in stages and not cfg.sampling.checkpoint), log)
    run_dir = prepare_run_dir(cfg, command or " ".join(sys.argv))
    log(f"run directory {run_dir}; stages {', '.join(stages)}")
    clock = StageClock(run_dir)
    with clock("data"):
        data = prepare_data(cfg.data, log)
    if cfg.sampling.checkpoint:                 # a trained model from elsewhere: nothing to train here
        if "train" in stages:
            log(f"[train] skipped: sampling from {final} (sampling.checkpoint)")
        stages = [s for s in stages if s != "train"]
    if "train" in stages:
        from .train.experts import train_experts
        from .train.trainer import train
        with clock("train"):
            final = train_experts(cfg, data, log) if cfg.experts else train(cfg, data, log)
    workflow = workflow_for(cfg)
    if "sample" in stages:
        if not (final / "meta.json").is_file():
            raise FileNotFoundError(f"{final}: no final checkpoint; run the 'train' stage first")
        with clock("sample"):
            workflow.sample(cfg, data, final, run_dir, log)
    report = None
    if "evaluate" in stages:
        with clock("evaluate"):
            report = workflow.evaluate(cfg, data, run_dir, log)
        from .dashboard import log_evaluation
        n_images = log_evaluation(run_dir, report)
        log(f"[evaluate] metrics and {n_images} plot(s) on TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}")
        from .tracking import log_report
        for tracker in log_report(cfg, report):
            log(f"[evaluate] logged to {tracker}")
    return report


class StageClock:
    """Wall-clock seconds of each stage, appended to ``<run_dir>/timings.json`` as the stages end
    (one record per invocation and stage, with the resources it had), so results pages can state
    what every run cost."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "timings.json"

    @contextmanager
    def __call__(self, stage: str):
        import ray

        start = time.time()
        yield
        cpus = ray.cluster_resources().get("CPU") if ray.is_initialized() else None
        records = json.loads(self.path.read_text()) if self.path.is_file() else []
        records.append({"stage": stage, "seconds": round(time.time() - start, 1),
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "cluster_cpus": cpus})
        write_text_atomic(self.path, json.dumps(records, indent=2) + "\n")


def stage_seconds(run_dir: Path) -> dict[str, float]:
    """Total wall-clock seconds per stage over every invocation recorded in ``timings.json``."""
    path = Path(run_dir) / "timings.json"
    totals: dict[str, float] = {}
    for rec in json.loads(path.read_text()) if path.is_file() else []:
        totals[rec["stage"]] = totals.get(rec["stage"], 0.0) + rec["seconds"]
    return totals
