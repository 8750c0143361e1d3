"""Turn a finished study (experiments/run.py --sweep ...) into docs/results/<name>.md and .json.

    python benchmarks/publish_study.py runs/psm_lj13_study --name psm --group training_set

Rows are the study's variants, columns the metrics (mean ± std over sampling seeds) with the noise
floor and the training set's own score; one h(r) plot per ``--group`` value with every objective's
samples, redrawn from the curves each run stored (``plots/hr.json``), so no dataset or sample is
read again. Hand-written analysis comes from benchmarks/notes/<name>.md; the paper's numbers from
benchmarks/paper_numbers.yaml. Several studies can be combined into one page (repeat the run dir);
the parts of one study run with ``--only`` (e.g. runs/fp_muller_brown_study-diffusion-both and
runs/fp_muller_brown_study-fokker_planck) are merged into one table. Besides the .md and .json, a
.csv holds the same records for spreadsheets.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from ..experiment import stage_seconds
from ..metrics.report import load_report
from ..plots import plot_hr, plot_study_metric
from ..workflows import headline
from ..workflows.molecules import load_hr_curves
from .archive import trial_dir
from .expectations import checks_for, judge
from .files import NOTES, RESULTS, recorded_command
from .run_page import paper_table

def trial_rows(study_dir: Path) -> list[dict]:
    summary = json.loads((study_dir / "summary.json").read_text())
    rows = []
    for t in summary["trials"]:
        if "metrics" not in t:
            continue
        run = trial_dir(study_dir, t["run_dir"])
        report = load_report(run)
        metrics = report.summary_view()
        variants = {k.split(".", 1)[1]: v for k, v in t["params"].items() if k.startswith("variant.")}
        rows.append({"study": summary["name"], "variants": variants, "run": run, "metrics": metrics,
                     "headline": headline(report),
                     "config": yaml.safe_load((run / "config.yaml").read_text()), "seconds": stage_seconds(run),
                     "command": (run / "command.txt").read_text().splitlines()[-1]})
    return rows


def study_parts(study_dirs: list[Path]) -> list[tuple[str, list[Path], dict]]:
    """The given run dirs grouped by study: a part run with ``--only`` joins the other parts of the
    study it is ``part_of``. Returns (study name, its dirs, its variant order) in first-seen order."""
    studies: dict[str, tuple[list[Path], dict]] = {}
    for study in study_dirs:
        spec = yaml.safe_load((study / "sweep.yaml").read_text())["spec"]
        dirs, order = studies.setdefault(spec.get("part_of") or spec["name"], ([], {}))
        dirs.append(study)
        for group, names in spec["variants"].items():
            order.setdefault(group, [])
            order[group] += [n for n in names if n not in order[group]]
    return [(name, dirs, order) for name, (dirs, order) in studies.items()]


def merge_seeds(rows: list[dict], group: str) -> list[dict]:
    """One row per combination of the other variant groups: each metric's mean ± std (ddof 1) over
    the trials that differ only in ``group`` (e.g. training seeds, one trial each); noise floor and
    training-set scores averaged (the trials share their data); costs are mean minutes per trial."""
    merged: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple((g, v) for g, v in r["variants"].items() if g != group)
        merged.setdefault(key, []).append(r)
    out = []
    for key, members in merged.items():
        first = members[0]

        def over(block: str, name: str) -> dict:
            values = [m["metrics"][block][name]["mean"] for m in members if name in m["metrics"][block]]
            return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "per_seed": values}
        names = sorted({k for m in members for k in m["metrics"]["metrics"]})
        metrics = {**first["metrics"], "metrics": {k: over("metrics", k) for k in names},
                   "noise_floor": {k: over("noise_floor", k) for k in names},
                   "train_set": {k: _mean_or_none([m["metrics"]["train_set"].get(k) for m in members]) for k in names},
                   "seeds": sorted(m["variants"][group] for m in members)}
        stages = {st for m in members for st in m["seconds"]}
        seconds = {st: float(np.mean([m["seconds"][st] for m in members if st in m["seconds"]])) for st in stages}
        out.append({**first, "variants": dict(key), "metrics": metrics, "seconds": seconds,
                    "members": [str(m["run"].name) for m in members]})
    return out


def _mean_or_none(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _minutes(row: dict, stage: str) -> str:
    seconds = row["seconds"].get(stage)
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"


def fmt(s: dict | None) -> str:
    if s is None:                                # a variant without this metric (a generator has no MAE)
        return "–"
    if len(s.get("per_seed", [])) == 1:          # one seed: no spread to show
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def fmt_value(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def variant_curves(members: list[dict], others: list[str]) -> dict:
    """One h(r) figure's curves from the runs' stored ones (``plots/hr.json``): the reference and
    training set once, then each run's samples named by its other variants."""
    stored = [load_hr_curves(r["run"]) for r in members]
    first = stored[0]
    for r, c in zip(members[1:], stored[1:]):
        if not np.allclose(c["r"], first["r"]):
            raise ValueError(f"{r['run']}/plots/hr.json: its h(r) grid differs from {members[0]['run']}'s "
                             "(another reference set or distance_bins); they cannot share a figure")
    curves = {"r": first["r"], "curves": {k: first["curves"][k] for k in ("reference", "training set")}, "sizes": {}}
    for r, c in zip(members, stored):
        curves["curves"]["/".join(r["variants"][g] for g in others)] = c["curves"]["samples"]
    return curves


