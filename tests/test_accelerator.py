"""Device discipline: collectives on the worker's device, bucketed gradient averaging that makes the
ranks agree, GPU requests of every model-running actor and Ray Data UDF, and ``ray.use_gpu`` on a
cluster without GPUs failing before any stage."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moldiff import accelerator
from moldiff.config import ConfigError, RayConfig, apply_overrides, validate_config

PACKAGE = Path(accelerator.__file__).resolve().parent


class Recorder:
    """Stands in for ``torch.distributed.all_reduce`` in one process: records each call and sums
    ``world`` identical copies (what a real all-reduce over ``world`` equal ranks returns)."""

    def __init__(self, world: int = 2):
        self.world, self.calls = world, []

    def __call__(self, tensor, *args, **kwargs):
        self.calls.append((tensor.device, tensor.dtype, tensor.numel()))
        if tensor.device.type != "meta":
            tensor.mul_(self.world)


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(torch.distributed, "all_reduce", rec)
    return rec


def test_all_reduce_runs_on_the_given_device_not_the_tensors(recorder):
    out = accelerator.all_reduce(torch.ones(3), torch.device("meta"))
    assert out.device.type == "meta" and recorder.calls == [(torch.device("meta"), torch.float32, 3)]


def test_gradients_are_summed_in_buckets_of_one_dtype_and_averaged(recorder):
    tensors = [torch.full((10,), 1.0), torch.full((5,), 2.0), torch.full((4,), 3.0, dtype=torch.float64),
               torch.full((300,), 4.0)]
    accelerator.all_reduce_buckets(tensors, torch.device("cpu"), bucket_bytes=100)
    # float32 [10, 5] fit in 100 bytes together; the float64 one starts a bucket, the 1200-byte one too
    assert [(dtype, n) for _, dtype, n in recorder.calls] == [(torch.float32, 15), (torch.float64, 4),
                                                              (torch.float32, 300)]
    assert [float(t[0]) for t in tensors] == [2.0, 4.0, 6.0, 8.0]          # summed in place over 2 ranks
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 1))
    model(torch.randn(5, 4)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    recorder.calls.clear()
    accelerator.average_gradients(model, 2, torch.device("cpu"))
    assert len(recorder.calls) == 1                                   # one collective, not one per parameter
    assert all(torch.equal(p.grad, b) for p, b in zip(model.parameters(), before))   # (2 x g) / 2


def test_no_module_calls_a_collective_except_through_the_helper():
    """Every all-reduce goes through ``accelerator.all_reduce`` (which puts it on the worker's device)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "accelerator.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("all_reduce", "all_gather", "reduce_scatter",
                                                                  "broadcast", "reduce"):
                value = node.value
                name = value.id if isinstance(value, ast.Name) else getattr(value, "attr", "")
                if name in ("dist", "distributed"):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders, offenders


def test_local_device_refuses_a_gpu_it_cannot_see(monkeypatch):
    assert accelerator.local_device(False) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="ray.use_gpu"):
        accelerator.local_device(True)


# ------------------------------------------------------------- a two-worker run, watched from inside


def spy_loop(loop_config: dict) -> None:
    """The real per-worker loop with ``all_reduce`` and the gradient averaging watched: each rank
    writes the device of every collective, its own device, and checksums of its parameters and
    gradients before and after averaging."""
    import torch.distributed as dist

    import ray.train
    import ray.train.torch
    from moldiff import accelerator as acc
    from moldiff.train import loop

    calls, sums = [], []
    real_all_reduce, real_average = dist.all_reduce, acc.average_gradients

    def all_reduce(tensor, *args, **kwargs):
        calls.append(str(tensor.device))
        return real_all_reduce(tensor, *args, **kwargs)

    def average(model, world, device):
        def checksum(ts):
            return float(torch.cat([t.detach().reshape(-1) for t in ts]).double().abs().sum())
        params, grads = list(model.parameters()), [p.grad for p in model.parameters() if p.grad is not None]
        entry = {"params": checksum(params), "grads_before": checksum(grads)}
        real_average(model, world, device)
        entry["grads_after"] = checksum(grads)
        sums.append(entry)

    dist.all_reduce, acc.average_gradients = all_reduce, average
    try:
        loop.train_loop_per_worker(loop_config)
    finally:
        dist.all_reduce, acc.average_gradients = real_all_reduce, real_average
    rank = ray.train.get_context().get_world_rank()
    record = {"device": str(ray.train.torch.get_device()), "calls": calls, "steps": sums}
    (Path(loop_config["run_dir"]) / f"spy_rank{rank}.json").write_text(json.dumps(record))


