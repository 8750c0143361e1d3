"""Sweep throughput: trials per hour with 1 vs 2 concurrent trials, measured in one run.

The same small study (default: the quick DSM experiment on LJ-13, ``--trials`` identical trials
differing only in their training seed, each a whole experiment: Ray Train, sampling actors,
evaluation) runs twice through ``run_sweep``: with ``max_concurrent_trials=1`` and with
``max_concurrent_trials=2``, each pass into a fresh output directory. Reports the wall time of each
pass, trials per hour and the ratio (2 at a time / 1 at a time). On a 2-CPU machine the ideal is
close to 2 when a trial's work is one CPU at a time; trial start-up (Ray Train's worker group,
actors) and the stages that use both CPUs (sampling with two actors) pull it down. Writes
docs/results/sweep_throughput.{md,json} (hand notes from benchmarks/notes/sweep_throughput.md).

    python benchmarks/sweep_throughput.py [--config experiments/configs/dsm_lj13_quick.yaml] [--trials 4]
        [config overrides...]
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from moldiff.runtime import connect, log  # noqa: E402
from moldiff.config import RayConfig  # noqa: E402
from moldiff.experiment import stage_seconds  # noqa: E402
from moldiff.sweep import run_sweep  # noqa: E402
from moldiff.reporting.files import write_result  # noqa: E402


def write_study(directory: Path, config: Path, trials: int, concurrent: int, output_dir: Path) -> Path:
    spec = {"name": f"throughput_{concurrent}", "base": str(config.resolve()), "metric": "distance_tvd",
            "variants": {"training_seed": {f"s{i}": {"seed": i} for i in range(trials)}},
            "max_concurrent_trials": concurrent,
            "overrides": {"output_dir": str(output_dir), "ray.num_workers": 1, "ray.num_sampling_actors": 1}}
    path = directory / f"throughput_{concurrent}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/configs/dsm_lj13_quick.yaml")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--output", default=str(ROOT / "docs" / "results" / "sweep_throughput"))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    connect(RayConfig())
    import ray
    cpus = ray.cluster_resources().get("CPU", 0)
    work = Path(tempfile.mkdtemp(prefix="sweep_throughput_", dir=ROOT / "runs" if (ROOT / "runs").exists() else None))
    passes, stages = {}, {}
    try:
        for concurrent in (1, 2):
            spec = write_study(work, ROOT / args.config, args.trials, concurrent, work / f"runs_{concurrent}")
            log(f"[throughput] {args.trials} trials, {concurrent} at a time")
            t0 = time.time()
            summary = run_sweep(spec, list(args.overrides), log=lambda m: None)
            seconds = time.time() - t0
            finished = sum("metrics" in t for t in summary["trials"])
            if finished != args.trials:
                raise RuntimeError(f"pass with {concurrent} at a time: {finished} of {args.trials} trials finished")
            passes[concurrent] = seconds
            # where a trial's time goes at this concurrency: mean seconds per stage over the trials
            per_trial = [stage_seconds(t["run_dir"]) for t in summary["trials"]]
            stages[concurrent] = {st: sum(t.get(st, 0.0) for t in per_trial) / len(per_trial)
                                  for st in ("train", "sample", "evaluate")}
            log(f"[throughput] {concurrent} at a time: {seconds:.0f}s, {3600 * args.trials / seconds:.1f} trials/h")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = passes[1] / passes[2]
    command = "python benchmarks/sweep_throughput.py " + " ".join(
        shlex.quote(a) for a in ["--config", args.config, "--trials", str(args.trials), *args.overrides])
    md = ["# Sweep throughput: 1 vs 2 concurrent trials", "",
          f"Command: `{command}`; {args.trials} identical trials of `{args.config}` (training seeds 0-{args.trials - 1}) "
          f"per pass, each a whole experiment; a cluster of {cpus:g} CPUs; both passes in one run.", "",
          "| trials at a time | wall time (s) | trials per hour | per trial: train (s) | sample (s) | evaluate (s) |",
          "|---|---|---|---|---|---|",
          *[f"| {c} | {s:.0f} | {3600 * args.trials / s:.1f} | " + " | ".join(f"{v:.0f}" for v in stages[c].values()) + " |"
            for c, s in passes.items()], "",
          f"**Ratio (2 at a time over 1 at a time, trials per hour): {ratio:.2f}.**"]
    records = [{"experiment": "sweep_throughput", "variant": f"{c}_concurrent", "metric": "trials_per_hour",
                "mean": 3600 * args.trials / s, "std": 0.0, "n_seeds": 1, "seed_kind": "training", "n_samples": args.trials,
                "noise_floor": None, "command": command,
                **{f"mean_{st}_seconds": v for st, v in stages[c].items()}} for c, s in passes.items()]
    records.append({"experiment": "sweep_throughput", "variant": "2_over_1", "metric": "throughput_ratio",
                    "mean": ratio, "std": 0.0, "n_seeds": 1, "seed_kind": "training", "n_samples": args.trials, "noise_floor": None,
                    "command": command})
    print(write_result(args.output, md, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
