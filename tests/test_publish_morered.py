"""The MoreRed results page: samplers from several runs merged into one table, the expected
effect (ITP or JT below the force field in median ratio and failures) checked from the numbers."""
import pytest

from moldiff.metrics.report import Report
from moldiff.reporting.morered import collect, expected_effect, render


def run(name, values: dict, seeds=(0,)):
    """A run whose report holds ``values`` ({(method, group, stat): per-seed list}) with the floors
    of no relaxation."""
    report = Report(name, "morered_joint", "relaxation", list(seeds), n_samples=10,
                    reference="inputs from test molecules")
    for (label, group, stat), v in values.items():
        floor = 1.0 if stat == "median_ratio" else 0.4 if stat == "median_rmsd_after" else 0.0
        # the key is deliberately not <label>_<group>_<stat>: the page reads labels, not names
        report.add(f"entry{len(report.entries)}", v, floor, metric=stat, method=label, group=group)
    return {"name": name, "command": f"python experiments/run.py {name}.yaml", "seconds": {"train": 600.0, "sample": 120.0},
            "report": report}


def relaxed(sampler, ratio, failures, kinds=("etkdg", "thermal"), physical=None):
    """Every group at ``ratio`` / ``failures``, the physical group at ``physical`` (ratio, failures)."""
    out = {}
    for group in ("all", "physical", *kinds):
        if group == "physical" and physical is not None:
            out.update({(sampler, group, "median_ratio"): [physical[0]], (sampler, group, "failure_fraction"): [physical[1]],
                        (sampler, group, "median_rmsd_after"): [0.4 * physical[0]], (sampler, group, "median_steps"): [50.0],
                        (sampler, group, "converged_fraction"): [1.0]})
            continue
        out.update({(sampler, group, "median_ratio"): [ratio], (sampler, group, "failure_fraction"): [failures],
                    (sampler, group, "median_rmsd_after"): [0.4 * ratio], (sampler, group, "median_steps"): [50.0],
                    (sampler, group, "converged_fraction"): [1.0]})
    return out


def test_samplers_of_several_runs_merge_and_the_expected_effect_is_judged_on_the_physical_inputs():
    energy = lambda label, e: {(label, "subset", "median_energy_above_min"): [e]}     # noqa: E731
    runs = [run("noise", {**relaxed("itp", 0.3, 0.05, physical=(0.9, 0.08)), **relaxed("as", 0.5, 0.2),
                          **energy("itp", 9.4), **energy("as", 17.0)}),
            run("joint", {**relaxed("jt", 0.7, 0.4), **relaxed("jt-kmin19-denoised", 0.6, 0.3), **energy("jt", 9.0),
                          **energy("jt-kmin19-denoised", 8.0)}),
            run("ff", {**relaxed("fire", 0.6, 0.1, physical=(0.86, 0.3)), **relaxed("lbfgs", 0.6, 0.1, physical=(0.85, 0.2)),
                       **relaxed("mmff", 0.9, 0.3, physical=(0.8, 0.1))})]
    collected = collect(runs)
    assert {s: r for (s, g), r in collected["source"].items() if g == "all"} == {
        "itp": "noise", "as": "noise", "jt": "joint", "jt-kmin19-denoised": "joint", "fire": "ff", "lbfgs": "ff",
        "mmff": "ff"}
    effect = expected_effect(collected["table"])
    # failures: ITP 0.08 below the better force field (L-BFGS 0.2) and MMFF94 (0.1); ratio 0.9 worse than MMFF94's 0.8
    assert "MoreRed-ITP 0.080 vs PaiNN force field + L-BFGS (ASE) 0.200 (below: met)" in effect[0]
    assert "MoreRed-ITP 0.080 vs MMFF94 (RDKit) 0.100 (below: met)" in effect[1]
    assert "MoreRed-ITP 0.900 vs MMFF94 (RDKit) 0.800 (worse: NOT met)" in effect[2]
    assert "MoreRed-AS 17.00 vs MoreRed-ITP 9.40 (higher: NOT met)" in effect[3]
    assert "MoreRed-JT 9.00 vs MoreRed-ITP 9.40 (at most: met)" in effect[4]
    assert "MoreRed-JT (k_min 19, final denoising) 8.00 vs MoreRed-ITP 9.40 (at most: met)" in effect[5]
    md, records = render(collected, runs, None, None, None)
    text = "\n".join(md)
    headline = text.index("## Physical inputs (ETKDG and thermal): the headline")
    assert headline < text.index("## All inputs")
    assert text.index("| MoreRed-ITP | noise | 0.900 | 0.080 |") > headline
    assert "| MoreRed-ITP | noise | 0.300 | 0.050 |" in text and "| no relaxation (the inputs) | | 1 | 0 | | 0.400 |" in text
    assert "| sampler | etkdg | thermal |" in text
    assert {r["variant"].split("/")[0] for r in records} == {"itp", "as", "jt", "jt-kmin19-denoised", "fire", "lbfgs", "mmff"}


