"""Turn a finished run directory into docs/results/<name>.md (for people) and .json (for programs).

    python benchmarks/publish_results.py runs/dsm_lj13 --name dsm_lj13 [--variant dsm]

The markdown holds the exact command (from the run's command.txt), seeds, sample sizes, the noise
floor and mean ± std over seeds, the paper's numbers side by side (benchmarks/paper_numbers.yaml),
hand-written notes (benchmarks/notes/<name>.md) and the run's plots. The JSON is a list of
records {experiment, variant, metric, mean, std, n_seeds, seed_kind, n_samples, noise_floor, unit, command}
read from the run's report (``moldiff.metrics.report``; older flat metrics.json files load too).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml

from ..experiment import stage_seconds
from ..metrics.report import load_report, results_table
from .files import NOTES, PAPER_NUMBERS, RESULTS, recorded_command


def records(report, experiment: str, variant: str, command: str) -> list[dict]:
    return [{"experiment": experiment, "variant": variant, "metric": e.key, "mean": e.mean, "std": e.std,
             "n_seeds": len(e.per_seed), "seed_kind": report.seed_kind, "n_samples": report.n_samples,
             "noise_floor": e.floor_mean, "unit": e.unit, "command": command}
            for e in report.entries]


def paper_table(name: str, metrics: dict) -> list[str]:
    numbers = yaml.safe_load(PAPER_NUMBERS.read_text()).get(name)
    if not numbers:
        return []
    ours = metrics["metrics"]
    lines = [f"### Side by side with the paper", "", f"Paper: {numbers['source']}.", "",
             "| method | metric | value |", "|---|---|---|"]
    for row in numbers["rows"]:
        std = f" ± {row['std']}" if row.get("std") is not None else ""
        lines.append(f"| {row['method']} (paper) | {row['metric']} | {row['value']}{std} |")
    for metric in sorted({row["metric"] for row in numbers["rows"]}):
        if metric in ours:
            lines.append(f"| **moldiff ({metrics['experiment']})** | {metric} | "
                         f"**{ours[metric]['mean']:.4f} ± {ours[metric]['std']:.4f}** "
                         f"(floor {metrics['noise_floor'][metric]['mean']:.4f}) |")
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--name", required=True, help="results file name (docs/results/<name>.md)")
    p.add_argument("--variant", default=None, help="variant label in the JSON (default: the objective name)")
    args = p.parse_args(argv)
    run = Path(args.run_dir)
    report = load_report(run)
    metrics = report.summary_view()
    config = yaml.safe_load((run / "config.yaml").read_text())
    command = recorded_command(run) or "(not recorded)"
    variant = args.variant or config["objective"]["name"]
    out = RESULTS
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    plots = []
    for plot in sorted((run / "plots").glob("*.png")):
        target = img / f"{args.name}_{plot.name}"
        shutil.copyfile(plot, target)
        plots.append(f"![{plot.stem}](img/{target.name})")
    seconds = stage_seconds(run)
    cost = ", ".join(f"{stage} {s / 60:.1f} min" for stage, s in seconds.items()) or "not recorded"

    notes_file = NOTES / f"{args.name}.md"
    c = config
    md = [
        f"# {args.name}", "",
        c.get("description", "").strip(), "",
        "## How it was made", "",
        f"- Command: `{command}`",
        f"- Config: the resolved config is `{run.name}/config.yaml` in the run directory; key settings: "
        f"data `{c['data']['source']}` ({json.dumps(c['data'].get(c['data']['source']), separators=(',', ':'))}), "
        f"training set `{json.dumps(c['data']['train'], separators=(',', ':'))}`, "
        f"model `{json.dumps(c['model'], separators=(',', ':'))}`, diffusion `{json.dumps(c['diffusion'], separators=(',', ':'))}`, "
        f"{c['training']['epochs']} epochs x batch {c['training']['batch_size']}, "
        f"sampler `{json.dumps(c['sampling'], separators=(',', ':'))}`.",
        f"- Seeds: training seed {c['seed']}, data seed {c['data']['seed']}, sampling seeds {metrics['seeds']}.",
        f"- Sample sizes: {metrics['n_samples']} samples per seed; reference {metrics['n_reference']} frames; "
        f"noise floor from {metrics['n_noise_floor_set']} independent reference frames per seed "
        f"({metrics['reference_split']}); training set {metrics['n_train']} frames.",
        f"- Cost (wall clock per stage, `timings.json`; data generation is cached and counted when it ran "
        f"in this run directory): {cost}.",
        "",
        "## Results", "",
        "Mean ± std over sampling seeds. The noise floor is the same metric between two independent "
        "reference sets of the same size; the training-set column is the training data itself judged "
        "against the reference.", "",
        results_table(report), "",
        *paper_table(args.name, metrics),
        *([notes_file.read_text().strip(), ""] if notes_file.exists() else []),
        *(["## Plots", "", *plots, ""] if plots else []),
    ]
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(records(report, args.name, variant, command), indent=2) + "\n")
    print(f"wrote {out / (args.name + '.md')} and .json")
    return 0
