"""``parallel.tasks.run_tasks``: Ray tasks when Ray is up, this process otherwise, with the same
result either way (each task's seed comes from its place in the work, not from who runs it)."""
import numpy as np

from moldiff.data.lj import ChainSpec, lj_potential, run_chains
from moldiff.config import LJSource
from moldiff.parallel import tasks

# a lambda travels to Ray's workers by value (they cannot import tests/)
pid = lambda: __import__("os").getpid()  # noqa: E731


def test_run_tasks_gives_the_same_chains_in_this_process_and_through_ray(ray_session, monkeypatch):
    import os

    assert tasks.ray_running()
    potential = lj_potential(LJSource(n_particles=7))
    spec = ChainSpec(n_chains=4, burn_in=20, n_steps=40, save_every=10, step_size=1e-3, kT=1.0, init_spacing=1.1)
    through_ray = run_chains(potential, spec, seed=5, n_tasks=2, label="ray", log=lambda m: None)
    pids = tasks.run_tasks(pid, [(), ()])
    assert os.getpid() not in pids                          # the tasks ran in Ray's workers
    monkeypatch.setattr(tasks, "ray_running", lambda: False)
    in_process = run_chains(potential, spec, seed=5, n_tasks=2, label="local", log=lambda m: None)
    assert tasks.run_tasks(pid, [(), ()]) == [os.getpid()] * 2
    for a, b in zip(through_ray, in_process):
        np.testing.assert_array_equal(a, b)


def test_a_test_without_ray_session_runs_its_tasks_here():
    import os

    assert not tasks.ray_running()                          # tests/conftest.py: whatever ran before
    assert tasks.run_tasks(pid, [()]) == [os.getpid()]