def test_generation_from_its_own_run_joins_the_page():
    generated = {(s, "prior", k): [v] for s in ("ddpm", "as")
                 for k, v in (("validity", 0.8), ("uniqueness", 0.9), ("median_steps", 1000.0))}
    runs = [run("noise", relaxed("as", 0.5, 0.2)), run("generation", generated)]
    collected = collect(runs)
    assert collected["source"][("as", "all")] == "noise" and collected["source"][("as", "prior")] == "generation"
    text = "\n".join(render(collected, runs, None, None, None)[0])
    assert "| MoreRed-AS | generation | 0.800 | 0.900 |" in text and "| DDPM (fixed schedule) | generation |" in text


def test_without_itp_or_a_baseline_the_effect_is_not_claimed_and_a_sampler_in_two_runs_is_an_error():
    assert "cannot be checked" in expected_effect(collect([run("joint", relaxed("jt", 0.7, 0.4))])["table"])[0]
    alone = expected_effect(collect([run("noise", relaxed("itp", 0.3, 0.05))])["table"])
    assert alone[0] == "- Failures vs the force field: not run, cannot be checked." and "not measured" in alone[-1]
    with pytest.raises(ValueError, match="sampler jt on all inputs appears in two runs: a and b"):
        collect([run("a", relaxed("jt", 0.7, 0.4)), run("b", relaxed("jt", 0.5, 0.4))])


def test_thresholds_are_rows_of_their_own_and_throughput_ratios_are_shown():
    runs = [run("joint", {**relaxed("jt", 0.9, 0.4), **relaxed("jt-kmin19", 0.6, 0.2)}),
            run("ff", relaxed("fire", 0.7, 0.3))]
    collected = collect(runs)
    assert collected["source"][("jt-kmin19", "all")] == "joint"
    throughput = [{"setting": "one molecule at a time", "seconds": 20.0, "molecules": 10, "molecules_per_s": 0.5},
                  {"setting": "continuous batching", "seconds": 4.0, "molecules": 10, "molecules_per_s": 2.5},
                  {"ratio_batched_vs_single": 5.0, "ratio_2_vs_1_actors": 1.8, "same_molecules": True}]
    text = "\n".join(render(collected, runs, None, throughput, None)[0])
    rows = [line for line in text.splitlines() if line.startswith("| MoreRed-JT")]
    assert rows[0].startswith("| MoreRed-JT | joint | 0.900") and rows[1].startswith("| MoreRed-JT (k_min 19) | joint | 0.600")
    assert "| continuous batching | 10 | 4.0 | 2.50 |" in text and "**5.00 x**" in text and "**1.80 x**" in text


def test_a_run_evaluated_before_reports_had_labels_still_loads_into_the_page(tmp_path):
    """metrics.json as runs wrote it before the report schema: flat keys, blocks of mean/std/per_seed."""
    import json

    from moldiff.metrics.report import load_report
    flat = {"experiment": "old", "variant": "morered_noise", "seeds": [0], "n_samples": 10,
            "reference_split": "inputs from test molecules",
            "metrics": {"itp_all_median_ratio": {"mean": 0.8, "std": 0.0, "per_seed": [0.8]},
                        "as-kmin23_thermal_failure_fraction_se": {"mean": 0.01, "std": 0.0, "per_seed": [0.01]}},
            "noise_floor": {"itp_all_median_ratio": {"mean": 1.0, "std": 0.0, "per_seed": [1.0]},
                            "as-kmin23_thermal_failure_fraction_se": {"mean": 0.0, "std": 0.0, "per_seed": [0.0]}},
            "train_set": {"itp_all_median_ratio": 1.0, "as-kmin23_thermal_failure_fraction_se": 0.0}}
    (tmp_path / "metrics.json").write_text(json.dumps(flat))
    report = load_report(tmp_path)
    assert report["as-kmin23_thermal_failure_fraction_se"].labels == {"method": "as-kmin23", "group": "thermal"}
    table = collect([{"name": "old", "report": report, "command": "", "seconds": {}}])["table"]
    assert table["itp"]["all"]["median_ratio"] == {"mean": 0.8, "std": 0.0, "n": 1, "floor": 1.0}
    assert table["as-kmin23"]["thermal"]["failure_fraction_se"]["mean"] == 0.01