def test_two_workers_run_every_collective_on_their_device_and_end_with_the_same_weights(ray_session, tmp_path):
    import ray

    from moldiff.data.sources import prepare_data
    from moldiff.train.checkpoint import load_meta
    from moldiff.train.trainer import train
    from test_fokker_planck_pipeline import tiny_mb

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])    # the workers cannot import tests/
    cfg = tiny_mb(tmp_path, "spy", **{"ray.num_workers": 2, "ray.cpus_per_worker": 0.5,
                                      "objective.fokker_planck.alpha": 5e-4, "training.epochs": 2})
    data = prepare_data(cfg.data, log=lambda m: None)
    final = train(cfg, data, log=lambda m: None, loop=spy_loop)
    meta = load_meta(final)
    steps = meta["step"]
    ranks = [json.loads((cfg.run_dir / f"spy_rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert set(r["calls"]) == {r["device"]}                            # every collective on the worker's device
        # one bucketed gradient all-reduce per step, one for the logs per epoch: not one per parameter
        assert len(r["calls"]) == steps + cfg.training.epochs, (len(r["calls"]), steps)
        assert len(r["steps"]) == steps
    for a, b in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert a["grads_before"] != b["grads_before"]                      # each rank saw its own data ...
        assert a["grads_after"] == pytest.approx(b["grads_after"], rel=1e-12)   # ... and stepped on the mean
        assert a["params"] == pytest.approx(b["params"], rel=1e-12)        # so the weights never drift apart
    workers = [json.loads((cfg.run_dir / "workers" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [w["device"] for w in workers] == ["cpu", "cpu"] and workers[0]["backend"] == "gloo"


# ----------------------------------------------------------------- what each actor asks Ray for


class _Stop(Exception):
    pass


@pytest.fixture
def captured(monkeypatch):
    """``ray.remote(**options)`` and ``Dataset.map_batches(...)`` recorded, then stopped."""
    import ray
    import ray.data

    seen = []

    def remote(*args, **options):
        seen.append(options)

        def wrap(cls):
            class Handle:
                @staticmethod
                def remote(*a, **k):
                    raise _Stop
            return Handle
        return wrap
    monkeypatch.setattr(ray, "remote", remote)

    class FakeDataset:
        def repartition(self, n):
            return self

        def materialize(self):
            return self

        def map_batches(self, fn, **kwargs):
            seen.append({"udf": fn.__name__, **kwargs})
            raise _Stop
    monkeypatch.setattr(ray.data, "from_arrow", lambda *a, **k: FakeDataset())
    return seen


def _ray_cfg(tiny_config, **ray):
    return tiny_config("opts", **{f"ray.{k}": v for k, v in ray.items()})


@pytest.mark.parametrize("use_gpu,share,expected", [(False, 1.0, 0), (True, 1.0, 1.0), (True, 0.25, 0.25)])
def test_every_model_actor_and_udf_asks_for_its_gpu_share(captured, tiny_config, tmp_path, use_gpu, share, expected,
                                                          monkeypatch):
    from moldiff.data.store import Manifest, write_dataset
    from moldiff.data.records import build_table
    from moldiff.parallel import pool
    from moldiff.parallel.generation import GeneratorWorker
    from moldiff.parallel.sampling import SamplerWorker
    from moldiff.parallel.vector_sampling import StateWorker
    from moldiff.relaxation.methods import METHODS
    from moldiff.relaxation.pipeline import relax_file

    cfg = _ray_cfg(tiny_config, use_gpu=str(use_gpu).lower(), gpus_per_actor=share)
    z = np.ones(3, dtype=int)
    # every model actor of sampling, generation, iid states and simulation comes from the one pool
    workers = [w for w in pool.ModelWorker.__subclasses__()]
    assert set(workers) == {SamplerWorker, GeneratorWorker, StateWorker}
    for worker in workers:
        with pytest.raises(_Stop):
            with pool.model_pool(cfg, worker, "ckpt", 2):
                pass
    inputs = tmp_path / "inputs"
    write_dataset(inputs, build_table(z, np.zeros((1, 3, 3))), Manifest(name="inputs", source="test",
                                                                   units={"length": "Angstrom"}))
    gpus = expected if use_gpu else 0
    for sampler in METHODS:
        with pytest.raises(_Stop):
            relax_file(inputs, tmp_path / "out", sampler, "ckpt", None, 1, 4, 0, {}, gpus_per_actor=gpus)
    actors, udfs = captured[:3], captured[3:]
    assert [o["num_gpus"] for o in actors] == [expected] * 3
    assert all(o["num_cpus"] == cfg.ray.cpus_per_actor and o["scheduling_strategy"] == "DEFAULT" for o in actors)
    # RDKit's MMFF runs on CPUs and asks for none; every other method runs its model on the GPU
    assert [(u["udf"], u["num_gpus"]) for u in udfs] == [("RelaxBatch", expected if m.on_gpu else 0)
                                                         for m in METHODS.values()]
    assert [u["fn_constructor_kwargs"]["use_gpu"] for u in udfs] == [use_gpu and m.on_gpu for m in METHODS.values()]


# --------------------------------------------------------------------- use_gpu without GPUs


def test_use_gpu_on_a_cluster_without_gpus_fails_before_any_stage(ray_session, tiny_config, tmp_path, capsys):
    from moldiff.cli import main
    from moldiff.experiment import run_experiment

    cfg = tiny_config("gpu_less", **{"ray.use_gpu": "true"})
    with pytest.raises(ConfigError, match=r"ray.use_gpu: true, but the Ray cluster has no GPUs"):
        run_experiment(cfg, command="pytest", log=lambda m: None)
    assert not cfg.run_dir.exists() and not Path(cfg.data.root).exists()     # nothing started, nothing written
    # the autoscaler escape hatch waits, then fails the same way
    waiting = tiny_config("gpu_wait", **{"ray.use_gpu": "true", "ray.gpu_wait_s": 0.5})
    logged = []
    with pytest.raises(ConfigError, match="ray.gpu_wait_s"):
        accelerator.require_gpus(waiting.ray, 1, logged.append, poll_s=0.1)
    assert any("asking the autoscaler" in m for m in logged)
    # the command line reports it as a configuration error
    config = tmp_path / "gpu.yaml"
    import yaml
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main([str(config)]) == 2
    assert "ray.use_gpu" in capsys.readouterr().err


def test_gpus_needed_counts_train_workers_and_actor_shares():
    r = RayConfig(use_gpu=True, num_workers=3, gpus_per_actor=0.25)
    assert accelerator.gpus_needed(r, trains=True) == 3 and accelerator.gpus_needed(r, trains=False) == 0.25
    assert accelerator.actor_options(RayConfig())["num_gpus"] == 0


def test_bf16_is_refused_where_the_objective_needs_float32_gradients(tiny_config):
    from moldiff.config import bf16_conflict

    assert bf16_conflict(tiny_config("ok", **{"training.precision": "bf16"})) is None
    from test_fokker_planck_pipeline import tiny_mb
    with pytest.raises(ConfigError, match="training.precision: bf16 does not fit"):
        tiny_mb(Path("/tmp"), "mb", **{"training.precision": "bf16"})      # conservative energy model
