"""tracking.mlflow: a run's config, training curve and evaluation land in MLflow (a local SQLite
store, no server), through Ray Train's setup_mlflow on rank 0 and the driver after evaluation."""
import numpy as np
from mlflow.tracking import MlflowClient

from moldiff.experiment import run_experiment
from moldiff.tracking import RUN_DIR_TAG, mlflow_uri


def test_a_tracked_run_logs_its_config_training_curve_and_evaluation(ray_session, tiny_config):
    cfg = tiny_config("tracked", **{"tracking.mlflow": "true", "training.epochs": 3, "ray.num_workers": 2})
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
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


def test_tracking_is_off_by_default(tiny_config):
    assert tiny_config().tracking.mlflow is False
