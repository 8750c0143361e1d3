"""Experiment trackers beside TensorBoard (which every run writes to ``<run_dir>/tensorboard``):
MLflow, switched on by ``tracking.mlflow: true``.

Training logs the config and every epoch's metrics through Ray Train's own integration
(``ray.air.integrations.mlflow.setup_mlflow``: a real MLflow run on rank 0, a no-op on the other
ranks); evaluation adds the report's headline values and noise floors to the same MLflow run
(found by its ``moldiff.run_dir`` tag), as ``eval.<key>`` and ``eval.<key>.noise_floor``. The
default store is a local SQLite file, ``<output_dir>/mlflow.db`` (no server; MLflow 3 keeps the
plain-directory store in maintenance mode): ``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``.
"""
from __future__ import annotations

import math
from pathlib import Path

from .config import flatten

RUN_DIR_TAG = "moldiff.run_dir"


def mlflow_uri(cfg) -> str:
    return cfg.tracking.mlflow_uri or f"sqlite:///{Path(cfg.output_dir).expanduser().resolve() / 'mlflow.db'}"



def training_tracker(cfg):
    """In a Train worker: the MLflow module with this run's MLflow run active (rank 0), a no-op
    elsewhere; None when tracking is off."""
    if not cfg.tracking.mlflow:
        return None
    from ray.air.integrations.mlflow import setup_mlflow

    params = {k: v for k, v in flatten(cfg.model_dump(mode="json")).items() if v is not None}
    return setup_mlflow(params, tracking_uri=mlflow_uri(cfg), experiment_name=cfg.tracking.experiment,
                        run_name=cfg.name, create_experiment_if_not_exists=True,
                        tags={RUN_DIR_TAG: str(cfg.run_dir), "moldiff.variant": cfg.variant}, rank_zero_only=True)


def log_report(cfg, report) -> str | None:
    """The evaluation's entries into the run's MLflow run (a new one if training was not tracked
    here, e.g. a run that samples another run's model); returns the MLflow run id."""
    if not cfg.tracking.mlflow:
        return None
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri(cfg))
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.tracking.experiment)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{cfg.run_dir}'",
                               order_by=["attributes.start_time DESC"], max_results=1)
    run_id = found[0].info.run_id if found else client.create_run(
        experiment_id, run_name=cfg.name, tags={RUN_DIR_TAG: str(cfg.run_dir), "moldiff.variant": cfg.variant}).info.run_id
    values = {}
    for e in report.entries:
        values[f"eval.{e.key}"] = e.mean
        if e.floor is not None:
            values[f"eval.{e.key}.noise_floor"] = e.floor_mean
    metrics = [mlflow.entities.Metric(k, float(v), 0, 0) for k, v in values.items()
               if v is not None and math.isfinite(float(v))]
    for i in range(0, len(metrics), 500):            # MLflow's batch limit
        client.log_batch(run_id, metrics=metrics[i:i + 500])
    client.set_terminated(run_id)
    return run_id
