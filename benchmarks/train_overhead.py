"""Ray Train overhead: the same model, data and objective trained by

  (a) a plain PyTorch loop in this process, and
  (b) ``TorchTrainer`` with one worker (Ray Data shard, per-epoch report and checkpoint),

measured in one run. Reports steady-state steps/s of both (first epoch excluded) and the ratio,
plus the end-to-end wall time of (b) including worker start-up. Writes
docs/results/train_overhead.{md,json}.

    python benchmarks/train_overhead.py [--epochs 30] [config overrides...]
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from moldiff.config import load_config  # noqa: E402
from moldiff.data.batch import collate_arrow  # noqa: E402
from moldiff.data.sources import prepare_data  # noqa: E402
from moldiff.data.store import read_dataset  # noqa: E402
from moldiff.models import build_model  # noqa: E402
from moldiff.objectives import build_objective  # noqa: E402
from moldiff.runtime import connect, log  # noqa: E402
from moldiff.train.optim import build_optimizer, build_scheduler  # noqa: E402
from moldiff.train.trainer import coordinate_scale, train  # noqa: E402


def plain_loop(cfg, train_path, sigma_data, epochs, steps_per_epoch) -> list[float]:
    """Seconds per epoch of a plain single-process loop doing what the Train worker does."""
    torch.set_num_threads(cfg.ray.torch_threads)
    torch.manual_seed(cfg.seed)
    table, _ = read_dataset(train_path)
    data = collate_arrow(table)
    model = build_model(cfg, sigma_data)
    optimizer = build_optimizer(model.parameters(), cfg.training)
    scheduler = build_scheduler(optimizer, cfg.training, epochs * steps_per_epoch)
    objective = build_objective(cfg)
    rng = np.random.default_rng(0)
    gen = torch.Generator()
    times = []
    for _ in range(epochs):
        t0 = time.time()
        order = rng.permutation(data.num_graphs)
        for i in range(steps_per_epoch):
            idx = order[(i * cfg.training.batch_size) % data.num_graphs:][:cfg.training.batch_size]
            loss, _ = objective(model, data.select(torch.as_tensor(idx)), gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.training.grad_clip)
            optimizer.step()
            scheduler.step()
        times.append(time.time() - t0)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "experiments/configs/dsm_lj13.yaml"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--output", default=str(ROOT / "docs/results/train_overhead"))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    overrides = ["name=train_overhead", f"training.epochs={args.epochs}", "training.checkpoint_every=1",
                 "output_dir=runs/benchmarks", *args.overrides]
    cfg = load_config(args.config, overrides)
    command = "python benchmarks/train_overhead.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    connect(cfg.ray)
    data = prepare_data(cfg.data, log)
    n_train = data.train_manifest.n_molecules
    steps_per_epoch = math.ceil(n_train / cfg.training.batch_size)
    sigma_data = coordinate_scale(data.train)

    log(f"plain PyTorch loop: {args.epochs} epochs x {steps_per_epoch} steps")
    plain = plain_loop(cfg, data.train, sigma_data, args.epochs, steps_per_epoch)

    import shutil
    shutil.rmtree(cfg.run_dir, ignore_errors=True)          # a fresh Train run, not a resume
    log(f"TorchTrainer, 1 worker: {args.epochs} epochs")
    t0 = time.time()
    final = train(cfg, data, log)
    ray_wall = time.time() - t0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(cfg.run_dir / "tensorboard"))
    acc.Reload()
    ray_mol_s = [e.value for e in acc.Scalars("train/molecules_per_s")]

    batch = cfg.training.batch_size
    plain_steady = steps_per_epoch * (args.epochs - 1) / sum(plain[1:])
    ray_steady = float(np.mean(ray_mol_s[1:])) / batch
    ratio = ray_steady / plain_steady
    rows = [
        ("plain PyTorch loop (steady state)", plain_steady),
        ("TorchTrainer, 1 worker (steady state, per-epoch report + checkpoint)", ray_steady),
        ("TorchTrainer, 1 worker (end to end incl. start-up)", args.epochs * steps_per_epoch / ray_wall),
    ]
    md = [
        "# Ray Train overhead: TorchTrainer (1 worker) vs a plain PyTorch loop",
        "",
        f"Command: `{command}`",
        "",
        f"Model: EGNN hidden {cfg.model.hidden} x {cfg.model.layers} layers, DSM on LJ-13, batch {batch}, "
        f"{n_train} training molecules, {steps_per_epoch} steps/epoch, {args.epochs} epochs, "
        f"{cfg.ray.torch_threads} torch thread(s), seed {cfg.seed}. Measured in one run on this machine "
        "(2 cores, no GPU); the first epoch of each is excluded from the steady-state numbers.",
        "",
        "| loop | steps/s |",
        "|---|---|",
        *[f"| {name} | {value:.2f} |" for name, value in rows],
        "",
        f"**Ratio (TorchTrainer / plain, steady state): {ratio:.3f}.** End-to-end wall time of the Train "
        f"run: {ray_wall:.1f} s for {args.epochs * steps_per_epoch} steps (worker start-up included).",
        "",
        f"Per-epoch spread: plain {np.std(plain[1:]) / np.mean(plain[1:]) * 100:.1f}% (std/mean of epoch times), "
        f"TorchTrainer {np.std(ray_mol_s[1:]) / np.mean(ray_mol_s[1:]) * 100:.1f}%.",
    ]
    record = {"experiment": "train_overhead", "variant": "torchtrainer_1_worker_vs_plain", "metric": "steps_per_s_ratio",
              "mean": ratio, "std": None, "n_seeds": 1, "n_samples": args.epochs - 1, "noise_floor": None,
              "command": command,
              "details": {"plain_steps_per_s": plain_steady, "ray_steps_per_s": ray_steady,
                          "ray_end_to_end_steps_per_s": rows[2][1], "ray_wall_s": ray_wall,
                          "checkpoint": str(final)}}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    out.with_suffix(".json").write_text(json.dumps([record], indent=2) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
