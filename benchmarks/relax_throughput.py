"""Relaxation throughput of a trained MoreRed model, as ratios measured in one run:

1. continuous batching (``--slots`` molecules in flight, one process) vs one molecule at a time
   (slots = 1), same inputs, same sampler, same per-molecule seeds, so the relaxed molecules are
   the same and only the batching differs (checked);
2. the Ray Data actor pipeline with 1 actor vs 2 actors (``--slots`` each).

    python benchmarks/relax_throughput.py runs/morered_qm9 [--sampler jt] [--n 200] [--slots 64]
        [--time-run runs/morered_qm9_time]

The inputs are the run's cached unstable inputs (its sample stage makes them). Writes
docs/results/morered_throughput.{md,json} (hand notes from benchmarks/notes/morered_throughput.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from moldiff.config import load_config  # noqa: E402
from moldiff.data.sources import prepare_data  # noqa: E402
from moldiff.data.store import Manifest, read_dataset, write_dataset  # noqa: E402
from moldiff.relaxation.methods import METHODS, parse_label  # noqa: E402
from moldiff.relaxation.pipeline import RelaxBatch, configured_label, inputs_path, relax_file  # noqa: E402
from moldiff.runtime import connect, log  # noqa: E402
from moldiff.reporting.files import write_result  # noqa: E402


def in_process(batcher: RelaxBatch, table, slots: int) -> tuple[float, list]:
    batcher.slots = slots
    t0 = time.time()
    out = batcher(table)
    return time.time() - t0, out.column("pos").to_pylist()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sampler", default="jt", choices=[n for n, m in METHODS.items() if m.objective])
    p.add_argument("--time-run", default=None, help="time predictor run (itp / as with a noise model)")
    p.add_argument("--n", type=int, default=200, help="inputs relaxed in each measurement")
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--output", default=str(ROOT / "docs" / "results" / "morered_throughput"))
    args = p.parse_args()

    cfg = load_config(args.run_dir / "config.yaml")
    connect(cfg.ray)
    data = prepare_data(cfg.data, log)
    inputs = inputs_path(cfg, data)
    table, manifest = read_dataset(inputs, validate=False)
    table = table.slice(0, args.n)
    checkpoint = str(args.run_dir / "checkpoints" / "final")
    time_dir = str(Path(args.time_run) / "checkpoints" / "final") if args.time_run else None
    rx = cfg.relaxation
    # the threshold the run's own sample stage used for this sampler (k_min: auto is resolved there)
    k_min = parse_label(configured_label(rx, args.sampler, args.run_dir))[1]
    settings = {"max_steps": rx.max_steps, "k_min": k_min, "fmax": rx.fmax}
    batcher = RelaxBatch(args.sampler, checkpoint, time_dir, settings, args.slots, 0, cfg.ray.torch_threads,
                         cfg.sampling.use_ema, precision=rx.precision)
    log(f"[throughput] {table.num_rows} inputs, sampler {args.sampler}: one at a time, then {args.slots} in flight")
    single_s, single_pos = in_process(batcher, table, 1)
    batched_s, batched_pos = in_process(batcher, table, args.slots)
    same = all(np.allclose(a, b, atol=1e-4) for a, b in zip(single_pos, batched_pos))

    actor_s = {}
    with tempfile.TemporaryDirectory() as tmp:
        subset = Path(tmp) / "inputs"
        write_dataset(subset, table, Manifest(**{**manifest.__dict__, "name": "throughput-inputs"}))
        for actors in (1, 2):
            t0 = time.time()
            relax_file(subset, Path(tmp) / f"out{actors}", args.sampler, checkpoint, time_dir, actors, args.slots, 0,
                       settings, cfg.ray.cpus_per_actor, cfg.ray.torch_threads, cfg.sampling.use_ema,
                       precision=rx.precision)
            actor_s[actors] = time.time() - t0
            log(f"[throughput] {actors} actor(s): {actor_s[actors]:.0f}s")
    n = table.num_rows
    rows = [("one molecule at a time (slots 1, one process)", single_s), (f"continuous batching (slots {args.slots}, one process)", batched_s),
            (f"Ray Data pipeline, 1 actor x {args.slots} slots", actor_s[1]), (f"Ray Data pipeline, 2 actors x {args.slots} slots", actor_s[2])]
    md = ["# MoreRed relaxation throughput", "",
          f"Command: `python benchmarks/relax_throughput.py {args.run_dir} --sampler {args.sampler} "
          + (f"--time-run {args.time_run} " if args.time_run else "") + f"--n {args.n} --slots {args.slots}`", "",
          f"Model: `{args.run_dir}` ({cfg.model.backbone}, width {cfg.model.hidden}); sampler {args.sampler}, "
          f"max {rx.max_steps} steps, k_min {k_min}, {rx.precision}; {n} inputs from `{inputs.name}`; this machine (2 cores, "
          "one torch thread per process). All four measurements in one run.", "",
          "| setting | wall s | molecules / s |", "|---|---|---|",
          *[f"| {name} | {s:.1f} | {n / s:.2f} |" for name, s in rows], "",
          f"**Continuous batching vs one at a time: {single_s / batched_s:.2f} x** (same relaxed molecules: {same}). "
          f"**2 actors vs 1: {actor_s[1] / actor_s[2]:.2f} x** (the pipeline's times include starting the actors "
          "and loading the model)."]
    records = [{"benchmark": "morered_throughput", "setting": name, "seconds": s, "molecules": n,
                "molecules_per_s": n / s, "sampler": args.sampler, "slots": args.slots} for name, s in rows]
    records.append({"benchmark": "morered_throughput", "ratio_batched_vs_single": single_s / batched_s,
                    "ratio_2_vs_1_actors": actor_s[1] / actor_s[2], "same_molecules": bool(same)})
    print(write_result(args.output, md, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
