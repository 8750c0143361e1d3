"""A finished Tune sweep as one page: docs/results/<name>.md and its .json twin.

    python benchmarks/publish_sweep.py runs/unigem_qm9_tune [--name unigem_sweep] [--command "..."]

From the sweep directory experiments/run.py --sweep wrote: the spec (sweep.yaml: search space,
budgets, scheduler, seed), every trial's selection metric at each budget it reached (the trial's
tune_report_epochs<N>.json, so trials cut early by ASHA compare with the rest at equal budgets),
the finalists' full evaluation (summary.json, e.g. generation metrics), the wall time and the
command (command.txt; --command for sweeps run before it was recorded). Hand-written notes come
from benchmarks/notes/<name>.md.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from .files import RESULTS, recorded_command, write_result

REPORT = re.compile(r"^tune_report_epochs(\d+)\.json$")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "–" if v is None else str(v)


def rung_reports(run_dir: Path) -> dict[int, dict]:
    """{epochs: the metrics the trial reported to Tune at that budget}."""
    reports = {}
    for f in run_dir.glob("tune_report_epochs*.json"):
        match = REPORT.match(f.name)
        if match:
            reports[int(match.group(1))] = json.loads(f.read_text())
    return dict(sorted(reports.items()))


def load_sweep(path: Path, command: str | None) -> dict:
    for name in ("summary.json", "sweep.yaml"):
        if not (path / name).is_file():
            raise SystemExit(f"error: {path / name} not found (is {path} a finished sweep's directory?)")
    summary = json.loads((path / "summary.json").read_text())
    spec = yaml.safe_load((path / "sweep.yaml").read_text())["spec"]
    command = command or recorded_command(path)
    if command is None:
        raise SystemExit(f"error: {path / 'command.txt'} not found: give the sweep's command with --command")
    for trial in summary["trials"]:
        trial["rungs"] = rung_reports(path / trial["trial"])
        metrics_file = path / trial["trial"] / "metrics.json"
        m = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        trial["n_samples"], trial["n_reference"] = m.get("n_samples"), m.get("n_reference")
    return {"summary": summary, "spec": spec, "command": command}


def render(sweep: dict) -> tuple[list[str], list[dict]]:
    summary, spec, command = sweep["summary"], sweep["spec"], sweep["command"]
    metric = summary["metric"]
    finished = [t for t in summary["trials"] if "metrics" in t]
    failed = [t for t in summary["trials"] if "error" in t]
    budgets = sorted({b for t in finished for b in t["rungs"]} or set(spec.get("budgets") or []))
    keys = sorted({k for t in finished for k in t["params"]})
    floor = next((t["metrics"].get(f"noise_floor_{metric}") for t in finished), None)
    md = [f"# Sweep `{summary['name']}`: {metric} ({summary['mode']}imised)", "",
          f"Command: `{command}`", "",
          f"Search: {json.dumps(spec.get('search', {}))}; {spec.get('num_samples')} draw(s), seed "
          f"{spec.get('seed')}, search algorithm {spec.get('search_alg', 'basic')}, scheduler "
          f"{json.dumps(spec.get('scheduler'))}, budgets {spec.get('budgets')} epochs, "
          f"{spec.get('max_concurrent_trials')} trial(s) at a time; one training seed per trial."
          + (f" Wall time {summary['seconds'] / 60:.0f} min." if "seconds" in summary else ""),
          "", f"## {metric} at each budget a trial reached (noise floor: {_fmt(floor)})", "",
          "| trial | " + " | ".join(keys) + " | " + " | ".join(f"{b} epochs" for b in budgets) + " |",
          "|---|" + "---|" * (len(keys) + len(budgets))]
    records = []
    for t in finished:
        md.append(f"| {t['trial']} | " + " | ".join(_fmt(t["params"].get(k)) for k in keys) + " | "
                  + " | ".join(_fmt(t["rungs"].get(b, {}).get(metric)) for b in budgets) + " |")
        for b, report in t["rungs"].items():
            if metric in report:
                records.append({"experiment": summary["name"], "variant": t["trial"], "metric": f"{metric}@{b}_epochs",
                                "mean": report[metric], "std": report.get(f"{metric}_std", 0.0), "n_seeds": 1,
                                "n_samples": report.get("n_samples", t["n_reference"]), "noise_floor": report.get(f"noise_floor_{metric}"),
                                "command": command, "params": t["params"]})
    if failed:
        md += ["", "Failed trials: " + "; ".join(f"{t['trial']} ({t['error'][:120]})" for t in failed)]
    finals = summary.get("finalists", [])
    n_samples = {t["trial"]: t["n_samples"] for t in finished}
    if finals:
        stats = sorted({k for f in finals for k in f["metrics"]})
        md += ["", f"## Finalists, evaluated in full ({json.dumps(spec.get('final_overrides', {}))})", "",
               "| trial | " + " | ".join(stats) + " |", "|---|" + "---|" * len(stats)]
        for f in finals:
            md.append(f"| {f['trial']} | " + " | ".join(_fmt(f["metrics"].get(k)) for k in stats) + " |")
            records += [{"experiment": summary["name"], "variant": f["trial"], "metric": k, "mean": v,
                         "std": f["std"].get(k, 0.0), "n_seeds": 1, "n_samples": n_samples.get(f["trial"]),
                         "noise_floor": f["noise_floor"].get(k), "command": command, "params": f["params"]}
                        for k, v in f["metrics"].items()]
        md.append("| noise floor | " + " | ".join(_fmt(finals[0]["noise_floor"].get(k)) for k in stats) + " |")
    if finished:
        md += ["", f"Best trial: {finished[0]['trial']} {json.dumps(finished[0]['params'])}; as a ready-to-run config "
               f"in the sweep directory's best.yaml."]
    return md, records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dir", help="the sweep's output directory (runs/<sweep name>)")
    p.add_argument("--name", default=None, help="results page name (default: the sweep's name)")
    p.add_argument("--command", default=None, help="the command that ran the sweep, if command.txt is missing")
    p.add_argument("--output-dir", default=str(RESULTS))
    args = p.parse_args(argv)
    sweep = load_sweep(Path(args.sweep_dir), args.command)
    name = args.name or sweep["summary"]["name"]
    md, records = render(sweep)
    write_result(Path(args.output_dir) / name, md, records)
    print(f"wrote {args.output_dir}/{name}.md and .json ({len(records)} records)")
    return 0
