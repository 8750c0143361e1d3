"""Where model work runs: the device of a Train worker or actor, what each asks Ray for, the
collectives between Train workers (always on the worker's device), and a record of the device a
stage ran on.

Every place that runs a model takes its device and its Ray resources from here, so ``ray.use_gpu``
means the same everywhere: Train workers hold one GPU each, actors and tasks that run a model hold
``ray.gpus_per_actor`` of one (several share a GPU when it is below 1), and a process that was
asked to use a GPU but sees none fails instead of running on the CPU.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Optional

import torch

from .config import ConfigError, RayConfig

# gradients are summed in buckets of about this many bytes: one collective per bucket instead of
# one per parameter, without a second copy of a large model in one piece
BUCKET_BYTES = 32 * 2 ** 20


def actor_gpus(ray_cfg: RayConfig) -> float:
    """GPUs one model-running actor or task asks Ray for."""
    return ray_cfg.gpus_per_actor if ray_cfg.use_gpu else 0


def actor_options(ray_cfg: RayConfig, num_cpus: Optional[float] = None) -> dict:
    """``ray.remote`` options of an actor (or task) that runs a model."""
    # "DEFAULT": inside a Tune trial, actors would otherwise be pulled into the trial's placement group
    return {"num_cpus": ray_cfg.cpus_per_actor if num_cpus is None else num_cpus,
            "num_gpus": actor_gpus(ray_cfg), "scheduling_strategy": "DEFAULT"}


def local_device(use_gpu: bool) -> torch.device:
    """This process's device: the GPU Ray gave it (Ray sets CUDA_VISIBLE_DEVICES, so it is cuda:0
    here, also when several actors share it), else the CPU. Asked for a GPU without seeing one is an
    error, never a silent CPU run."""
    if not use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"ray.use_gpu is set, but this process sees no CUDA device (torch {torch.__version__}, built for "
            f"CUDA {torch.version.cuda}; CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
            "install a CUDA build of torch on the GPU nodes, or set ray.use_gpu=false")
    return torch.device("cuda", torch.cuda.current_device())


def set_matmul_precision(precision: str) -> None:
    """``tf32`` lets float32 matrix products and convolutions use TF32 tensor cores (CUDA only;
    a no-op on CPUs); ``fp32`` and ``bf16`` keep full float32 products outside autocast."""
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def autocast(device: torch.device, precision: str):
    """The context a training step runs in: bf16 autocast for ``precision == "bf16"``, else none."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# ------------------------------------------------------------------------------------ collectives


def all_reduce(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Sum ``tensor`` over all Train workers, on ``device`` (NCCL takes only CUDA tensors, gloo
    CPU ones, so the worker's own device is the one that always works); returns the sum there."""
    import torch.distributed as dist

    on_device = tensor.to(device)
    dist.all_reduce(on_device)
    return on_device


def all_reduce_buckets(tensors: Iterable[torch.Tensor], device: torch.device,
                       bucket_bytes: int = BUCKET_BYTES) -> None:
    """Sum every tensor over all Train workers in place, in flat buckets of one dtype each (one
    collective per bucket)."""
    bucket: list[torch.Tensor] = []
    size = 0

    def flush():
        nonlocal bucket, size
        if bucket:
            flat = all_reduce(torch.cat([t.reshape(-1) for t in bucket]), device)
            for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
                t.copy_(part.view_as(t))
        bucket, size = [], 0

    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or size + t.numel() * t.element_size() > bucket_bytes):
            flush()
        bucket.append(t)
        size += t.numel() * t.element_size()
    flush()


def average_gradients(model: torch.nn.Module, world: int, device: torch.device) -> None:
    """Data-parallel gradient averaging without DDP (for losses that differentiate through
    autograd.grad several times per step, which DDP's hooks do not support)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if grads:
        all_reduce_buckets(grads, device)
        torch._foreach_div_(grads, float(world))


# ----------------------------------------------------------------------------------- the cluster


def cluster_gpus() -> float:
    import ray
    return float(ray.cluster_resources().get("GPU", 0))


def require_gpus(ray_cfg: RayConfig, needed: float, log: Callable[[str], None] = print,
                 poll_s: float = 5.0) -> None:
    """With ``ray.use_gpu``, fail before any work unless the cluster has ``needed`` GPUs. On an
    autoscaling cluster whose GPU nodes start at zero, ``ray.gpu_wait_s`` asks the autoscaler for
    them and waits that long."""
    if not ray_cfg.use_gpu:
        return
    have = cluster_gpus()
    if have < needed and ray_cfg.gpu_wait_s > 0:
        from ray.autoscaler.sdk import request_resources

        log(f"[gpu] the cluster has {have:g} GPU(s), {needed:g} needed: asking the autoscaler and waiting up to "
            f"{ray_cfg.gpu_wait_s:g} s (ray.gpu_wait_s)")
        request_resources(bundles=[{"GPU": 1}] * max(1, int(-(-needed // 1))))
        deadline = time.time() + ray_cfg.gpu_wait_s
        while have < needed and time.time() < deadline:
            time.sleep(poll_s)
            have = cluster_gpus()
    if have < needed:
        import ray
        resources = {k: v for k, v in ray.cluster_resources().items() if not k.startswith(("node:", "memory",
                                                                                             "object_store"))}
        what = "no GPUs" if have == 0 else f"{have:g} GPU(s)"
        raise ConfigError(
            f"ray.use_gpu: true, but the Ray cluster has {what} and this run needs {needed:g} "
            f"(ray.num_workers Train workers hold one each, actors ray.gpus_per_actor); its resources are "
            f"{resources}. Set ray.use_gpu=false to run on CPUs, connect to a cluster with GPU nodes "
            "(ray.address / RAY_ADDRESS), or, on an autoscaling cluster, set ray.gpu_wait_s")
    log(f"[gpu] {have:g} GPU(s) in the cluster; {needed:g} needed")


def gpus_needed(ray_cfg: RayConfig, trains: bool) -> float:
    """GPUs a run needs at once: its Train workers (one each) when it trains, else one actor's share."""
    return max(float(ray_cfg.num_workers) if trains else 0.0, actor_gpus(ray_cfg))


# --------------------------------------------------------------------------------- device records


def device_record(device: torch.device) -> dict:
    """What a stage ran on: device, its name, torch and CUDA versions, node and process."""
    import platform
    import socket

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or
                                                                             platform.machine())
    record = {"device": str(device), "device_type": device.type, "device_name": name,
              "torch": torch.__version__, "cuda": torch.version.cuda, "host": socket.gethostname(),
              "pid": os.getpid()}
    try:
        import ray
        if ray.is_initialized():
            record["node_id"] = ray.get_runtime_context().get_node_id()
            record["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
    except Exception:          # outside Ray (tests, plain loops): no node to name
        pass
    return record


def describe(record: dict) -> str:
    return f"{record['device']} ({record['device_name']})"


DEVICES_FILE = "devices.json"


def record_stage_devices(run_dir, stage: str, records: list[dict]) -> None:
    """Append the devices a stage's actors ran on to ``<run_dir>/devices.json`` (the driver writes
    it; Train workers write their own into ``workers/rank<r>.json``)."""
    import json
    from pathlib import Path

    from .atomic import write_text

    path = Path(run_dir) / DEVICES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(path.read_text()) if path.is_file() else []
    unique = {json.dumps(r, sort_keys=True): r for r in records}
    known.append({"stage": stage, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "actors": list(unique.values())})
    write_text(path, json.dumps(known, indent=2) + "\n")
