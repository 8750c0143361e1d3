"""Ray Tune sweeps and studies: every trial a whole experiment, judged on its samples."""
import json

import pytest
import yaml

from conftest import tiny_raw_config
from moldiff.config import ConfigError
from moldiff.metrics.report import load_report
from moldiff.sweep import expand, grid_points, load_spec, run_sweep


def write_spec(tmp_path, **spec):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_raw_config(tmp_path, "base")))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny_study", "base": "base.yaml", **spec}))
    return path


def test_spec_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="search.training.lr: give exactly one of grid, choice"):
        load_spec(write_spec(tmp_path, search={"training.lr": {"normal": [0, 1]}}))
    with pytest.raises(ConfigError, match="metricz"):
        load_spec(write_spec(tmp_path, metricz="w2"))


def test_optuna_takes_distributions_only(tmp_path):
    with pytest.raises(ConfigError, match=r"search_alg optuna .* cannot run variants or grid entries \(training.lr\)"):
        load_spec(write_spec(tmp_path, search_alg="optuna", search={"training.lr": {"grid": [1e-3, 1e-2]}}))


def test_optuna_search_proposes_trials_and_writes_the_best_config(ray_session, tmp_path):
    path = write_spec(tmp_path, search_alg="optuna", seed=0, num_samples=2, max_concurrent_trials=1,
                      search={"training.lr": {"loguniform": [1e-4, 1e-2]}}, overrides={"ray.num_sampling_actors": 1})
    summary = run_sweep(path, log=lambda m: None)
    lrs = [t["params"]["training.lr"] for t in summary["trials"] if "metrics" in t]
    assert len(lrs) == 2 and len(set(lrs)) == 2 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    from moldiff.config import load_config
    best = load_config(tmp_path / "runs" / "tiny_study" / "best.yaml")
    assert best.training.lr == summary["trials"][0]["params"]["training.lr"]
    assert best.description.startswith(f"Best trial {summary['trials'][0]['trial']} of sweep tiny_study")


def test_variants_expand_to_overrides_and_grid_points(tmp_path):
    spec, base = load_spec(write_spec(tmp_path, variants={
        "objective": {"dsm": {"objective.name": "dsm"},
                      "piecewise": {"objective.name": "psm", "objective.psm.weighting": "piecewise"}},
        "set": {"a": {"data.train.n_frames": 32}, "b": {"data.train.n_frames": 48}}}))
    assert len(grid_points(spec)) == 4
    assert expand(spec, {"variant.objective": "piecewise", "training.lr": 0.1}) == {
        "objective.name": "psm", "objective.psm.weighting": "piecewise", "training.lr": 0.1}


def test_only_runs_a_named_part_of_a_study_beside_the_full_one(tmp_path):
    variants = {"objective": {"dsm": {"objective.name": "dsm"}, "psm": {"objective.name": "psm"},
                              "both": {"objective.name": "psm"}},
                "seed": {"s0": {"seed": 0}, "s1": {"seed": 1}}}
    path = write_spec(tmp_path, variants=variants)
    spec, _ = load_spec(path, only=["objective=dsm,both"])
    assert list(spec.variants["objective"]) == ["both", "dsm"]          # the spec file's order (sorted), not the flag's
    assert list(spec.variants["seed"]) == ["s0", "s1"] and len(grid_points(spec)) == 4
    assert spec.name == "tiny_study-both-dsm" and spec.part_of == "tiny_study"
    with pytest.raises(ConfigError, match=r"variants.objective has \['both', 'dsm', 'psm'\], not \['edm'\]"):
        load_spec(path, only=["objective=edm"])
    with pytest.raises(ConfigError, match="GROUP one of"):
        load_spec(path, only=["objectives=dsm"])


