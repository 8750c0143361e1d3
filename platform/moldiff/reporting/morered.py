"""The MoreRed relaxation benchmark as one page: docs/results/morered.md and .json.

    python benchmarks/publish_morered.py runs/morered_qm9_noise runs/morered_qm9 runs/morered_qm9_ff \
        runs/morered_qm9_generation --time runs/morered_qm9_time [--name morered]

Every run directory relaxed the same unstable inputs (the sample stage of each); its report
(``metrics.json``) holds one entry per method label, input group and statistic, labelled with
``method`` and ``group`` (ITP / AS from the noise run, JT from the joint run, FIRE and MMFF94 from
the baseline run). The page: one row per sampler over all inputs, the
median ratio and failure fraction per kind of input, the GFN2-xTB energies on the shared subset,
generation from noise where a run had ``prior`` inputs, the time predictor's |k_hat - k|, each
run's cost, the expected effect checked (issue 21, on the physical inputs: ITP's failures below
the force field's and MMFF94's, its median ratio no worse than MMFF94's, AS / JT no higher than ITP
in GFN2-xTB energy above the minimum), the throughput ratios of benchmarks/relax_throughput.py when published, the
paper's numbers (benchmarks/paper_numbers.yaml) and notes (benchmarks/notes/<name>.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..metrics.report import load_report
from ..relaxation.methods import display_label as display_name, label_order, parse_label
from .files import PAPER_NUMBERS, RESULTS, recorded_command, write_result

HEADLINE = "physical"          # ETKDG and thermal inputs (workflows.relaxation: the pooled group)
ITP, FORCE_FIELDS, CLASSICAL, ADAPTIVE_METHODS = "itp", ("fire", "lbfgs"), "mmff", ("as", "jt")


def collect(runs: list[dict]) -> dict:
    """{label: {group: {stat: {mean, std, n, floor}}}} over runs given as dicts with ``report``
    (the run's metrics report), ``name``, ``seconds`` and ``command``; plus which run each
    (label, group) came from. Entries are found by their labels (method, group), not their names."""
    table: dict = {}
    source: dict = {}
    for run in runs:
        for e in run["report"].entries:
            if "method" not in e.labels:
                continue
            label, group = e.labels["method"], e.labels["group"]
            # a method may relax in one run and generate in another, but each (method, inputs) once
            if source.setdefault((label, group), run["name"]) != run["name"]:
                raise ValueError(f"sampler {label} on {group} inputs appears in two runs: "
                                 f"{source[(label, group)]} and {run['name']}")
            table.setdefault(label, {}).setdefault(group, {})[e.metric] = {
                "mean": e.mean, "std": e.std, "n": len(e.per_seed), "floor": e.floor_mean}
    return {"table": table, "source": source}


def ordered_labels(labels) -> list[str]:
    """Labels in the registry's order, each method's thresholds ascending."""
    return sorted(labels, key=label_order)


def _cell(s: dict | None, digits: int = 3) -> str:
    if s is None:
        return "–"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['std']:.{digits}f}" if s["n"] > 1 else "")


def _best(table: dict, names, group: str, stat: str):
    """(label, value) of the lowest ``stat`` among the labels whose method is in ``names``."""
    found = [(s, table[s][group][stat]["mean"]) for s in table
             if label_method(s) in names and group in table[s] and stat in table[s][group]]
    return min(found, key=lambda x: x[1]) if found else (None, None)


def label_method(label: str) -> str:
    return parse_label(label)[0]


def expected_effect(table: dict) -> list[str]:
    """Issue 21's expectations on the physical inputs (ETKDG and thermal): MoreRed-ITP fails less often
    than the force field (FIRE or L-BFGS, the better of the two) and than MMFF94, its median ratio is
    no worse than MMFF94's, and the adaptive samplers (AS, JT, any settings) end no higher in GFN2-xTB
    energy above the minimum than ITP. Each check names the rows it compared; one not run is said so."""
    g = HEADLINE
    itp = next((s for s in ordered_labels(table) if s == ITP and g in table[s]), None)
    if itp is None:
        return [f"MoreRed-ITP has no {g} inputs in these runs: the expected effect cannot be checked yet."]
    ours = table[itp][g]
    lines = []
    for names, what in ((FORCE_FIELDS, "the force field"), ((CLASSICAL,), "MMFF94")):
        label, fail = _best(table, names, g, "failure_fraction")
        if label is None:
            lines.append(f"- Failures vs {what}: not run, cannot be checked.")
            continue
        met = ours["failure_fraction"]["mean"] < fail
        lines.append(f"- Failure fraction on {g} inputs: MoreRed-ITP {ours['failure_fraction']['mean']:.3f} vs "
                     f"{display_name(label)} {fail:.3f} ({'below: met' if met else 'not below: NOT met'}).")
    label, ratio = _best(table, (CLASSICAL,), g, "median_ratio")
    if label is not None:
        met = ours["median_ratio"]["mean"] <= ratio
        lines.append(f"- Median RMSD ratio on {g} inputs: MoreRed-ITP {ours['median_ratio']['mean']:.3f} vs "
                     f"{display_name(label)} {ratio:.3f} ({'no worse: met' if met else 'worse: NOT met'}).")
    itp_energy = table[itp].get("subset", {}).get("median_energy_above_min")
    adaptive = [s for s in ordered_labels(table) if label_method(s) in ADAPTIVE_METHODS
                and "median_energy_above_min" in table[s].get("subset", {})]
    if itp_energy is None or not adaptive:
        lines.append("- GFN2-xTB energy above the minimum, AS / JT vs ITP: not measured in these runs.")
    for s in adaptive:
        e = table[s]["subset"]["median_energy_above_min"]["mean"]
        met = e <= itp_energy["mean"]
        lines.append(f"- GFN2-xTB energy above the minimum (median, kcal/mol, the fixed energy subset): "
                     f"{display_name(s)} {e:.2f} vs MoreRed-ITP {itp_energy['mean']:.2f} "
                     f"({'at most: met' if met else 'higher: NOT met'}).")
    return lines


def _sampler_rows(table: dict, source: dict, samplers: list[str], group: str) -> list[str]:
    """One row per sampler on ``group`` inputs, then the inputs themselves (no relaxation)."""
    md = ["| sampler | run | median ratio | failure fraction | SE of ratio / failures | median RMSD after (A) | "
          "median steps | converged | GFN2 energy above min, median (kcal/mol) |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [s for s in samplers if group in table[s]]
    for s in rows:
        a, sub = table[s][group], table[s].get("subset", {})
        md.append(f"| {display_name(s)} | {source[(s, group)]} | {_cell(a.get('median_ratio'))} | "
                  f"{_cell(a.get('failure_fraction'))} | {_cell(a.get('median_ratio_se'))} / "
                  f"{_cell(a.get('failure_fraction_se'))} | {_cell(a.get('median_rmsd_after'))} | "
                  f"{_cell(a.get('median_steps'), 0)} | {_cell(a.get('converged_fraction'))} | "
                  f"{_cell(sub.get('median_energy_above_min'), 2)} |")
    if rows:
        a, sub = table[rows[0]][group], table[rows[0]].get("subset", {})
        energy = f"{sub['median_energy_above_min']['floor']:.2f}" if "median_energy_above_min" in sub else "–"
        md.append(f"| no relaxation (the inputs) | | 1 | 0 | | {a['median_rmsd_after']['floor']:.3f} | 0 | | {energy} |")
    return md


def render(collected: dict, runs: list[dict], time_run: dict | None, throughput: list[dict] | None,
           paper: dict | None) -> tuple[list[str], list[dict]]:
    table, source = collected["table"], collected["source"]
    samplers = [s for s in ordered_labels(table) if "all" in table[s]]
    first = runs[0]["report"]
    md = ["# MoreRed: relaxation by reverse diffusion on QM9 (our QM7-X stand-in)", "",
          f"{first.n_samples} unstable inputs per sampler ({first.reference}); "
          "seeds per run: " + ", ".join(f"{r['name']} {r['report'].seeds}" for r in runs) + ". "
          "Mean ± std over seeds where a run has several. Ratio = RMSD(relaxed, target) / RMSD(input, target), "
          "both after Kabsch alignment; a failure is a ratio above 1. Comparison row: no relaxation.", "",
          "Sampling error (SE): the std of the median ratio and of the failure fraction over 1,000 bootstrap "
          "resamples of the inputs, the noise floor for comparing two rows. The GFN2-xTB energy column is on one "
          "fixed subset of the inputs (every kind, drawn from the input ids), the same in every table.", ""]
    if any(HEADLINE in table[s] for s in samplers):
        md += ["## Physical inputs (ETKDG and thermal): the headline", "",
               "The inputs a relaxer meets in practice: a conformer generator's guess (ETKDG) and a hot geometry "
               "(the last frame of a short GFN2-xTB run at the inputs' temperature).", "",
               *_sampler_rows(table, source, samplers, HEADLINE), ""]
    else:
        md += ["(These runs were evaluated before the physical-input group existed: evaluate them again "
               "(`--stages evaluate`) for the headline table.)", ""]
    md += ["## All inputs", "",
           "Including the forward-diffusion inputs, MoreRed's own training corruption (the majority of the "
           "inputs when their kinds include several diffusion steps).", "",
           *_sampler_rows(table, source, samplers, "all")]
    kinds = sorted({g for s in samplers for g in table[s]} - {"all", HEADLINE, "subset", "prior"})
    for stat, title in (("median_ratio", "Median RMSD ratio by kind of input"),
                        ("failure_fraction", "Failure fraction by kind of input")):
        md += ["", f"## {title}", "", "| sampler | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        for s in samplers:
            md.append(f"| {display_name(s)} | " + " | ".join(_cell(table[s].get(k, {}).get(stat)) for k in kinds) + " |")
        if samplers and stat == "median_ratio":
            md.append("| input RMSD (A, median) | " + " | ".join(
                f"{table[samplers[0]][k]['median_rmsd_after']['floor']:.3f}" if k in table[samplers[0]] else "–"
                for k in kinds) + " |")
    generated = [s for s in ordered_labels(table) if "prior" in table[s]]
    if generated:
        stats = ("validity", "uniqueness", "valid_and_unique", "novelty", "molecule_stability", "median_steps")
        if any("posebusters_all" in table[s]["prior"] for s in generated):       # evaluation.posebusters
            stats = stats[:-1] + ("posebusters_all", "median_steps")
        md += ["", "## Generation from noise (inputs of kind `prior`)", "",
               "| sampler | run | " + " | ".join(stats) + " |", "|---|---|" + "---|" * len(stats)]
        for s in generated:
            md.append(f"| {display_name(s)} | {source[(s, 'prior')]} | "
                      + " | ".join(_cell(table[s]["prior"].get(k), 0 if k == "median_steps" else 3) for k in stats) + " |")
        ref = table[generated[0]]["prior"]
        md.append("| the test molecules themselves | | " + " | ".join(
            f"{ref[k]['floor']:.3f}" if k in ref and k != "median_steps" else "–" for k in stats) + " |")
    if time_run:
        entries = time_run["report"].select(metric="time_abs_error")
        tm = sorted((e for e in entries if e.labels["k"].isdigit()), key=lambda e: int(e.labels["k"]))
        md += ["", f"## Time predictor ({time_run['name']}): mean abs(k_hat - k) in steps on "
               f"{time_run['report'].n_samples} validation molecules diffused to step k", "",
               "| " + " | ".join(f"k = {e.labels['k']}" for e in tm) + " |", "|" + "---|" * len(tm),
               "| " + " | ".join(f"{e.mean:.1f}" for e in tm) + " |"]
        clean = {e.labels.get("rule", "mean_first"): e.mean for e in entries if e.labels["k"] == "clean"}
        if clean:         # runs evaluated since the clean-structure check exists
            md += ["", f"On the clean validation structures (target 0) it reads step {clean['mean_first']:.1f} "
                   f"(averaging the atoms' times, then clamping), {clean.get('clamp_first', float('nan')):.1f} "
                   "clamping each atom first (the earlier rule)."]
    md += ["", "## Expected effect (issue 21, on the physical inputs)", "", *expected_effect(table)]
    md += ["", "## Cost", "", "| run | command | minutes per stage |", "|---|---|---|"]
    for run in runs + ([time_run] if time_run else []):
        md.append(f"| {run['name']} | `{run['command']}` | "
                  + ", ".join(f"{k} {v / 60:.1f}" for k, v in run["seconds"].items()) + " |")
    if throughput:
        settings = [r for r in throughput if "setting" in r]
        ratios = next((r for r in throughput if "ratio_batched_vs_single" in r), None)
        md += ["", "## Throughput (benchmarks/relax_throughput.py, docs/results/morered_throughput.md; all "
               "measured in one run)", "", "| setting | molecules | wall s | molecules / s |", "|---|---|---|---|"]
        md += [f"| {r['setting']} | {r['molecules']} | {r['seconds']:.1f} | {r['molecules_per_s']:.2f} |" for r in settings]
        if ratios:
            md += ["", f"Continuous batching vs one molecule at a time: **{ratios['ratio_batched_vs_single']:.2f} x** "
                   f"(same relaxed molecules: {ratios['same_molecules']}); 2 actors vs 1: "
                   f"**{ratios['ratio_2_vs_1_actors']:.2f} x**."]
    if paper:
        md += ["", "## The paper's numbers", "", f"Paper: {paper['source']}.", "", "| method | metric | value |",
               "|---|---|---|"] + [f"| {r['method']} | {r['metric']} | {r['value']} |" for r in paper["rows"]]
    records = [{"experiment": "morered", "variant": f"{s}/{g}", "metric": stat, "mean": v["mean"], "std": v["std"],
                "n_seeds": v["n"], "seed_kind": "sampling", "n_samples": first.n_samples, "noise_floor": v["floor"],
                "command": next(r["command"] for r in runs if r["name"] == source[(s, g)])}
               for s in table for g in table[s] for stat, v in table[s][g].items()]
    return md, records


def relaxation_pictures(runs: list[dict], name: str) -> list[str]:
    """Each run's ``plots/relaxations.png`` (inputs beside what its methods made of them), copied
    into docs/results/img."""
    md = []
    for run in runs:
        png = run["path"] / "plots" / "relaxations.png"
        if png.is_file():
            target = RESULTS / "img" / f"{name}_{run['name']}_relaxations.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(png.read_bytes())
            md += ["", f"![relaxations of {run['name']}](img/{target.name})"]
    return (["", "## Pictures (first sampling seed; atoms with a wrong valence by EDM's rule in red)"] + md) if md else []


def load_run(path: Path) -> dict:
    from ..experiment import stage_seconds

    from ..metrics.report import ReportError
    try:
        report = load_report(path)
    except ReportError as err:
        raise SystemExit(f"error: {err}") from None
    return {"name": path.name, "path": path, "report": report, "seconds": stage_seconds(path),
            "command": recorded_command(path) or "(not recorded)"}


def main(argv=None) -> int:
    import yaml

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories that relaxed the inputs (noise, joint, baselines)")
    p.add_argument("--time", default=None, help="the time predictor's run directory")
    p.add_argument("--name", default="morered")
    args = p.parse_args(argv)
    runs = [load_run(Path(r)) for r in args.runs]
    time_run = load_run(Path(args.time)) if args.time else None
    throughput_file = RESULTS / "morered_throughput.json"
    throughput = json.loads(throughput_file.read_text()) if throughput_file.exists() else None
    paper = yaml.safe_load(PAPER_NUMBERS.read_text()).get("morered")
    md, records = render(collect(runs), runs, time_run, throughput, paper)
    md += relaxation_pictures(runs, args.name)
    write_result(RESULTS / args.name, md, records)
    print(f"wrote docs/results/{args.name}.md and .json ({len(records)} records)")
    return 0
