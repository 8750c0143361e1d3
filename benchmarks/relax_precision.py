"""Float32 vs float64 relaxation of the same inputs with the same trained model, in one run.

Relaxation runs in float32 by default (``relaxation.precision``; float64 was the earlier default and
is many times slower on GPUs). This benchmark relaxes the run's unstable inputs twice, identical in
everything but the arithmetic (the same model, sampler, threshold, per-molecule noise: the relaxer
draws it on the host in float64 from each molecule's own generator), and asks whether the
benchmark's numbers move: the median RMSD ratio and the failure fraction of each precision with
their bootstrap standard errors (the noise floor of comparing two rows), and per input the
difference between the two relaxed structures.

    python benchmarks/relax_precision.py runs/morered_qm9 --sampler itp [--n 0] [--num-actors 2]

``--n 0`` (default) relaxes every input of the run's configuration (the MoreRed page's 1,036);
the inputs are made if the run's sample stage has not made them. Writes
docs/results/relax_precision.{md,json}.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from moldiff.config import load_config  # noqa: E402
from moldiff.data.sources import prepare_data  # noqa: E402
from moldiff.data.store import Manifest, positions, read_dataset, write_dataset  # noqa: E402
from moldiff.metrics.relaxation import kabsch_rmsd, relaxed_stats  # noqa: E402
from moldiff.relaxation.methods import METHODS, parse_label  # noqa: E402
from moldiff.relaxation.pipeline import checkpoint_dir, configured_label, prepare_inputs, relax_file  # noqa: E402
from moldiff.runtime import connect, log  # noqa: E402
from moldiff.reporting.files import write_result  # noqa: E402

PRECISIONS = ("float32", "float64")
HEADLINE = (("median_ratio", "median_ratio_se"), ("failure_fraction", "failure_fraction_se"))


def paired(rows32, rows64) -> dict:
    """Per-input differences between the two relaxations (rows matched by input id)."""
    order = {i: n for n, i in enumerate(rows64.column("id").to_pylist())}
    ids = rows32.column("id").to_pylist()
    take = np.array([order[i] for i in ids])
    pos32, pos64 = positions(rows32), positions(rows64)
    r32 = rows32.column("ratio").to_numpy(zero_copy_only=False)
    r64 = rows64.column("ratio").to_numpy(zero_copy_only=False)[take]
    f32 = np.array([f != "" for f in rows32.column("failed").to_pylist()]) | (r32 > 1)
    f64 = (np.array([f != "" for f in rows64.column("failed").to_pylist()]) | (
        rows64.column("ratio").to_numpy(zero_copy_only=False) > 1))[take]
    steps32 = rows32.column("n_steps").to_numpy()
    steps64 = rows64.column("n_steps").to_numpy()[take]
    both_finite = np.isfinite(r32) & np.isfinite(r64)
    apart = np.array([kabsch_rmsd(pos32[j], pos64[take[j]]) for j in np.flatnonzero(both_finite)])
    dratio = np.abs(r32 - r64)[both_finite]
    return {"n_inputs": len(ids), "n_both_finite": int(both_finite.sum()),
            "structure_rmsd_median": float(np.median(apart)), "structure_rmsd_p95": float(np.percentile(apart, 95)),
            "structure_rmsd_max": float(apart.max()),
            "ratio_abs_diff_median": float(np.median(dratio)), "ratio_abs_diff_p95": float(np.percentile(dratio, 95)),
            "failure_flag_differs": float((f32 != f64).mean()), "same_steps": float((steps32 == steps64).mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--sampler", default="itp", choices=[n for n, m in METHODS.items() if m.objective])
    p.add_argument("--time-run", default=None, help="time predictor run (itp / as with a noise model)")
    p.add_argument("--k-min", type=int, default=None, help="threshold (default: what the run's config resolves to)")
    p.add_argument("--n", type=int, default=0, help="relax only the first N inputs (0: all)")
    p.add_argument("--num-actors", type=int, default=2)
    p.add_argument("--slots", type=int, default=64)
    p.add_argument("--output", default=str(ROOT / "docs" / "results" / "relax_precision"))
    args = p.parse_args(argv)
    command = "python benchmarks/relax_precision.py " + shlex.join(argv if argv is not None else sys.argv[1:])

    cfg = load_config(args.run_dir / "config.yaml")
    connect(cfg.ray)
    data = prepare_data(cfg.data, log)
    inputs = prepare_inputs(cfg, data, log)
    rx = cfg.relaxation
    k_min = args.k_min if args.k_min is not None else parse_label(configured_label(rx, args.sampler, args.run_dir))[1]
    checkpoint = str(args.run_dir / "checkpoints" / "final")
    time_dir = checkpoint_dir(args.time_run) if args.time_run else None
    settings = {"max_steps": rx.max_steps, "k_min": k_min, "fmax": rx.fmax}
    stats, rows, seconds = {}, {}, {}
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(dir=args.run_dir) as tmp:
        source = inputs
        if args.n:
            table, manifest = read_dataset(inputs, validate=False)
            source = Path(tmp) / "inputs"
            write_dataset(source, table.slice(0, args.n), Manifest(**{**manifest.__dict__, "name": "precision-inputs"}))
        for precision in PRECISIONS:
            out = Path(tmp) / precision
            log(f"[precision] {args.sampler} (k_min {k_min}) in {precision} on {args.num_actors} actor(s)")
            t0 = time.time()
            relax_file(source, out, args.sampler, checkpoint, time_dir, args.num_actors, args.slots, 0, settings,
                       cfg.ray.cpus_per_actor, cfg.ray.torch_threads, cfg.sampling.use_ema, precision=precision)
            seconds[precision] = time.time() - t0
            rows[precision] = pq.read_table(out)
            stats[precision] = relaxed_stats(rows[precision])
            log(f"[precision] {precision}: median ratio {stats[precision]['median_ratio']:.4f} "
                f"(SE {stats[precision]['median_ratio_se']:.4f}), failures {stats[precision]['failure_fraction']:.4f} "
                f"(SE {stats[precision]['failure_fraction_se']:.4f}), {seconds[precision]:.0f}s")
    pair = paired(rows["float32"], rows["float64"])
    n = pair["n_inputs"]
    verdicts = {}
    for stat, se in HEADLINE:
        diff = abs(stats["float32"][stat] - stats["float64"][stat])
        floor = max(stats["float32"][se], stats["float64"][se])
        verdicts[stat] = (diff, floor, diff <= floor)

    model = f"`{args.run_dir}` ({cfg.objective.variant}, {cfg.model.backbone} width {cfg.model.hidden})"
    md = ["# Relaxation in float32 vs float64", "", f"Command: `{command}`", "",
          f"Model: {model}" + (f", time predictor `{args.time_run}`" if args.time_run else "") +
          f"; sampler {args.sampler}, k_min {k_min}, max {rx.max_steps} steps; {n} inputs from `{inputs.name}` "
          f"(relaxation.inputs of the run: {rx.inputs.n_molecules} {rx.inputs.split} molecules, kinds "
          f"{', '.join(rx.inputs.kinds)}); one sampling seed (0), the same per-molecule noise in both precisions; "
          f"{args.num_actors} actor(s) x {args.slots} slots, one torch thread each, this machine (2 cores, no GPU).", "",
          "| precision | median ratio | SE | failure fraction | SE | median RMSD after (A) | median steps | wall s |",
          "|---|---|---|---|---|---|---|---|"]
    for precision in PRECISIONS:
        s = stats[precision]
        md.append(f"| {precision} | {s['median_ratio']:.4f} | {s['median_ratio_se']:.4f} | {s['failure_fraction']:.4f} "
                  f"| {s['failure_fraction_se']:.4f} | {s['median_rmsd_after']:.4f} | {s['median_steps']:.0f} | "
                  f"{seconds[precision]:.0f} |")
    md += ["", "**Within the bootstrap SE** (|difference| <= the larger SE of the two rows):"]
    for stat, (diff, floor, ok) in verdicts.items():
        md.append(f"- {stat}: |difference| {diff:.4f} vs SE {floor:.4f}: {'met' if ok else 'not met'}")
    md += ["", "Per input (paired by id), float32 vs float64:", "",
           "| quantity | value |", "|---|---|",
           f"| inputs finite in both | {pair['n_both_finite']} of {n} |",
           f"| RMSD between the two relaxed structures, median / 95th pct / max (A) | "
           f"{pair['structure_rmsd_median']:.2e} / {pair['structure_rmsd_p95']:.2e} / {pair['structure_rmsd_max']:.2e} |",
           f"| abs. difference of the ratio, median / 95th pct | {pair['ratio_abs_diff_median']:.2e} / "
           f"{pair['ratio_abs_diff_p95']:.2e} |",
           f"| inputs whose failure flag differs | {pair['failure_flag_differs']:.4f} |",
           f"| inputs with the same number of steps | {pair['same_steps']:.4f} |", "",
           f"Speed on this CPU: float64 took {seconds['float64'] / seconds['float32']:.2f} x the time of float32 "
           "(one run each, actors started and model loaded in both)."]
    records = []
    for precision in PRECISIONS:
        for stat, se in HEADLINE:
            records.append({"experiment": "relax_precision", "variant": precision, "metric": stat,
                            "mean": stats[precision][stat], "std": 0.0, "n_seeds": 1, "seed_kind": "sampling",
                            "n_samples": n, "noise_floor": stats[precision][se], "command": command,
                            "sampler": args.sampler, "k_min": k_min, "seconds": round(seconds[precision], 1)})
    for key, value in pair.items():
        if key.startswith("n_"):
            continue
        records.append({"experiment": "relax_precision", "variant": "float32_vs_float64", "metric": key,
                        "mean": value, "std": 0.0, "n_seeds": 1, "seed_kind": "sampling", "n_samples": n,
                        "noise_floor": None, "command": command, "sampler": args.sampler, "k_min": k_min})
    print(write_result(args.output, md, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