def test_two_trials_each_with_a_one_cpu_worker_run_at_once_on_two_cpus(ray_session, tmp_path):
    """A trial's driver holds no CPU. Any fraction (it was 0.01) stays reserved in the trial's
    placement group, leaving 1.98 of 2 CPUs, so the second trial's 1-CPU worker waited for the
    first trial to end: studies ran one trial at a time with a core idle."""
    import time

    from ray import tune

    from moldiff.sweep import trial_resources

    spec, _ = load_spec(write_spec(tmp_path, variants={"v": {"a": {}, "b": {}}}))

    def trial(config):
        import ray

        @ray.remote(num_cpus=1, scheduling_strategy="DEFAULT")     # as a Train worker: outside the trial's group
        def worker():
            start = time.time()
            time.sleep(3)
            return [start, time.time()]
        tune.report({"window": ray.get(worker.remote())})

    results = tune.Tuner(tune.with_resources(trial, trial_resources(spec)), param_space={"v": tune.grid_search([0, 1])},
                         tune_config=tune.TuneConfig(max_concurrent_trials=2),
                         run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    windows = [r.metrics["window"] for r in results]
    assert len(windows) == 2 and max(w[0] for w in windows) < min(w[1] for w in windows), windows


def test_study_runs_trials_in_stages_and_reevaluates_finalists(ray_session, tmp_path):
    path = write_spec(
        tmp_path,
        variants={"objective": {"dsm": {"objective.name": "dsm"},
                                "piecewise": {"objective.name": "psm", "objective.psm.weighting": "piecewise"}}},
        budgets=[1, 2], finalists=1, final_overrides={"sampling.n_samples": 30},
        overrides={"ray.num_sampling_actors": 1})
    summary = run_sweep(path, log=lambda m: None)
    out = tmp_path / "runs" / "tiny_study"
    saved = json.loads((out / "summary.json").read_text())
    assert [t["params"]["variant.objective"] for t in saved["trials"]] and len(saved["trials"]) == 2
    for trial in saved["trials"]:
        run = out / trial["trial"]
        assert trial["epochs"] == 2 and 0 < trial["metrics"]["distance_tvd"] <= 1
        if trial["trial"] != summary["finalists"][0]["trial"]:     # the finalist's report is its re-evaluation
            assert trial["metrics"]["distance_tvd"] == load_report(run)["distance_tvd"].mean   # what the run wrote
        assert trial["trial"].startswith(trial["params"]["variant.objective"] + "-")
        meta = json.loads((run / "checkpoints" / "final" / "meta.json").read_text())
        assert meta["epoch"] == 2 and meta["resumed_from_epoch"] == 1        # the second stage resumed the first
        assert meta["config"]["objective"]["name"] == trial["overrides"]["objective.name"]
    final = summary["finalists"][0]
    assert json.loads((out / final["trial"] / "metrics.json").read_text())["n_samples"] == 30
    # the best trial comes out as a config that runs as it is
    from moldiff.config import load_config
    best = load_config(out / "best.yaml")
    assert best.name == "tiny_study_best" and best.training.epochs == 2
    assert best.objective.name == saved["trials"][0]["overrides"]["objective.name"]
    assert best.ray.num_sampling_actors == 1                                # the study's own overrides too
    assert (out / "summary.md").read_text().startswith("| trial |")
    # the results page: the ranking metric of every trial at both budgets, the finalist in full
    from moldiff.reporting.sweep_page import main as publish
    publish([str(out), "--output-dir", str(tmp_path / "results")])
    records = json.loads((tmp_path / "results" / "tiny_study.json").read_text())
    metric = saved["metric"]
    for trial in saved["trials"]:
        rungs = {r["metric"]: r["mean"] for r in records if r["variant"] == trial["trial"] and "@" in r["metric"]}
        assert set(rungs) == {f"{metric}@1_epochs", f"{metric}@2_epochs"}
        assert rungs[f"{metric}@2_epochs"] == trial["metrics"][metric]
    assert {r["metric"] for r in records if r["variant"] == final["trial"] and "@" not in r["metric"]} == set(final["metrics"])
    page = (tmp_path / "results" / "tiny_study.md").read_text()
    assert f"Command: `python experiments/run.py --sweep {path}`" in page and "| 1 epochs | 2 epochs |" in page


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SPECS = sorted(list((ROOT / "experiments" / "studies").glob("*.yaml")) + list((ROOT / "tuning").glob("*.yaml")))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_study_and_sweep_is_valid(path, tmp_path):
    from moldiff.sweep import trial_config
    from moldiff.train.experts import expert_configs

    spec, base = load_spec(path)
    # every grid point, with each searched key at both ends of its range
    for end in (0, -1):
        drawn = {key: _end_of(dist, end) for key, dist in spec.search.items() if "grid" not in dist}
        for point in grid_points(spec):
            # (a study trained_by another samples that one's models: those need not exist to check it)
            cfg = trial_config(base, spec, {**point, **drawn}, "check", tmp_path, probe=bool(spec.trained_by))
            assert cfg.name == "check"
            if cfg.experts:
                expert_configs(cfg)
            if spec.final_overrides:
                trial_config(base, spec, {**point, **drawn}, "check", tmp_path, extra=spec.final_overrides)


def _end_of(dist: dict, end: int):
    kind, values = next(iter(dist.items()))
    return values[end]


@pytest.fixture(scope="module")
def killed_and_resumed_study(ray_session, tmp_path_factory):
    """A DSM/PSM study whose driver (``experiments/run.py --sweep``) is killed with SIGKILL as soon
    as the first trial has reported (Tune may not have recorded it finished yet), then run again.
    What each step saw is returned for the tests below; the finished study also serves as the
    trained models of the trained_by test (every trial is a whole experiment: worth sharing)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tmp_path = tmp_path_factory.mktemp("killed_study")
    root = Path(__file__).resolve().parents[1]
    path = write_spec(tmp_path, variants={"objective": {"dsm": {"objective.name": "dsm"},
                                                        "psm": {"objective.name": "psm"}}},
                      max_concurrent_trials=1, overrides={"ray.num_sampling_actors": 1})
    out = tmp_path / "runs" / "tiny_study"
    # a second driver on the session's cluster: killing it kills its Tune trials (it owns them)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, str(root / "experiments" / "run.py"), "--sweep", str(path)],
                              cwd=tmp_path, env=env, start_new_session=True,
                              stdout=(tmp_path / "driver.log").open("w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 600
        while not list(out.glob("*/tune_report_epochs*.json")):      # the trial's report, kept in its run dir
            assert driver.poll() is None and time.time() < deadline, \
                "the study ended before it could be killed:\n" + (tmp_path / "driver.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    finished = [p.parent for p in out.glob("*/tune_report_epochs*.json")]
    summary_after_kill = (out / "summary.json").exists()
    with pytest.raises(ConfigError) as changed:                     # refused before it starts
        run_sweep(path, ["training.epochs=3"])
    log = []
    summary = run_sweep(path, ["sweep.max_concurrent_trials=2"], log=log.append)     # scheduling: free to change
    return {"tmp_path": tmp_path, "out": out, "finished": finished, "summary_after_kill": summary_after_kill,
            "changed_error": str(changed.value), "log": log, "summary": summary}


def test_a_study_whose_driver_is_killed_resumes_without_losing_a_finished_trial(killed_and_resumed_study):
    """Running the killed study again resumes it: the finished trial is kept as it was (trained,
    sampled and evaluated once), the rest run, and the summary has both; a changed spec is refused."""
    study = killed_and_resumed_study
    assert len(study["finished"]) == 1 and not study["summary_after_kill"]
    assert "base.training.epochs: 2 -> 3" in study["changed_error"]
    assert any("[sweep] resuming" in m for m in study["log"])
    trials = study["summary"]["trials"]
    assert sorted(t["params"]["variant.objective"] for t in trials if "metrics" in t) == ["dsm", "psm"]
    stages = [r["stage"] for r in json.loads((study["finished"][0] / "timings.json").read_text())]
    assert stages.count("train") == 1 and stages.count("evaluate") == 1, f"the finished trial ran again: {stages}"


def test_print_config_of_a_study_validates_every_trial_and_starts_nothing(tmp_path, capsys):
    from moldiff.cli import main
    path = write_spec(tmp_path, variants={"objective": {"dsm": {"objective.name": "dsm"},
                                                        "psm": {"objective.name": "psm"}},
                                          "seed": {"s0": {"seed": 0}, "s1": {"seed": 1}}})
    assert main(["--sweep", str(path), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "# 4 grid point(s)" in out and "# psm-s1-ID: " in out and "-> variant piecewise" in out
    assert not (tmp_path / "runs").exists()
    bad = write_spec(tmp_path, variants={"objective": {"x": {"objective.name": "nope"}}})
    assert main(["--sweep", str(bad), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "trial x-ID" in err and "unknown objective 'nope'" in err


def test_a_study_trained_by_another_samples_its_models_with_another_sampler(killed_and_resumed_study):
    tmp_path = killed_and_resumed_study["tmp_path"]
    first = killed_and_resumed_study["summary"]
    variants = {"objective": {"dsm": {"objective.name": "dsm"}, "psm": {"objective.name": "psm"}}}
    refined = tmp_path / "refined.yaml"
    refined.write_text(yaml.safe_dump({
        "name": "refined", "base": "base.yaml", "trained_by": [str(tmp_path / "runs" / "tiny_study")],
        "max_concurrent_trials": 2, "variants": {**variants, "sampler": {"langevin": {"sampling.window.langevin_steps": 5}}},
        "overrides": {"ray.num_sampling_actors": 1}}))
    second = run_sweep(refined, log=lambda m: None)
    by_objective = {t["params"]["variant.objective"]: t["run_dir"] for t in first["trials"]}
    assert len(second["trials"]) == 2
    for t in second["trials"]:
        run = tmp_path / "runs" / "refined" / t["trial"]
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["sampling"]["checkpoint"] == by_objective[t["params"]["variant.objective"]]
        assert cfg["sampling"]["window"]["langevin_steps"] == 5
        assert not (run / "checkpoints").exists() and (run / "metrics.json").is_file()     # nothing trained here
    # a study whose variants match no trained trial says so before it samples anything
    refined.write_text(yaml.safe_dump({
        "name": "orphan", "base": "base.yaml", "trained_by": [str(tmp_path / "runs" / "tiny_study")],
        "variants": {"objective": {"fp": {"objective.name": "psm", "objective.psm.weighting": "piecewise_weighted"}},
                     "other": {"a": {}}}}))
    with pytest.raises(Exception, match=r"0 of 2 finished trials match the variants"):
        run_sweep(refined, log=lambda m: None)


def test_a_changed_study_is_refused_on_resume_unless_restarted(tmp_path):
    """The differences are listed; --restart moves the old Tune state aside and keeps the trials."""
    from moldiff.sweep import STUDY_RECORD, check_resume

    out = tmp_path / "study"
    (out / "tune" / "study").mkdir(parents=True)
    (out / "trial_a").mkdir()
    started = {"spec": {"name": "study", "variants": {"o": {"dsm": {}}}, "max_concurrent_trials": 2},
               "base": {"training": {"epochs": 2}}}
    (out / STUDY_RECORD).write_text(yaml.safe_dump(started))
    check_resume(out, started, resumable=True, restart=False, log=print)                       # same study
    check_resume(out, {**started, "spec": {**started["spec"], "max_concurrent_trials": 1}}, True, False, print)
    changed = {"spec": {**started["spec"], "variants": {"o": {"dsm": {}, "psm": {}}}}, "base": {"training": {"epochs": 5}}}
    check_resume(out, changed, resumable=False, restart=False, log=print)      # nothing to resume: no check
    with pytest.raises(ConfigError) as err:
        check_resume(out, changed, resumable=True, restart=False, log=print)
    assert str(out / STUDY_RECORD) in str(err.value) and "--restart" in str(err.value)
    assert "base.training.epochs: 2 -> 5" in str(err.value) and "spec.variants.o.psm: added {}" in str(err.value)
    assert (out / "tune" / "study").is_dir()                                  # nothing moved by the refusal
    log = []
    check_resume(out, changed, resumable=True, restart=True, log=log.append)
    aside = list(out.glob("tune.replaced-*"))
    assert not (out / "tune").exists() and len(aside) == 1 and (aside[0] / "study").is_dir()
    assert (out / "trial_a").is_dir() and "2 key(s)" in log[0]
