"""Run independent pieces of CPU work as Ray tasks when Ray is running, else in this process."""
from __future__ import annotations

from typing import Any, Callable, Sequence


def ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def run_tasks(fn: Callable[..., Any], calls: Sequence[tuple], num_cpus: float = 1.0) -> list:
    """``[fn(*args) for args in calls]``, one Ray task (``num_cpus`` each) per call when Ray is up."""
    if not ray_running():
        return [fn(*args) for args in calls]
    import ray
    # "DEFAULT": inside a Tune trial, tasks would otherwise be pulled into the trial's placement group
    task = ray.remote(num_cpus=num_cpus, scheduling_strategy="DEFAULT")(fn)
    return ray.get([task.remote(*args) for args in calls])
