"""Two runs of the same config side by side (before and after a change): every metric's mean ± std
over seeds in each, the difference, and whether it lies within the seed noise (|difference| <= the
larger of the two seed stds, or <= 1e-3 of the value where both stds are 0). Writes
docs/results/<name>.md and .json.

    python benchmarks/compare_runs.py BEFORE_RUN_DIR AFTER_RUN_DIR --name quick_regression \
        [--before-label a354aeb] [--after-label HEAD]
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from moldiff.metrics.report import load_report
from moldiff.reporting.files import RESULTS, recorded_command, write_result


def compare(before, after) -> list[dict]:
    rows = []
    for e in after.entries:
        if e.key not in before:
            continue
        b = before[e.key]
        diff = e.mean - b.mean
        noise = max(e.std, b.std)
        within = abs(diff) <= noise if noise > 0 else abs(diff) <= 1e-3 * max(abs(b.mean), 1e-12)
        rows.append({"metric": e.key, "before": b.mean, "before_std": b.std, "after": e.mean, "after_std": e.std,
                     "difference": diff, "seed_noise": noise, "within_noise": bool(within),
                     "n_seeds": len(e.per_seed), "n_samples": after.n_samples})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--before-label", default="before")
    p.add_argument("--after-label", default="after")
    p.add_argument("--output-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    command = "python benchmarks/compare_runs.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    before, after = load_report(args.before), load_report(args.after)
    rows = compare(before, after)
    n_out = sum(not r["within_noise"] for r in rows)
    md = [f"# {args.name}: {after.experiment}, {args.before_label} vs {args.after_label}", "",
          f"Command: `{command}`", "",
          f"The same config run on two versions of the code: {args.before_label} "
          f"(`{recorded_command(args.before) or args.before}`) and {args.after_label} "
          f"(`{recorded_command(args.after) or args.after}`). Mean ± std over the {after.seed_kind} seeds "
          f"{after.seeds}, {after.n_samples} samples per seed; within noise: |difference| <= the larger seed std.", "",
          f"| metric | {args.before_label} | {args.after_label} | difference | within seed noise |", "|---|---|---|---|---|"]
    md += [f"| {r['metric']} | {r['before']:.4f} ± {r['before_std']:.4f} | {r['after']:.4f} ± {r['after_std']:.4f} | "
           f"{r['difference']:+.4f} | {'yes' if r['within_noise'] else 'NO'} |" for r in rows]
    md += ["", f"**{len(rows) - n_out} of {len(rows)} metrics within seed noise.**"]
    records = [{"experiment": args.name, "variant": args.after_label, "metric": r["metric"], "mean": r["after"],
                "std": r["after_std"], "n_seeds": r["n_seeds"], "seed_kind": after.seed_kind,
                "n_samples": r["n_samples"], "noise_floor": None, "command": command,
                "before": r["before"], "before_std": r["before_std"], "within_noise": r["within_noise"]} for r in rows]
    print(write_result(Path(args.output_dir) / args.name, md, records))
    return 0 if n_out == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
