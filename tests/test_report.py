"""One report shape for every workflow's metrics.json: entries with per-seed values, floors,
training-set values, units and labels; round trips through JSON; old flat files still load; a bad
file is an error naming it."""
import json

import numpy as np
import pytest

from moldiff.metrics.report import SCHEMA, Report, ReportError, load_report, results_table, write_results_page


def small_report() -> Report:
    r = Report("run", "dsm", "molecules", [0, 1], n_samples=10, reference="half A", floor_meaning="half B")
    r.add("distance_tvd", [0.2, 0.4], [0.05, 0.07], train_set=0.1)
    r.add("iid_js", [0.3, 0.5], 0.0, metric="js", mode="iid")
    r.add("lumo_mae", [120.0, 120.0], unit="meV")
    return r


def test_entries_summarise_their_seeds_and_keep_what_they_measured():
    r = small_report()
    e = r["distance_tvd"]
    assert e.mean == pytest.approx(0.3) and e.std == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert e.floor_mean == pytest.approx(0.06) and e.train_set == 0.1
    assert r["iid_js"].floor == [0.0] and r["iid_js"].labels == {"mode": "iid"} and r["iid_js"].metric == "js"
    assert r["lumo_mae"].floor is None and r["lumo_mae"].floor_mean is None and r["lumo_mae"].std == 0.0
    assert [x.key for x in r.select(mode="iid")] == ["iid_js"] and r.select(metric="js")[0].key == "iid_js"
    assert "lumo_mae" in r and "w2" not in r
    with pytest.raises(KeyError, match="no entry 'w2'"):
        r["w2"]
    with pytest.raises(ValueError, match="added twice"):
        r.add("iid_js", [0.1])


def test_the_report_round_trips_through_its_file(tmp_path):
    r = small_report()
    path = r.write(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA and raw["entries"][0]["mean"] == pytest.approx(0.3)
    back = load_report(tmp_path)
    assert back.to_json() == r.to_json() and back["iid_js"].labels == {"mode": "iid"}


def test_a_flat_metrics_file_of_an_older_run_loads_with_its_structure_recovered(tmp_path):
    flat = {"experiment": "mb", "variant": "fokker_planck", "seeds": [0], "n_samples": 100, "reference_split": "ref",
            "metrics": {"iid_js": {"mean": 0.3, "std": 0.0, "per_seed": [0.3]},
                        "distance_tvd": {"mean": 0.1, "std": 0.0, "per_seed": [0.1]}},
            "noise_floor": {"iid_js": {"mean": 0.05, "std": 0.0, "per_seed": [0.05]},
                            "distance_tvd": {"mean": 0.02, "std": 0.0, "per_seed": [0.02]}},
            "train_set": {"iid_js": 0.04, "distance_tvd": 0.03}}
    (tmp_path / "metrics.json").write_text(json.dumps(flat))
    r = load_report(tmp_path / "metrics.json")
    assert r.workflow == "legacy" and r.reference == "ref" and r.n_samples == 100
    assert r["iid_js"].labels == {"mode": "iid"} and r["iid_js"].metric == "js" and r["iid_js"].floor_mean == 0.05
    assert r["distance_tvd"].labels == {} and r["distance_tvd"].train_set == 0.03


@pytest.mark.parametrize("content,message", [
    (None, "no metrics report; run the 'evaluate' stage"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a metrics report is a JSON object"),
    ('{"experiment": "x"}', "not a moldiff metrics report"),
    (json.dumps({"schema": SCHEMA, "experiment": "x"}), f"a {SCHEMA} report without"),
])
def test_a_bad_metrics_file_is_an_error_naming_it(tmp_path, content, message):
    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(ReportError, match=message) as err:
        load_report(tmp_path)
    assert str(tmp_path / "metrics.json") in str(err.value)


def test_one_table_renders_every_workflow(tmp_path):
    r = small_report()
    table = results_table(r, floor_title="QM9 test molecules")
    lines = table.splitlines()
    assert lines[0] == "| metric | samples (mean ± std) | QM9 test molecules (mean ± std) | training set | unit |"
    assert lines[2] == "| distance_tvd | 0.3000 ± 0.1414 | 0.0600 ± 0.0141 | 0.1000 |  |"
    assert lines[4] == "| lumo_mae | 120.0000 ± 0.0000 | – | – | meV |"
    page_table = write_results_page(r, tmp_path, "a description")
    page = (tmp_path / "results.md").read_text()
    assert page.startswith("# run\n\na description") and "Comparison column: half B." in page and page_table in page


def test_study_tables_show_the_headline_entries_their_workflow_names():
    from moldiff.workflows import headline

    molecules = Report("r", "dsm", "molecules", [0])
    for key, metric, mode in (("distance_tvd", "distance_tvd", "iid"), ("distance_frac_outside", "distance_frac_outside",
                              "iid"), ("sim_distance_tvd", "distance_tvd", "sim"), ("hr_mae", "hr_mae", "iid")):
        molecules.add(key, [0.1], metric=metric, mode=mode)
    assert headline(molecules) == ["distance_tvd", "hr_mae", "sim_distance_tvd"]
    states = Report("r", "fokker_planck", "states", [0])
    for key in ("iid_js", "iid_pmf", "iid_diverged_fraction", "sim_js", "sim_pmf", "sim_pop_A", "gap_js"):
        mode, metric = key.split("_", 1)
        states.add(key, [0.1], metric=metric, mode=mode)
    assert headline(states) == ["iid_js", "sim_js", "iid_pmf", "sim_pmf", "sim_pop_A"]
    # a flat metrics file of an older run: the workflow is recognised by its entries
    legacy = Report.from_json({"metrics": {"distance_tvd": {"mean": 0.1, "std": 0, "per_seed": [0.1]},
                                           "diverged_fraction": {"mean": 0, "std": 0, "per_seed": [0]}},
                               "noise_floor": {}}, "old")
    assert headline(legacy) == ["distance_tvd"]


def test_a_republished_page_keeps_the_studies_it_did_not_rerun():
    from moldiff.reporting.study import previous_sections
    old_md = "\n".join(["# psm", "", "## psm_lj13_study", "", "| a | b |", "", "## psm_lj55", "", "LJ-55 table",
                        "", "## The paper's numbers", "", "paper", "", "## Notes", "", "old notes"])
    old_records = [{"study": "psm_lj13_study", "metric": "x"}, {"study": "psm_lj55", "metric": "y"}]
    kept, records = previous_sections(old_md, old_records, {"psm_lj13_study"})
    text = "\n".join(kept)
    assert text.startswith("## psm_lj55") and "LJ-55 table" in text and "Published earlier" in text
    # the republished study, the paper table and the notes are written afresh, not kept
    assert "| a | b |" not in text and "paper" not in text and "old notes" not in text
    assert records == [{"study": "psm_lj55", "metric": "y"}]
    # kept again by a later publication: still noted once
    again, _ = previous_sections("\n".join(["# psm", "", *kept]), records, {"psm_lj13_study"})
    assert "\n".join(again).strip() == "\n".join(kept).strip() and again.count(kept[2]) == 1