def floor_rows(rows: list[dict], groups: list[str], metrics_shown: list[str]) -> list[str]:
    """One noise-floor row per reference dataset (the data config without its training-set choice):
    one for most studies, one per molecule when the variants change the system; labelled by the
    variant values its trials share."""
    by_floor: dict[str, list[dict]] = {}
    for r in rows:
        reference = {k: v for k, v in r["config"]["data"].items() if k != "train"}
        by_floor.setdefault(json.dumps(reference, sort_keys=True), []).append(r)
    out = []
    for members in by_floor.values():
        shared = [members[0]["variants"][g] if len({m["variants"][g] for m in members}) == 1 else "" for g in groups]
        label = "noise floor" if len(by_floor) == 1 else f"noise floor ({', '.join(v for v in shared if v)})"
        floor = {k: v for m in members for k, v in m["metrics"]["noise_floor"].items()}
        out.append(f"| {label} | " + " | " * (len(groups) - 1) + " | ".join(fmt(floor.get(k)) for k in metrics_shown) + " | | | |")
    return out


def write_csv(path: Path, records: list[dict]) -> None:
    """The records as a spreadsheet: one row per cell (variant) and metric, mean ± std over seeds."""
    import csv

    fields = list(dict.fromkeys(k for r in records for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)


KEPT_NOTE = "(Published earlier and kept as it was: this publication did not rerun it.)"


def previous_sections(old_md: str, old_records: list[dict], republished: set[str]) -> tuple[list[str], list[dict]]:
    """What an earlier publication of the page had for studies not republished now: their ``## <study>``
    sections (up to the next ``## `` heading) and their records, kept as they were."""
    studies = {r.get("study") for r in old_records} - {None} - republished
    kept, keep, opening = [], False, False
    for line in old_md.splitlines():
        if line.startswith("## "):
            keep = opening = line[3:].strip() in studies
            if keep:
                kept += [line, "", KEPT_NOTE, ""]
                continue
        if opening and line in ("", KEPT_NOTE):     # kept twice: noted once
            continue
        opening = False
        if keep:
            kept.append(line)
    return kept, [r for r in old_records if r.get("study") in studies]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study_dirs", nargs="+")
    p.add_argument("--name", required=True)
    p.add_argument("--group", action="append", default=[],
                   help="variant group that gets one h(r) plot per value (repeat for studies grouped differently)")
    p.add_argument("--title", default=None)
    p.add_argument("--aggregate", default=None, metavar="GROUP",
                   help="variant group whose trials are repeats (e.g. training_seed): one row per other variant, "
                        "mean ± std over them")
    p.add_argument("--output-dir", default=str(RESULTS), help="where the page, .json and .csv go")
    p.add_argument("--experiment-per-study", action="store_true",
                   help="records name their study as the experiment (a page of several studies, e.g. combinations)")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the sections and records the page already has for studies not given here")
    args = p.parse_args(argv)
    out = Path(args.output_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    md = [f"# {args.title or args.name}", ""]
    records = []
    for name, parts, order in study_parts([Path(d) for d in args.study_dirs]):
        rows = [row for part in parts for row in trial_rows(part)]
        if not rows:
            continue
        sweep = yaml.safe_load((parts[0] / "sweep.yaml").read_text())
        aggregated = args.aggregate in rows[0]["variants"]
        if aggregated:
            rows = merge_seeds(rows, args.aggregate)
        groups = list(rows[0]["variants"])
        # the columns: each run's headline entries, as the workflow that wrote its report names them
        metrics_shown = list(dict.fromkeys(k for r in rows for k in r["headline"]))
        md += [f"## {name}", "",
               f"Command: `{' && '.join(recorded_command(p) or f'python experiments/run.py --sweep <spec of {name}>' for p in parts)}`"
               + (f" with `--only`, run in parts ({', '.join(p.name for p in parts)})"
                  if len(parts) > 1 or sweep["spec"].get("part_of") else "")
               + f" (spec and resolved base config: {', '.join(f'`{p.name}/sweep.yaml`' for p in parts)}; each trial's "
               "run directory holds its config, command, samples and metrics).", "",
               (f"Mean ± std over the {args.aggregate} values {rows[0]['metrics']['seeds']} (one trial each, "
                f"sampling seed {rows[0]['config']['sampling']['seeds']}), {rows[0]['metrics']['n_samples']} samples per trial; "
                if aggregated else
                f"Sampling seeds {rows[0]['metrics']['seeds']}, {rows[0]['metrics']['n_samples']} samples per seed; ") +
               f"reference {rows[0]['metrics']['n_reference']} frames ({rows[0]['metrics']['reference_split']}); "
               f"noise floor from {rows[0]['metrics']['n_noise_floor_set']} independent reference frames per seed.", "",
               "Cost: wall-clock minutes of each trial's training and sampling stages (`timings.json` in its run "
               f"directory{'; mean over the repeats' if aggregated else ''}), with "
               f"{sweep['spec'].get('max_concurrent_trials', 1)} trials sharing this machine at a time.", "",
               "| " + " | ".join(groups) + " | " + " | ".join(metrics_shown) + " | train-set " + metrics_shown[0]
               + " | train min | sample min |",
               "|" + "---|" * (len(groups) + len(metrics_shown) + 3)]
        rows.sort(key=lambda r: [order[g].index(r["variants"][g]) for g in groups])
        for r in rows:
            m = r["metrics"]
            md.append("| " + " | ".join(r["variants"][g] for g in groups) + " | "
                      + " | ".join(fmt(m["metrics"].get(k)) for k in metrics_shown)
                      + f" | {fmt_value(m['train_set'].get(metrics_shown[0]))} | {_minutes(r, 'train')} | {_minutes(r, 'sample')} |")
            for k, s in m["metrics"].items():
                records.append({"experiment": r["study"] if args.experiment_per_study else args.name, "study": r["study"],
                                "variant": "/".join(r["variants"][g] for g in groups), **{f"variant_{g}": r["variants"][g] for g in groups},
                                "metric": k, "mean": s["mean"], "std": s["std"], "n_seeds": len(s["per_seed"]),
                                "seed_kind": "training" if aggregated else m.get("seed_kind", "sampling"),
                                "n_samples": m["n_samples"], "noise_floor": m["noise_floor"].get(k, {}).get("mean"),
                                "train_set": m["train_set"].get(k), "command": r["command"],
                                "train_seconds": r["seconds"].get("train"), "sample_seconds": r["seconds"].get("sample")})
        md += [*floor_rows(rows, groups, metrics_shown), ""]
        if checks_for(args.name):
            cells = {"/".join(r["variants"][g] for g in groups): {
                "metrics": {k: v["mean"] for k, v in r["metrics"]["metrics"].items()},
                "floor": {k: v["mean"] for k, v in r["metrics"]["noise_floor"].items()}} for r in rows}
            md += [f"Expected effect (the issue's), judged from this table (`benchmarks/expected_effects.yaml`):", "",
                   *judge(cells, checks_for(args.name)), ""]
        ranked = sweep["spec"]["metric"]
        if any(ranked in r["metrics"]["metrics"] for r in rows):     # the study's metric, every cell, every seed
            cells = [r for r in rows if ranked in r["metrics"]["metrics"]]
            img = out / "img" / f"{args.name}_{name}_{ranked}.png"
            plot_study_metric(img, ["/".join(r["variants"].values()) for r in cells],
                              [r["metrics"]["metrics"][ranked]["per_seed"] for r in cells],
                              cells[0]["metrics"]["noise_floor"][ranked]["mean"], ranked, name)
            md += [f"![{ranked} per variant]({'img/' + img.name})", ""]
        for r in rows:                       # state-vector runs: their free-energy maps (iid vs simulation)
            fe = r["run"] / "plots" / "free_energy.png"
            if fe.exists():
                img = out / "img" / f"{args.name}_{name}_{'_'.join(r['variants'].values())}_free_energy.png"
                img.write_bytes(fe.read_bytes())
                md += [f"![free energy, {'/'.join(r['variants'].values())}](img/{img.name})", ""]
        for group in (g for g in args.group if g in groups):
            for value in order[group]:
                members = [r for r in rows if r["variants"][group] == value]
                if not members:
                    continue
                others = [g for g in groups if g != group]
                img = out / "img" / f"{args.name}_{name}_{value}_hr.png"
                plot_hr(img, variant_curves(members, others), f"{name}: {group} = {value}")
                md += [f"![h(r), {value}](img/{img.name})", ""]
    page, page_json = out / f"{args.name}.md", out / f"{args.name}.json"
    if args.keep_previous and page.exists() and page_json.exists():
        published = {r["study"] for r in records}
        kept_md, kept_records = previous_sections(page.read_text(), json.loads(page_json.read_text()), published)
        md += kept_md + ([""] if kept_md else [])
        records += kept_records
    md += paper_table(args.name, {"experiment": args.name, "metrics": {}, "noise_floor": {}})
    notes = NOTES / f"{args.name}.md"
    if notes.exists():
        md += [notes.read_text().strip(), ""]
    (out / f"{args.name}.md").write_text("\n".join(md) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(records, indent=2) + "\n")
    write_csv(out / f"{args.name}.csv", records)
    print(f"wrote {out / (args.name + '.md')}, .json and .csv ({len(records)} records)")
    return 0
