"""Results pages judge the issues' expected effects by rule (benchmarks/expected_effects.yaml)."""
from moldiff.reporting.expectations import checks_for, judge


def cells(**variants):
    return {name: {"metrics": m, "floor": {"iid_js": 0.01}} for name, m in variants.items()}


def test_values_other_variants_and_the_floor_are_judged_and_missing_numbers_are_not_passed():
    checks = [{"variant": "both", "metric": "sim_js", "op": "<=", "value": 0.015},
              {"variant": "both", "metric": "sim_js", "op": "<=", "factor": 0.5, "of_variant": "diffusion"},
              {"variant": "*", "metric": "iid_js", "op": "<=", "factor": 1.5, "of": "noise_floor"},
              {"variant": "unigem", "metric": "lumo_mae", "op": "<=", "factor": 0.9, "of_variant": "predictor"}]
    lines = judge(cells(diffusion={"sim_js": 0.08, "iid_js": 0.016}, both={"sim_js": 0.016, "iid_js": 0.012}), checks)
    assert lines[0] == "- both: sim_js 0.016 <= 0.015: **NOT met**"
    assert lines[1] == "- both: sim_js 0.016 <= 0.5 x diffusion's 0.08 (= 0.04): met"
    assert lines[2].startswith("- diffusion: iid_js 0.016 <= 1.5 x the noise floor 0.01") and "**NOT met**" in lines[2]
    assert lines[3].endswith(": met")
    assert "cannot be judged yet" in lines[4]                      # no unigem in this study


def test_the_shipped_expectations_name_known_comparisons():
    for name in ("fokker_planck", "unigem"):
        for check in checks_for(name):
            assert check["op"] in ("<=", ">=", "<", ">")
            assert ("value" in check) + ("of_variant" in check) + (check.get("of") == "noise_floor") == 1, check
