"""Time-interval experts trained in parallel vs one after another, measured in one run.

The same mixture config (default: Müller-Brown "Mixture", three experts with their own sizes and
epochs) is trained twice through ``train_experts``: once with ``experts.max_concurrent=1`` (in turn)
and once with ``experts.max_concurrent=N`` (N concurrent Ray Train runs, default: as many as fit on
the cluster's CPUs). Each pass starts from empty run directories. Reports the wall time of each
pass, the per-expert times and the ratio sequential / parallel, and the ideal ratio for this
cluster (sum of the expert times over the makespan of the best packing onto N slots): the gap is
what running them at once costs or loses here. Writes docs/results/experts_parallel.{md,json}
(hand notes from benchmarks/notes/experts_parallel.md).

    python benchmarks/experts_parallel.py [--epoch-scale 1.0] [--parallel 2] [config overrides...]
"""
from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from moldiff.config import load_config  # noqa: E402
from moldiff.reporting.files import write_result  # noqa: E402
from moldiff.data.sources import prepare_data  # noqa: E402
from moldiff.runtime import connect, log  # noqa: E402
from moldiff.train.experts import expert_configs, train_experts  # noqa: E402


def timed_pass(cfg, data, max_concurrent: int) -> tuple[float, dict[int, float]]:
    """Wall seconds of one pass and, per expert, the seconds from the pass start to its finish."""
    cfg = cfg.model_copy(update={"experts": cfg.experts.model_copy(update={"max_concurrent": max_concurrent})})
    shutil.rmtree(cfg.run_dir, ignore_errors=True)       # a fresh pass, never a resume
    finished: dict[int, float] = {}

    def record(message: str) -> None:
        log(message)
        hit = re.match(r"\[experts\] expert (\d+) finished \((\d+)s\)", message)
        if hit:
            finished[int(hit.group(1))] = float(hit.group(2))

    t0 = time.time()
    train_experts(cfg, data, record)
    return time.time() - t0, finished


def ideal_makespan(durations: list[float], slots: int) -> float:
    """Longest-first packing of independent jobs onto ``slots`` equal workers (optimal for <= 3 jobs on 2)."""
    loads = [0.0] * slots
    for d in sorted(durations, reverse=True):
        loads[loads.index(min(loads))] += d
    return max(loads)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "experiments/configs/fp_muller_brown_mixture.yaml"))
    p.add_argument("--epoch-scale", type=float, default=1.0,
                   help="multiply every expert's epochs by this (the benchmark measures the ratio, not quality)")
    p.add_argument("--parallel", type=int, default=0, help="concurrent experts in the parallel pass (0: as many as fit)")
    p.add_argument("--output", default=str(ROOT / "docs/results/experts_parallel"))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    cfg = load_config(args.config, ["name=experts_parallel", "output_dir=runs/benchmarks", *args.overrides])
    if cfg.experts is None:
        p.error(f"{args.config} defines no experts (no experts section)")
    members = [dict(m) for m in cfg.experts.members]
    base_epochs = cfg.training.epochs
    for m in members:
        m["training.epochs"] = max(1, round(m.get("training.epochs", base_epochs) * args.epoch_scale))
    cfg = cfg.model_copy(update={"experts": cfg.experts.model_copy(update={"members": members})})
    command = "python benchmarks/experts_parallel.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    import ray

    connect(cfg.ray)
    data = prepare_data(cfg.data, log)
    per_run = cfg.ray.num_workers * cfg.ray.cpus_per_worker
    parallel = args.parallel or max(1, int(ray.cluster_resources().get("CPU", 1) // per_run))
    experts = expert_configs(cfg)
    log(f"{len(experts)} experts, epochs {[c.training.epochs for c in experts]}; sequential pass, then {parallel} at a time")

    seq_wall, seq_done = timed_pass(cfg, data, 1)
    par_wall, par_done = timed_pass(cfg, data, parallel)
    # in the sequential pass expert i runs from the finish of expert i-1 to its own finish
    order = sorted(seq_done, key=seq_done.get)
    seq_each = {i: seq_done[i] - (seq_done[order[k - 1]] if k else 0.0) for k, i in enumerate(order)}
    ideal = sum(seq_each.values()) / ideal_makespan(list(seq_each.values()), parallel)
    ratio = seq_wall / par_wall

    rows = [f"| {i} | [{c.training.time_interval[0]:g}, {c.training.time_interval[1]:g}) | {c.model.hidden_layers} "
            f"| {c.training.epochs} | {seq_each[i]:.0f} | {par_done[i]:.0f} |" for i, c in enumerate(experts)]
    md = [
        "# Time-interval experts: trained in parallel vs one after another",
        "",
        f"Command: `{command}`",
        "",
        f"Config: `{Path(args.config).relative_to(ROOT) if Path(args.config).is_absolute() else args.config}` "
        f"with every expert's epochs x {args.epoch_scale}; each expert is its own Ray Train run "
        f"({cfg.ray.num_workers} worker x {cfg.ray.cpus_per_worker} CPU, {cfg.ray.torch_threads} torch thread), "
        f"seed {cfg.seed}. Both passes in one run on this machine (2 cores, no GPU), each from empty run directories.",
        "",
        "| expert | t interval | hidden layers | epochs | in turn: s | in parallel: s to finish |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "| pass | wall s |",
        "|---|---|",
        f"| one after another (`experts.max_concurrent=1`) | {seq_wall:.0f} |",
        f"| {parallel} at a time (`experts.max_concurrent={parallel}`) | {par_wall:.0f} |",
        "",
        f"**Ratio (in turn / in parallel): {ratio:.2f}.** The ideal for {parallel} slots with these expert "
        f"times (longest first) is {ideal:.2f}. The per-expert times include each Ray Train run's start-up "
        "(worker processes importing torch, the Ray Data split), which in the parallel pass competes with the "
        "running expert for the same 2 cores, so short experts gain least. On a cluster with a GPU (or a node) "
        "per expert the ideal is the sum of the expert times over the longest one.",
    ]
    record = {"experiment": "experts_parallel", "variant": f"max_concurrent_1_vs_{parallel}",
              "metric": "wall_time_ratio", "mean": ratio, "std": None, "n_seeds": 1, "seed_kind": "training", "n_samples": 1,
              "noise_floor": None, "command": command,
              "details": {"sequential_wall_s": seq_wall, "parallel_wall_s": par_wall, "parallel": parallel,
                          "ideal_ratio": ideal, "sequential_expert_s": seq_each, "parallel_finish_s": par_done,
                          "epochs": [c.training.epochs for c in experts]}}
    print(write_result(args.output, md, [record]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
