"""Shared fixtures: one Ray per pytest session, tiny configs, scratch directories."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

for key, value in {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_COLOR_PREFIX": "0",
                   "MOLDIFF_DASHBOARD": "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}.items():
    os.environ.setdefault(key, value)

import torch  # noqa: E402

torch.set_num_threads(1)


def tiny_raw_config(tmp_path: Path, name: str = "tiny") -> dict:
    """A complete LJ-13 experiment that runs in seconds (quality is not the point)."""
    return {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "data": {
            "source": "lj", "root": str(tmp_path / "data"),
            "lj": {"n_particles": 13, "reference": {"n_chains": 8, "burn_in": 200, "n_steps": 400,
                                                     "save_every": 20, "n_tasks": 1}},
            "train": {"selection": "random_subset", "n_frames": 64},
        },
        "model": {"hidden": 16, "layers": 2, "time_embedding": 8},
        "training": {"epochs": 2, "batch_size": 16, "warmup_steps": 2},
        "sampling": {"n_steps": 10, "n_samples": 20, "seeds": [0], "batch_size": 10},
        "evaluation": {"distance_bins": 20, "energy_bins": 10, "w2_samples": 20},
        "ray": {"num_workers": 1, "num_sampling_actors": 1, "worker_start_timeout_s": 300},
    }


@pytest.fixture
def tiny_config(tmp_path):
    from moldiff.config import validate_config

    def make(name: str = "tiny", **overrides):
        from moldiff.config import apply_overrides
        raw = apply_overrides(tiny_raw_config(tmp_path, name), [f"{k}={v}" for k, v in overrides.items()])
        return validate_config(raw)
    return make


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole session (starting Ray costs ~8 s)."""
    import ray
    from moldiff.config import RayConfig
    from moldiff.runtime import runtime_env

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=int(1.5e9), logging_level="WARNING",
                 runtime_env=runtime_env(RayConfig()))
        ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def _ray_tasks_only_where_asked(request, monkeypatch):
    """``parallel.tasks.run_tasks`` goes through Ray whenever Ray is up: a test that does not ask
    for ``ray_session`` runs its tasks in this process even after another test left Ray running,
    so no test's path depends on the order the suite runs in (tests/test_tasks.py checks that
    both paths give the same result)."""
    if "ray_session" not in request.fixturenames:
        monkeypatch.setattr("moldiff.parallel.tasks.ray_running", lambda: False)


# --- in CI (CI=true) a skipped test fails the run, unless it is listed here with its reason ---
ALLOWED_SKIPS: dict[str, str] = {
    # "tests/test_x.py::test_on_a_gpu": "needs a CUDA device; run by scripts/gpu_check.sh on one",
}
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not any(report.nodeid.startswith(allowed) for allowed in ALLOWED_SKIPS):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") == "true" and _skipped:
        print(f"\nCI: {len(_skipped)} test(s) skipped that must run (tests/conftest.py ALLOWED_SKIPS lists "
              "the allowed ones):\n  " + "\n  ".join(_skipped), flush=True)
        session.exitstatus = 1
