"""Connecting to Ray: an existing cluster (``ray.address`` / ``RAY_ADDRESS``, e.g. inside
``ray job submit``) or an embedded local Ray. The moldiff package is always shipped to the workers
through ``runtime_env.py_modules``, so jobs work from a bare checkout without ``pip install``."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import moldiff

from .config import RayConfig

LOCAL_DEFAULTS = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def log(message: str) -> None:
    print(f"[moldiff {time.strftime('%H:%M:%S')}] {message}", flush=True)


def package_dir() -> Path:
    return Path(moldiff.__file__).resolve().parent


def job_runtime_env() -> dict:
    """The runtime env that ``ray job submit --runtime-env`` gave this driver ({} outside a job)."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")     # set by Ray's job manager
    return (json.loads(raw).get("runtime_env") or {}) if raw else {}


def runtime_env(cfg: RayConfig) -> dict:
    env = {
        "py_modules": [str(package_dir())],
        "env_vars": {
            "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(cfg.worker_start_timeout_s),
            "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(cfg.train_poll_interval_s),
            "OMP_NUM_THREADS": str(cfg.torch_threads),
            # Train V2 copies every print of a worker into its own log records: lines appear twice
            "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        },
    }
    # Ray refuses to start a job's driver whose ray.init sets an env var or field that the job's
    # runtime env also sets: the job's settings win (a user's --runtime-env is deliberate).
    job = job_runtime_env()
    env["env_vars"] = {k: v for k, v in env["env_vars"].items() if k not in (job.get("env_vars") or {})}
    if "py_modules" in job:                                  # then they must include platform/moldiff
        del env["py_modules"]
    return env


def connect(cfg: RayConfig, quiet: bool = True):
    """``ray.init`` against the configured cluster, or an embedded local one."""
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(runtime_env=runtime_env(cfg), logging_level="WARNING" if quiet else "INFO",
                  log_to_driver=True)
    if address:
        log(f"connecting to Ray at {address}")
        ray.init(address=address, **kwargs)
    else:
        for key, value in LOCAL_DEFAULTS.items():
            os.environ.setdefault(key, value)
        log("starting an embedded local Ray (set ray.address or RAY_ADDRESS to use a cluster)")
        # the dashboard answers on this machine only (reach a remote one through an SSH tunnel)
        ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory,
                 include_dashboard=os.environ.get("MOLDIFF_DASHBOARD", "1") != "0", dashboard_host="127.0.0.1",
                 **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray
