"""Sweeps and studies with Ray Tune: every trial is a whole experiment.

A trial trains through Ray Train (a ``TorchTrainer`` built inside the Tune function trainable,
the Train V2 pattern), samples in Ray actors and evaluates against the reference, so it is
judged on *generated samples* (e.g. distance TVD), never on the training loss, which is not
comparable between objectives whose targets differ. With ``budgets`` a trial trains in stages,
resuming its own checkpoint, and reports after each stage, so ASHA can stop poor trials early.

A sweep spec (YAML):

    name: psm_lj13_sweep
    base: ../experiments/configs/psm/lj13.yaml      # relative to this file
    metric: distance_tvd                              # a metric of metrics.json, mean over seeds
    mode: min
    search:                                           # dotted config keys -> a distribution
      objective.psm.weighting: {grid: [piecewise, piecewise_weighted]}
      objective.psm.t_p: {loguniform: [0.01, 0.2]}
      diffusion.sigma_min: {choice: [0.01, 0.03, 0.1]}
    num_samples: 4                                    # draws of the random parts (x the grid)
    search_alg: basic                                 # or optuna (TPE; distributions only), with seed
    budgets: [100, 200, 375]                          # epochs at which a trial samples and reports
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    max_concurrent_trials: 2
    overrides: {sampling.n_samples: 256}              # every trial (cheap in-sweep evaluation)
    finalists: 2                                      # re-evaluate the best trials ...
    final_overrides: {sampling.n_samples: 1000}       # ... with these settings

A study (e.g. objective x training set) is a sweep with only ``grid`` entries and one budget.
Each trial's run directory is ``<output_dir>/<name>/<trial>``; the sweep writes ``summary.md``
and ``summary.json`` beside them.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .atomic import write_text
from .config import ConfigError, ExperimentConfig, absolute_paths, apply_overrides, load_raw, validate_config
from .plugins import registered as registered_plugins


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerSpec(_Spec):
    type: Literal["asha"] = "asha"
    grace_period: int = Field(1, ge=1, description="budgets a trial gets before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)


class SweepSpec(_Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    base: str
    metric: str = "distance_tvd"
    mode: Literal["min", "max"] = "min"
    search: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, dict[str, Any]]] = Field(
        default_factory=dict, description="named groups of overrides; the sweep runs the grid over every group"
    )
    num_samples: int = Field(1, ge=1)
    search_alg: Literal["basic", "optuna"] = Field(
        "basic", description="basic: Tune's grid and random draws; optuna: TPE proposals from the finished trials "
        "(search distributions only, no grid entries or variants)")
    seed: Optional[int] = Field(None, description="seed of the search algorithm's draws")
    budgets: Optional[list[int]] = Field(None, min_length=1)
    scheduler: Optional[SchedulerSpec] = None
    max_concurrent_trials: int = Field(2, ge=1)
    trial_cpus: float = Field(0.0, ge=0, description="CPUs held by each trial's driver (it mostly waits on its "
                              "Train run and actors, which hold their own)")
    overrides: dict[str, Any] = Field(default_factory=dict)
    finalists: int = Field(0, ge=0)
    final_overrides: dict[str, Any] = Field(default_factory=dict)
    part_of: Optional[str] = Field(None, description="the study this run is a part of (set by --only)")
    trained_by: list[str] = Field(default_factory=list, description="study directories (the parts of one study) "
                                  "whose trials trained the models: each trial here trains nothing and samples from "
                                  "the trial there with the same values of the variant groups both have "
                                  "(sampling.checkpoint), so another sampler is judged on the same models")


DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")


def load_spec(path: str | Path, spec_overrides: list[str] | None = None,
              only: list[str] | None = None) -> tuple[SweepSpec, dict]:
    """The sweep spec (with ``key=value`` overrides of its own fields) and its base experiment
    config (raw, ``extends`` resolved). ``only`` (``group=name[,name]``) restricts the study to
    some variants; see :func:`restrict`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep spec not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        raw = apply_overrides(raw, spec_overrides or [])
        spec = SweepSpec.model_validate(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except ValidationError as err:
        lines = [f"invalid sweep spec {path}:"]
        for e in err.errors():
            lines.append(f"  {'.'.join(map(str, e['loc']))}: {e['msg']}")
        raise ConfigError("\n".join(lines)) from None
    for group, names in spec.variants.items():
        if not names:
            raise ConfigError(f"{path}: variants.{group} is empty")
    for key, dist in spec.search.items():
        if isinstance(dist, dict) and (len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS):
            raise ConfigError(f"{path}: search.{key}: give exactly one of {', '.join(DISTRIBUTIONS)}, got {dist}")
    if spec.search_alg == "optuna":
        grids = [k for k, d in spec.search.items() if isinstance(d, dict) and "grid" in d]
        if spec.variants or grids:
            raise ConfigError(f"{path}: search_alg optuna proposes values from distributions; it cannot run "
                              f"variants or grid entries ({', '.join(list(spec.variants) + grids)})")
    if only:
        spec = restrict(spec, only, path)
    if spec.trained_by:     # relative to where the command runs, like every other path on the command line
        spec = spec.model_copy(update={"trained_by": [str(Path(d).expanduser().resolve()) for d in spec.trained_by]})
        if spec.budgets:
            raise ConfigError(f"{path}: trained_by samples trained models; it cannot train in budgets")
    base = load_raw(path.parent / spec.base)
    return spec, base


def restrict(spec: SweepSpec, only: list[str], path: Path | str = "sweep spec") -> SweepSpec:
    """The study cut down to the named variants (``group=name[,name]``), renamed
    ``<name>-<names>`` so that its runs land beside, not inside, the full study's (Tune would
    otherwise resume the full study's grid) and marked ``part_of`` the full study, which
    publishing merges. A long study can so run in parts, in separate sessions or on separate
    clusters."""
    variants = {g: dict(v) for g, v in spec.variants.items()}
    picked = []
    for text in only:
        group, sep, names = text.partition("=")
        if not sep or group not in variants:
            raise ConfigError(f"{path}: --only {text!r}: give GROUP=NAME[,NAME...] with GROUP one of {sorted(variants)}")
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in variants[group]]
        if unknown or not wanted:
            raise ConfigError(f"{path}: --only {text!r}: variants.{group} has {sorted(variants[group])}, not {unknown or wanted}")
        variants[group] = {n: variants[group][n] for n in variants[group] if n in wanted}
        picked += [n for n in variants[group]]
    return spec.model_copy(update={"variants": variants, "name": f"{spec.name}-{'-'.join(picked)}",
                                   "part_of": spec.part_of or spec.name})


def _dotted(values: dict[str, Any]) -> list[str]:
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def expand(spec: SweepSpec, params: dict) -> dict:
    """Tune params -> dotted overrides (``variant.<group>: <name>`` becomes that variant's overrides)."""
    out = {}
    for key, value in params.items():
        if key.startswith("variant."):
            group = key.split(".", 1)[1]
            out.update(spec.variants[group][value])
        else:
            out[key] = value
    return out


def trial_name(spec: SweepSpec, params: dict, trial_id: str) -> str:
    named = [str(params[f"variant.{g}"]) for g in spec.variants if f"variant.{g}" in params]
    return "-".join(named + [trial_id])


def trained_trial(spec: SweepSpec, params: dict) -> str:
    """The run directory of the ``trained_by`` trial whose variants match ``params`` on the groups
    both studies have (exactly one must)."""
    mine = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("variant.")}
    matches, seen, missing = [], 0, []
    for study in spec.trained_by:
        summary_path = Path(study) / "summary.json"
        if not summary_path.is_file():       # a part not run yet: the trials that need it say so below
            missing.append(str(summary_path))
            continue
        for t in json.loads(summary_path.read_text())["trials"]:
            if "metrics" not in t:
                continue
            seen += 1
            theirs = {k.split(".", 1)[1]: v for k, v in t["params"].items() if k.startswith("variant.")}
            shared = set(mine) & set(theirs)
            if shared and all(mine[g] == theirs[g] for g in shared):
                matches.append(t["run_dir"])
    if len(matches) != 1:
        raise ConfigError(f"trained_by {spec.trained_by}: {len(matches)} of {seen} finished trials match the variants "
                          f"{mine} (need exactly one)" + (f"; not run yet: {', '.join(missing)}" if missing else ""))
    return matches[0]


def trial_config(base: dict, spec: SweepSpec, params: dict, name: str, output_dir: Path,
                 extra: Optional[dict] = None, probe: bool = False) -> ExperimentConfig:
    """``probe``: for preparing data and dry runs, without resolving ``trained_by``."""
    if spec.trained_by and not probe:
        extra = {"sampling.checkpoint": trained_trial(spec, params), **(extra or {})}
    raw = apply_overrides(base, _dotted({**spec.overrides, **expand(spec, params), **(extra or {})}))
    raw.update(name=name, output_dir=str(output_dir))
    return validate_config(raw, source=f"sweep {spec.name}, trial {name}")


def param_space(spec: SweepSpec) -> dict:
    from ray import tune

    space = {f"variant.{group}": tune.grid_search(list(names)) for group, names in spec.variants.items()}
    for key, dist in spec.search.items():
        if not isinstance(dist, dict):
            space[key] = dist
            continue
        (kind, args), = dist.items()
        space[key] = {"grid": lambda a: tune.grid_search(list(a)), "choice": lambda a: tune.choice(list(a)),
                      "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a),
                      "randint": lambda a: tune.randint(*a)}[kind](args)
    return space


def grid_points(spec: SweepSpec) -> list[dict]:
    """Every combination of the grid entries (random entries left out): for preparing data up front."""
    points = [{}]
    for group, names in spec.variants.items():
        points = [{**p, f"variant.{group}": n} for p in points for n in names]
    for key, dist in spec.search.items():
        if isinstance(dist, dict) and "grid" in dist:
            points = [{**p, key: v} for p in points for v in dist["grid"]]
    return points


def _trial(params: dict, base: dict, spec_raw: dict, output_dir: str, plugins: dict | None = None) -> None:
    """One Tune trial: train in stages, after each sample + evaluate + report."""
    from ray import tune

    from .experiment import run_experiment
    from .plugins import install

    install(plugins)                       # objectives registered outside the package, in the driver
    spec = SweepSpec.model_validate(spec_raw)
    name = trial_name(spec, params, tune.get_context().get_trial_id())
    cfg = trial_config(base, spec, params, name, Path(output_dir))
    budgets = spec.budgets or [cfg.training.epochs]
    for budget in budgets:
        stage = trial_config(base, spec, params, name, Path(output_dir),
                             {"training.epochs": budget, "training.schedule_epochs": max(budgets)})
        # a trial restarted after its driver died (Tune had not recorded it finished) replays the
        # budgets it already reported instead of sampling and evaluating them again
        kept = stage.run_dir / f"tune_report_epochs{budget}.json"
        if kept.exists():
            print(f"[sweep] {name}: budget {budget} already reported, replaying {kept}", flush=True)
            tune.report(json.loads(kept.read_text()))
            continue
        result = run_experiment(stage, command=f"sweep {spec.name} trial {name} params {json.dumps(params)}",
                                log=lambda m: print(m, flush=True))
        report = tune_values(result)
        # a study may compare variants that do not all have the ranking metric (a generator without a
        # property head in a study ranked on property MAE): NaN, ranked last, instead of a failed trial
        report.setdefault(spec.metric, math.nan)
        # what the metrics were computed on: the generated samples, or without sampling the evaluation set
        report.update(epochs=budget, run_dir=str(stage.run_dir), n_samples=result.n_samples or result.n_reference)
        write_text(kept, json.dumps(report) + "\n")
        tune.report(report)


def tune_values(report) -> dict:
    """What a trial reports to Tune from its run's report: each entry's mean, std and noise floor
    under flat names (``<key>``, ``<key>_std``, ``noise_floor_<key>``), what sweep specs rank on."""
    values = {e.key: e.mean for e in report.entries}
    values.update({f"{e.key}_std": e.std for e in report.entries})
    values.update({f"noise_floor_{e.key}": e.floor_mean for e in report.entries if e.floor is not None})
    return values


