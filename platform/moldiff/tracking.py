"""Experiment trackers beside TensorBoard (which every run writes to ``<run_dir>/tensorboard``):
MLflow (``tracking.mlflow: true``) and Weights & Biases (``tracking.wandb: true``), either or both.

Training logs the config and every epoch's metrics through Ray Train's own integration
(``ray.air.integrations.mlflow.setup_mlflow``: a real MLflow run on rank 0, a no-op on the other
ranks); evaluation adds the report's headline values and noise floors to the same MLflow run
(found by its ``moldiff.run_dir`` tag), as ``eval.<key>`` and ``eval.<key>.noise_floor``. The
default store is a local SQLite file, ``<output_dir>/mlflow.db`` (no server; MLflow 3 keeps the
plain-directory store in maintenance mode): ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.

W&B goes the same way through ``ray.air.integrations.wandb.setup_wandb`` (rank 0), offline by
default (no account, no network: ``<output_dir>/wandb/offline-run-*``, uploaded later with
``wandb sync``). A run directory has one W&B run id (a hash of the directory), so the evaluation,
logged by the driver into an offline run of the same id, joins the training run when synced.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional

from .config import flatten

RUN_DIR_TAG = "moldiff.run_dir"


def mlflow_uri(cfg) -> str:
    return cfg.tracking.mlflow_uri or f"sqlite:///{Path(cfg.output_dir).expanduser().resolve() / 'mlflow.db'}"



def wandb_dir(cfg) -> Path:
    """Where W&B keeps its runs (it adds ``wandb/``): ``tracking.wandb_dir``, else the output dir."""
    return Path(cfg.tracking.wandb_dir or cfg.output_dir).expanduser().resolve()


def wandb_run_id(cfg) -> str:
    """One W&B run per run directory: training and evaluation log into the same id."""
    import hashlib
    return hashlib.sha1(str(cfg.run_dir).encode()).hexdigest()[:16]


def _wandb_init(cfg, init: Callable, **kwargs):
    """``init`` (wandb.init, or Ray's setup_wandb in a Train worker) with this run's settings."""
    import os
    if cfg.tracking.wandb_mode == "offline":
        os.environ["WANDB_MODE"] = "offline"    # Ray's setup_wandb asks for no API key then
    os.environ.setdefault("WANDB_SILENT", "true")
    directory = wandb_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    return init(project=cfg.tracking.experiment, name=cfg.name, id=wandb_run_id(cfg), resume="allow",
                mode=cfg.tracking.wandb_mode, dir=str(directory), tags=[cfg.variant] if cfg.variant else None,
                **kwargs)


class _Trackers:
    """The trackers a Train worker logs its epochs to, behind one ``log_metrics`` / ``end_run``."""

    def __init__(self, mlflow=None, wandb_run=None):
        self.mlflow, self.wandb_run = mlflow, wandb_run

    def log_metrics(self, metrics: dict, step: int) -> None:
        if self.mlflow is not None:
            self.mlflow.log_metrics(metrics, step=step)
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def end_run(self) -> None:
        if self.mlflow is not None:
            self.mlflow.end_run()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def training_tracker(cfg) -> Optional[_Trackers]:
    """In a Train worker: the trackers of this run with their runs started (rank 0; no-ops on the
    other ranks); None when tracking is off."""
    if not (cfg.tracking.mlflow or cfg.tracking.wandb):
        return None
    params = {k: v for k, v in flatten(cfg.model_dump(mode="json")).items() if v is not None}
    mlflow = wandb_run = None
    if cfg.tracking.mlflow:
        from ray.air.integrations.mlflow import setup_mlflow
        mlflow = setup_mlflow(params, tracking_uri=mlflow_uri(cfg), experiment_name=cfg.tracking.experiment,
                              run_name=cfg.name, create_experiment_if_not_exists=True,
                              tags={RUN_DIR_TAG: str(cfg.run_dir), "moldiff.variant": cfg.variant},
                              rank_zero_only=True)
    # rank 0 only, asked of Train itself: setup_wandb's own rank_zero_only looks for a Train V1
    # session and, finding none under V2, would start a W&B run on every rank
    import ray.train
    if cfg.tracking.wandb and ray.train.get_context().get_world_rank() == 0:
        from ray.air.integrations.wandb import setup_wandb
        wandb_run = _wandb_init(cfg, lambda **kw: setup_wandb(params, rank_zero_only=False, **kw),
                                job_type="train", notes=str(cfg.run_dir))
    return _Trackers(mlflow, wandb_run)


def _report_values(report) -> dict[str, float]:
    """The report's means and noise floors as ``eval.<key>`` / ``eval.<key>.noise_floor``."""
    values = {}
    for e in report.entries:
        values[f"eval.{e.key}"] = e.mean
        if e.floor is not None:
            values[f"eval.{e.key}.noise_floor"] = e.floor_mean
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def log_report(cfg, report) -> list[str]:
    """The evaluation's entries into the run's tracked runs (MLflow: the training run, found by its
    run-directory tag, or a new one if training was not tracked here, e.g. a run that samples
    another run's model; W&B: the run directory's run id). Returns what it logged to, for the log."""
    logged = []
    if cfg.tracking.mlflow:
        _log_report_mlflow(cfg, report)
        logged.append(f"MLflow ({mlflow_uri(cfg)}, experiment {cfg.tracking.experiment})")
    if cfg.tracking.wandb:
        import wandb
        run = _wandb_init(cfg, wandb.init, job_type="evaluate", notes=str(cfg.run_dir))
        run.summary.update(_report_values(report))
        run.finish()
        logged.append(f"W&B {cfg.tracking.wandb_mode} ({wandb_dir(cfg) / 'wandb'}, run {wandb_run_id(cfg)})")
    return logged


def _log_report_mlflow(cfg, report) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{cfg.run_dir}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        experiment_id, run_name=cfg.name, tags={RUN_DIR_TAG: str(cfg.run_dir), "moldiff.variant": cfg.variant}).info.run_id
    metrics = [mlflow.entities.Metric(k, v, 0, 0) for k, v in _report_values(report).items()]
    for i in range(0, len(metrics), 500):            # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i:i + 500])
    client.set_terminated(run_id)
    return run_id