def search_algorithm(spec: SweepSpec):
    """Tune's grid and random draws (seeded with ``seed``) or Optuna's TPE."""
    if spec.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch
        return OptunaSearch(metric=spec.metric, mode=spec.mode, seed=spec.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator
    # given explicitly, the generator must carry the concurrency limit itself: Tune ignores
    # max_concurrent_trials for a generator it did not make
    return BasicVariantGenerator(random_state=spec.seed, max_concurrent=spec.max_concurrent_trials)


# Tune needs a non-empty bundle per trial; a driver that holds no CPU reserves this much memory
TRIAL_DRIVER_MEMORY = 64 * 2**20


def trial_resources(spec: SweepSpec) -> dict:
    """What a trial's driver holds. By default no CPU: any fraction (0.01 per trial) leaves
    2 - 0.02 CPUs on a 2-CPU node, where the second trial's 1-CPU worker no longer fits, so trials
    ran one at a time with a core idle."""
    return {"CPU": spec.trial_cpus, "memory": TRIAL_DRIVER_MEMORY}


def split_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``sweep.<field>=...`` overrides go to the spec, the rest to the base config."""
    spec = [o[len("sweep."):] for o in overrides if o.startswith("sweep.")]
    return spec, [o for o in overrides if not o.startswith("sweep.")]


STUDY_RECORD = "sweep.yaml"         # the spec and base config a study's trials were started with
# spec fields that decide how trials are scheduled, not what they compute: free to change on resume
SCHEDULING_FIELDS = ("max_concurrent_trials", "trial_cpus")


def check_resume(out: Path, study: dict, resumable: bool, restart: bool, log: Callable[[str], None]) -> None:
    """A study resumed from its Tune state must be the study that was started: a changed spec or
    base config is an error listing the differences, unless ``restart``, which moves the old Tune
    state aside (``tune.replaced-<time>``; the old trials' run directories stay) and starts over."""
    from .config import dotted_changes

    record = out / STUDY_RECORD
    if not (resumable and record.exists()):
        return
    stored = yaml.safe_load(record.read_text()) or {}

    def compared(s: dict) -> dict:
        return {"spec": {k: v for k, v in (s.get("spec") or {}).items() if k not in SCHEDULING_FIELDS},
                "base": s.get("base") or {}}
    changes = dotted_changes(compared(stored), compared(study))
    if not changes:
        return
    if not restart:
        shown = "\n  ".join(changes[:20]) + (f"\n  ... and {len(changes) - 20} more" if len(changes) > 20 else "")
        raise ConfigError(f"{record}: this study was started with a different spec or base config, and resuming "
                          f"would mix trials of both:\n  {shown}\nrun it as it was, give the study a new name "
                          "(sweep.name=...), or pass --restart to start it over (its old Tune state is kept aside)")
    aside = out / f"tune.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / "tune").rename(aside)
    log(f"[sweep] --restart: the spec changed ({len(changes)} key(s)); the old Tune state is now {aside}")


def run_sweep(spec_path: str | Path, overrides: list[str] | None = None,
              log: Callable[[str], None] = print, only: list[str] | None = None, restart: bool = False) -> dict:
    """Run a sweep or study; returns the summary (also written as summary.json / summary.md).

    ``overrides``: ``sweep.<field>=value`` change the spec (e.g. ``sweep.num_samples=1``), all
    others the base experiment config. ``only``: run a part of a study (:func:`restrict`).
    ``restart``: start over a study whose spec changed since its trials started (:func:`check_resume`)."""
    spec_overrides, base_overrides = split_overrides(overrides or [])
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from .data.sources import prepare_data
    from .experiment import run_experiment
    from .runtime import connect

    started = time.time()
    spec, base = load_spec(spec_path, spec_overrides, only)
    # trials run with the trial directory as working directory: make every path absolute here
    base = absolute_paths(apply_overrides(base, base_overrides or []))
    probe = validate_config(apply_overrides(base, _dotted(spec.overrides)), source=str(spec_path))
    for point in grid_points(spec) if spec.trained_by else []:
        trained_trial(spec, point)          # every trial has its trained model, before anything starts
    out = Path(probe.output_dir).resolve() / spec.name
    tune_dir = out / "tune"
    study = {"spec": spec.model_dump(mode="json"), "base": base}
    check_resume(out, study, tune.Tuner.can_restore(str(tune_dir / spec.name)), restart, log)
    connect(probe.ray)
    from .accelerator import gpus_needed, require_gpus
    require_gpus(probe.ray, gpus_needed(probe.ray, trains=True), log)      # before the sweep writes anything
    out.mkdir(parents=True, exist_ok=True)
    (out / STUDY_RECORD).write_text(yaml.safe_dump(study, sort_keys=False))
    with open(out / "command.txt", "a") as fh:      # for the results page (benchmarks/publish_sweep.py)
        fh.write(" ".join(["python experiments/run.py --sweep", str(spec_path), *(overrides or []),
                           *(f"--only {o}" for o in only or [])]) + "\n")
    # datasets first, once per distinct data section and in parallel (each launches its own Ray
    # tasks); trials then find them in the cache
    distinct = {}
    for point in grid_points(spec):
        data_cfg = trial_config(base, spec, point, "probe", out, probe=True).data
        distinct.setdefault(data_cfg.model_dump_json(), data_cfg)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=len(distinct)) as pool:
        list(pool.map(lambda d: prepare_data(d, log), distinct.values()))

    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, spec_raw=spec.model_dump(mode="json"), output_dir=str(out),
                             plugins=registered_plugins()),
        trial_resources(spec))
    scheduler = None
    if spec.scheduler is not None:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=len(spec.budgets or [1]),
                                  grace_period=spec.scheduler.grace_period,
                                  reduction_factor=spec.scheduler.reduction_factor)
    if tune.Tuner.can_restore(str(tune_dir / spec.name)):
        log(f"[sweep] resuming {tune_dir / spec.name}")
        tuner = tune.Tuner.restore(str(tune_dir / spec.name), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space=param_space(spec),
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                        max_concurrent_trials=spec.max_concurrent_trials, scheduler=scheduler,
                                        search_alg=search_algorithm(spec)),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(tune_dir)),
        )
    results = tuner.fit()
    rows = []
    for result in results:
        if result.metrics is None or spec.metric not in (result.metrics or {}):
            rows.append({"trial": Path(str(result.path)).name, "params": result.config, "error": str(result.error)})
            continue
        m = result.metrics
        rows.append({"trial": Path(m["run_dir"]).name, "params": result.config, "epochs": m["epochs"],
                     "overrides": expand(spec, result.config),
                     "metrics": {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                     "run_dir": m["run_dir"]})
    done = [r for r in rows if "metrics" in r]
    sign = 1 if spec.mode == "min" else -1
    done.sort(key=lambda r: (math.isnan(r["metrics"][spec.metric]), sign * r["metrics"][spec.metric]))
    finals = []
    for r in done[:spec.finalists]:
        cfg = trial_config(base, spec, r["params"], r["trial"], out,
                           {**spec.final_overrides, "training.epochs": r["epochs"],
                            "training.schedule_epochs": max(spec.budgets or [r["epochs"]])})
        log(f"[sweep] finalist {r['trial']}: sampling and evaluating with {spec.final_overrides}")
        result = run_experiment(cfg, stages=["sample", "evaluate"], command=f"sweep {spec.name} finalist", log=log)
        finals.append({"trial": r["trial"], "params": r["params"],
                       "metrics": {e.key: e.mean for e in result.entries},
                       "std": {e.key: e.std for e in result.entries},
                       "noise_floor": {e.key: e.floor_mean for e in result.entries if e.floor is not None}})
    if done and not math.isnan(done[0]["metrics"][spec.metric]):
        write_best_config(out / "best.yaml", base, spec, done[0], Path(probe.output_dir))
        log(f"[sweep] best trial {done[0]['trial']} as a ready-to-run config: {out / 'best.yaml'}")
    failed = [r for r in rows if "error" in r]
    summary = {"name": spec.name, "metric": spec.metric, "mode": spec.mode, "trials": done + failed, "finalists": finals,
               "seconds": round(time.time() - started, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "summary.md").write_text(summary_table(summary) + "\n")
    log(f"[sweep] {len(done)} trial(s) finished, {len(rows) - len(done)} failed; summary in {out / 'summary.md'}\n"
        + summary_table(summary))
    return summary


def write_best_config(path: Path, base: dict, spec: SweepSpec, best: dict, output_dir: Path) -> None:
    """The best trial as an experiment config that ``experiments/run.py`` takes as it is: the base
    config, the study's and the trial's overrides, the epochs the trial trained, named
    ``<sweep>_best`` (so running it does not overwrite the trial)."""
    from .config import dump_config

    cfg = trial_config(base, spec, best["params"], f"{spec.name}_best", output_dir,
                       {"training.epochs": best["epochs"], "training.schedule_epochs": max(spec.budgets or [best["epochs"]])})
    # the base description would still name the base config's knobs, which the overrides changed
    cfg.description = (f"Best trial {best['trial']} of sweep {spec.name}, overrides {json.dumps(best['overrides'])} "
                       f"over: {cfg.description}")
    header = (f"# best trial of sweep {spec.name}: {best['trial']} ({spec.metric} {best['metrics'][spec.metric]:.6g}, "
              f"{spec.mode}imised)\n# overrides over the base config: {json.dumps(best['overrides'])}\n"
              f"#   python experiments/run.py {path}\n")
    path.write_text(header + dump_config(cfg))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def summary_table(summary: dict) -> str:
    trials = [t for t in summary["trials"] if "metrics" in t]
    if not trials:
        return "(no finished trials)"
    keys = sorted({k for t in trials for k in t["params"]})
    metric = summary["metric"]
    cols = [metric, f"{metric}_std", f"noise_floor_{metric}"]
    lines = ["| trial | " + " | ".join(keys) + " | epochs | " + " | ".join(cols) + " |",
             "|" + "---|" * (len(keys) + 2 + len(cols))]
    for t in trials:
        lines.append(f"| {t['trial']} | " + " | ".join(_fmt(t["params"].get(k)) for k in keys) + f" | {t['epochs']} | "
                     + " | ".join(_fmt(t["metrics"].get(c, math.nan)) for c in cols) + " |")
    if summary.get("finalists"):
        lines += ["", f"Finalists re-evaluated ({metric}, mean ± std over seeds; noise floor):", ""]
        for f in summary["finalists"]:
            lines.append(f"- {f['trial']} {json.dumps(f['params'])}: {f['metrics'][metric]:.4f} ± {f['std'][metric]:.4f} "
                         f"(floor {f['noise_floor'][metric]:.4f})")
    return "\n".join(lines)


def describe_sweep(spec_path: str | Path, overrides: list[str] | None = None, only: list[str] | None = None) -> str:
    """A dry run: every grid point's trial config validated (an error names the trial), then the
    spec and one line per trial with its overrides. Nothing starts."""
    spec_overrides, base_overrides = split_overrides(overrides or [])
    spec, base = load_spec(spec_path, spec_overrides, only)
    base = absolute_paths(apply_overrides(base, base_overrides))
    lines = [yaml.safe_dump({"spec": spec.model_dump(mode="json", exclude_defaults=True)}, sort_keys=False).rstrip()]
    points = grid_points(spec)
    random = [k for k, d in spec.search.items() if not (isinstance(d, dict) and "grid" in d)]
    lines.append(f"# {len(points)} grid point(s)" + (f" x {spec.num_samples} draw(s) of {random}" if random else ""))
    for point in points:
        name = trial_name(spec, point, "ID")
        cfg = trial_config(base, spec, point, name, Path(base.get("output_dir", "runs")), probe=True)
        lines.append(f"# {name}: {json.dumps(expand(spec, point))} -> variant {cfg.variant}")
    return "\n".join(lines) + "\n"
