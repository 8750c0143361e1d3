"""The relaxation workflow: relax unstable molecules with the methods ``relaxation.samplers`` names
(``moldiff.relaxation.methods``: MoreRed's itp / as / jt / ddpm on a trained MoreRed network, fire on
a learned force field, mmff needing no model), all on the same inputs, and judge the result.

Metrics (per method label and group of inputs, mean ± std over sampling seeds): the median RMSD
ratio (relaxed-to-target over input-to-target, each after Kabsch alignment, all atoms), the failure
fraction (ratio > 1), their bootstrap standard errors over the inputs, the median RMSD after
relaxation, median steps and the converged fraction, overall (group ``all``) and per kind of input
(etkdg, diffusion<step>, thermal); the GFN2-xTB energy above the minimum on a fixed subset; for
inputs of kind ``prior`` (generation from noise), validity, uniqueness and novelty. The comparison
column is doing nothing: ratio 1, the inputs' own RMSD. A time predictor on its own is judged by its
mean |k_hat - k|.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import Workflow, register
from .properties import add_property_mae
from ..accelerator import actor_gpus, record_stage_devices
from ..config import ExperimentConfig
from ..data.relaxation_inputs import JUDGED_AS_MOLECULES, PHYSICAL_KINDS
from ..data.sources import PreparedData
from ..data.store import read_dataset
from ..metrics.relaxation import ERROR_STATS, relaxed_stats
from ..metrics.report import Report, write_results_page
from ..relaxation.methods import incompatibility, method
from ..nn.compile import compile_wanted
from ..relaxation.pipeline import (K_MIN_RECORD, TYPICAL_RELAX_STEPS, checkpoint_dir, evaluated_labels, inputs_path,
                                   prepare_inputs, relax_file, relaxed_path)
from ..relaxation.threshold import resolve_k_min
from ..parallel.partial import Work
from ..train.checkpoint import checkpoint_digest


def _model_kind(cfg: ExperimentConfig):
    return cfg.objective.morered.kind if cfg.objective.name == "morered" else None


def sample_stage(cfg: ExperimentConfig, data: PreparedData, checkpoint: Path, run_dir: Path,
                 log: Callable[[str], None] = print) -> None:
    rx = cfg.relaxation
    kind = _model_kind(cfg)
    if kind == "time":
        log("[relax] a time predictor relaxes nothing on its own (point relaxation.time_run of a noise model's "
            "run at it); skipping")
        return
    inputs = prepare_inputs(cfg, data, log)
    n_inputs = read_dataset(inputs, validate=False)[1].n_molecules
    for sampler in rx.samplers:
        m = method(sampler)
        time_dir = None
        if m.time_model and kind == "noise":
            if rx.time_run is None:
                raise ValueError(f"relaxation.samplers: {sampler} with a noise model needs relaxation.time_run")
            time_dir = checkpoint_dir(rx.time_run)
        model_dir = None if m.objective is None else str(checkpoint)
        k_min = 0
        if m.engine == "reverse_diffusion":
            k_min = resolve_k_min(rx.k_min, sampler, time_dir or model_dir, data.validation, cfg.sampling.use_ema,
                                  run_dir / "relaxed" / K_MIN_RECORD, log)
        label = m.label(k_min, rx.noise_scale, rx.final_denoise) if m.engine == "reverse_diffusion" else m.label(0)
        settings = {"max_steps": rx.max_steps, "k_min": k_min, "fmax": rx.fmax,
                    "noise_scale": rx.noise_scale, "final_denoise": rx.final_denoise}
        models = {"model": model_dir and checkpoint_digest(model_dir), "time_model": time_dir and checkpoint_digest(time_dir)}
        for seed in rx.seeds:
            out = relaxed_path(run_dir, label, seed)
            work = Work(run_dir, f"relax-{label}", seed, {**models, "inputs": str(inputs), "sampler": sampler,
                                                          "settings": settings, "precision": rx.precision,
                                                          "use_ema": cfg.sampling.use_ema})
            if work.done_in(out, log):
                continue
            log(f"[relax] {label}, seed {seed}: {n_inputs} inputs on {rx.num_actors} actor(s), {rx.slots} slots each")
            t0 = time.time()
            got = relax_file(inputs, out, sampler, model_dir, time_dir, rx.num_actors, rx.slots, seed, settings,
                             cfg.ray.cpus_per_actor, cfg.ray.torch_threads, cfg.sampling.use_ema,
                             actor_gpus(cfg.ray), rx.precision,
                             compile_wanted(rx.compile, n_inputs / rx.num_actors * TYPICAL_RELAX_STEPS),
                             partial=work.partial(log), made_with=work.id, log=log)
            devices = sorted(set(pq.read_table(out, columns=["device"]).column("device").to_pylist()))
            record_stage_devices(run_dir, f"relax {label} seed {seed}", [{"device": d} for d in devices])
            log(f"[relax] {label}, seed {seed}: wrote {out} ({got} rows, {time.time() - t0:.0f}s, {rx.precision} "
                f"on {', '.join(devices)})")


def _generation_stats(rows: pa.Table, data: PreparedData, log, use_targets: bool = False,
                      posebusters: bool = False) -> dict:
    """Validity, uniqueness and novelty of molecules generated from noise (MoreRed's Table 1),
    with the median number of steps the sampler took (and PoseBusters' pass fractions with
    ``posebusters``); ``use_targets``: the same for the test molecules the compositions came from."""
    from ..data.smiles import training_smiles
    from ..data.store import positions
    from ..metrics.chemistry import generation_metrics

    structures = positions(rows, "target" if use_targets else "pos")
    failed = [""] * rows.num_rows if use_targets else rows.column("failed").to_pylist()
    molecules = [(np.asarray(z), p if f != "nonfinite" else np.full_like(p, np.nan))
                 for z, p, f in zip(rows.column("z").to_pylist(), structures, failed)]
    known = training_smiles(data.train, log)
    g = generation_metrics(molecules, known)
    steps = rows.column("n_steps").to_numpy(zero_copy_only=False) * (0 if use_targets else 1)
    converged = rows.column("converged").to_numpy(zero_copy_only=False) | use_targets
    out = {"validity": g["validity"], "uniqueness": g["uniqueness"], "valid_and_unique": g["valid_and_unique"],
           "novelty": g["novelty"], "atom_stability": g["atom_stability"], "molecule_stability": g["molecule_stability"],
           "median_steps": float(np.median(steps)),
           "converged_fraction": float(converged.mean())}
    if posebusters:
        from ..metrics.posebusters import posebusters_rates
        out.update(posebusters_rates(molecules))
    return out


def _energy_subset(cfg: ExperimentConfig, data: PreparedData, rows: pa.Table, log,
                   inputs_stats: dict) -> tuple[dict, dict]:
    """GFN2-xTB energy above the minimum nearest the DFT target on the fixed subset of inputs
    (``relaxation.energy_subset``): stats of the relaxed structures, and of the inputs themselves
    (the no-relaxation comparison; the same subset for every sampler, so computed once into
    ``inputs_stats``)."""
    from ..data.store import positions
    from ..metrics.relaxation_energy import energies_above_minimum, energy_stats, energy_subset_ids, reference_minima

    wanted = set(energy_subset_ids(rows.column("id").to_pylist(), rows.column("kind").to_pylist(),
                                   cfg.relaxation.energy_subset, cfg.relaxation.inputs.seed))
    sub = rows.filter(pa.array([i in wanted for i in rows.column("id").to_pylist()]))
    zs = [np.asarray(z) for z in sub.column("z").to_pylist()]
    target_ids = sub.column("target_id").to_pylist()
    targets = dict(zip(target_ids, zip(zs, positions(sub, "target"))))
    cache = inputs_path(cfg, data)
    minima = reference_minima(targets, cache.parent / f"{cache.name}-gfn2-minima.json", log)
    relaxed = energies_above_minimum(zs, positions(sub), target_ids, minima,
                                     [f in ("", "step_cap") for f in sub.column("failed").to_pylist()])
    if not inputs_stats:
        inputs = read_dataset(cache, validate=False)[0]
        inputs = inputs.filter(pa.array([i in wanted for i in inputs.column("id").to_pylist()]))
        order = {i: n for n, i in enumerate(inputs.column("id").to_pylist())}
        start = positions(inputs)
        inputs_stats.update(energy_stats(energies_above_minimum(
            zs, [start[order[i]] for i in sub.column("id").to_pylist()], target_ids, minima)))
    return energy_stats(relaxed), inputs_stats



TIME_CHECK_INDICES = (0, 10, 50, 100, 250, 500, 900)


def time_prediction_errors(model, table: pa.Table, seed: int = 0) -> dict[str, float]:
    """Mean |k_hat - k| of the time predictor on molecules diffused to known indices k, and the mean
    k_hat it reads on the clean structures themselves (target 0), by the index rule in use
    (average, then clamp) and by the former one (clamp each atom, then average)."""
    import torch

    from ..data.batch import collate_arrow
    from ..diffusion.process import centred_noise, remove_mean

    graphs = collate_arrow(table, dtype=torch.float64)
    x0 = remove_mean(graphs.pos, graphs.batch, graphs.n_atoms)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        for k in TIME_CHECK_INDICES:
            abar = model.schedule.alpha2[k + 1].to(torch.float64)
            xk = abar.sqrt() * x0 + (1 - abar).sqrt() * centred_noise(graphs, gen)
            k_hat = model.index_from_time(model(graphs.with_pos(xk))["time"], graphs)
            out[f"time_abs_error_k{k}"] = float((k_hat - k).abs().double().mean())
        time = model(graphs.with_pos(x0))["time"]
        for key, clamp_first in (("time_abs_error_clean", False), ("time_abs_error_clean_clamp_first", True)):
            out[key] = float(model.index_from_time(time, graphs, clamp_first=clamp_first).double().mean())
    return out


TIME_ERROR_ROWS = {**{f"time_abs_error_k{k}": {"k": str(k)} for k in TIME_CHECK_INDICES},
                   "time_abs_error_clean": {"k": "clean"},
                   "time_abs_error_clean_clamp_first": {"k": "clean", "rule": "clamp_first"}}


def add_time_errors(report: Report, model, table: pa.Table, seeds: list[int], n_steps: int) -> None:
    """The time head's errors (``time_prediction_errors``) per seed, beside predicting k = T/2."""
    errors = {s: time_prediction_errors(model, table, s) for s in seeds}
    for key, labels in TIME_ERROR_ROWS.items():
        k = 0 if labels["k"] == "clean" else int(labels["k"])
        report.add(key, [errors[s][key] for s in seeds], abs(n_steps / 2 - k), unit="steps",
                   metric="time_abs_error", **labels)


def evaluate_time_model(cfg: ExperimentConfig, data: PreparedData, run_dir: Path, log) -> Report:
    from ..train.checkpoint import load_model

    model = load_model(run_dir / "checkpoints" / "final", use_ema=cfg.sampling.use_ema)[0].double()
    table, _ = read_dataset(data.validation, validate=False)
    table = table.slice(0, 500)
    seeds = list(cfg.relaxation.seeds)
    report = Report(cfg.name, cfg.variant, "relaxation", seeds, n_samples=table.num_rows,
                    n_reference=table.num_rows, n_noise_floor_set=table.num_rows,
                    n_train=data.train_manifest.n_molecules,
                    reference="validation molecules diffused to known indices k (clean: the structures "
                              "themselves, target 0)",
                    floor_meaning="predicting k = T/2 for every molecule")
    add_time_errors(report, model, table, seeds, cfg.diffusion.n_steps)
    mae_line = add_property_mae(report, cfg, data, run_dir, log)
    report.write(run_dir)
    write_results_page(report, run_dir, cfg.description, mae_line, sample_title="time predictor")
    log("[evaluate] time predictor, mean |k_hat - k|: " + ", ".join(
        f"k={k} {report[f'time_abs_error_k{k}'].mean:.1f}" for k in TIME_CHECK_INDICES)
        + f"; clean structures read as {report['time_abs_error_clean'].mean:.1f} "
          f"({report['time_abs_error_clean_clamp_first'].mean:.1f} clamping each atom first)")
    return report


def _groups(rows: pa.Table) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each row's input group (kind, diffusion<step>) and the row indices of every group with a
    reference geometry, ``all`` first, then ``physical`` (the ETKDG and thermal inputs pooled); kinds
    judged as molecules (prior, generated) have none."""
    labels = np.array([k if k != "diffusion" else f"diffusion{int(v)}" for k, v in
                       zip(rows.column("kind").to_pylist(), rows.column("level").to_pylist())])
    near = ~np.isin(labels, JUDGED_AS_MOLECULES)
    groups = {"all": np.flatnonzero(near)} if near.any() else {}
    physical = np.isin(labels, PHYSICAL_KINDS)
    if physical.any():          # ETKDG and thermal inputs pooled: the benchmark's headline
        groups["physical"] = np.flatnonzero(physical)
    for group in sorted(set(labels[near])):
        groups[group] = np.flatnonzero(labels == group)
    return labels, groups


def draw_relaxations(cfg: ExperimentConfig, data: PreparedData, run_dir: Path, labels: list[str], seed: int,
                     log: Callable[[str], None] = print, n: int = 4) -> None:
    """``plots/relaxations.png``: one input of each kind (up to ``n``) beside what every method made
    of it (the methods relax the same inputs)."""
    from ..data.store import dataset_exists, positions
    from ..pictures import relaxation_panel

    source = inputs_path(cfg, data)
    if not labels or not dataset_exists(source):
        log(f"[evaluate] no relaxation picture: the inputs {source} are gone (the sample stage makes them)")
        return
    inputs = read_dataset(source, validate=False)[0]
    before = dict(zip(inputs.column("id").to_pylist(), positions(inputs)))
    tables = {label: pq.read_table(relaxed_path(run_dir, label, seed)) for label in labels}
    first = tables[labels[0]]
    kinds = first.column("kind").to_pylist()
    order = [kinds.index(k) for k in dict.fromkeys(kinds)] + list(range(len(kinds)))
    picked = list(dict.fromkeys(order))[:n]
    ids = [first.column("id")[i].as_py() for i in picked]
    rows = [(np.asarray(first.column("z")[i].as_py()), before[ids[k]], f"{kinds[i]} {ids[k]}")
            for k, i in enumerate(picked)]
    relaxed = {}
    for label, table in tables.items():
        where = {v: j for j, v in enumerate(table.column("id").to_pylist())}
        pos = positions(table)
        relaxed[label] = [pos[where[i]] for i in ids]
    relaxation_panel(run_dir / "plots" / "relaxations.png", rows, relaxed)


def evaluate_stage(cfg: ExperimentConfig, data: PreparedData, run_dir: Path,
                   log: Callable[[str], None] = print) -> Report:
    if _model_kind(cfg) == "time":
        return evaluate_time_model(cfg, data, run_dir, log)
    rx = cfg.relaxation
    seeds = list(rx.seeds)
    values: dict[tuple, dict[int, float]] = {}      # (label, group, stat) -> seed -> value
    floor: dict[tuple, float] = {}                   # (label, group, stat) -> the inputs' own value
    inputs_energy: dict[str, float] = {}     # the inputs' own energies: one subset for every sampler
    n_inputs = 0
    for label in evaluated_labels(rx, run_dir):
        for seed in seeds:
            rows = pq.read_table(relaxed_path(run_dir, label, seed))
            n_inputs = rows.num_rows
            kinds, groups = _groups(rows)
            for group, idx in groups.items():
                sub = rows.take(pa.array(idx))
                for stat, value in relaxed_stats(sub).items():
                    values.setdefault((label, group, stat), {})[seed] = value
                inputs = sub.column("input_rmsd").to_numpy()
                floor.update({(label, group, "median_ratio"): 1.0, (label, group, "failure_fraction"): 0.0,
                              (label, group, "median_rmsd_after"): float(np.median(inputs)),
                              (label, group, "median_steps"): 0.0, (label, group, "converged_fraction"): 0.0,
                              **{(label, group, stat): 0.0 for stat in ERROR_STATS}})
            if rx.energy_subset and ("all" in groups or "generated" in kinds):
                relaxed, unrelaxed = _energy_subset(cfg, data, rows, log, inputs_energy)
                for stat, value in relaxed.items():
                    values.setdefault((label, "subset", stat), {})[seed] = value
                    floor[(label, "subset", stat)] = unrelaxed[stat]
            for kind in (k for k in JUDGED_AS_MOLECULES if k in kinds):     # judged as molecules
                generated = rows.take(pa.array(np.flatnonzero(kinds == kind)))
                for stat, value in _generation_stats(generated, data, log,
                                                     posebusters=cfg.evaluation.posebusters).items():
                    values.setdefault((label, kind, stat), {})[seed] = value
                # comparison: the targets (prior: the stable molecules the compositions came from;
                # generated: the inputs themselves, before relaxation)
                for stat, value in _generation_stats(generated, data, log, use_targets=True,
                                                     posebusters=cfg.evaluation.posebusters).items():
                    floor[(label, kind, stat)] = value
            if "all" not in groups:
                continue
            got = lambda stat: values[(label, "all", stat)][seed]   # noqa: E731
            log(f"[evaluate] {label} seed {seed}: median ratio {got('median_ratio'):.3f}, failures "
                f"{got('failure_fraction'):.3f}, median RMSD {got('median_rmsd_after'):.3f} A, "
                f"median steps {got('median_steps'):.0f}"
                + (f", median GFN2 energy above the minimum {values[(label, 'subset', 'median_energy_above_min')][seed]:.1f}"
                   f" kcal/mol (inputs {floor[(label, 'subset', 'median_energy_above_min')]:.1f})"
                   if rx.energy_subset else ""))
    report = Report(cfg.name, cfg.variant, "relaxation", seeds, n_samples=n_inputs, n_reference=n_inputs,
                    n_noise_floor_set=n_inputs, n_train=data.train_manifest.n_molecules,
                    reference=(f"the molecules {rx.inputs.from_run} generated, as they came out of its sampler (no "
                               "reference geometry)" if rx.inputs.from_run else
                               f"unstable inputs made from QM9 {rx.inputs.split} molecules; targets are their DFT "
                               "geometries"),
                    floor_meaning="no relaxation (ratio 1, the inputs' own RMSD and energy); for generation from "
                                  "noise, the stable molecules the compositions came from; for generated inputs, "
                                  "the inputs themselves before relaxation")
    for (label, group, stat), per_seed in values.items():
        unit = ("Angstrom" if "rmsd" in stat else "kcal/mol" if "energy_above_min" in stat else
                "steps" if stat == "median_steps" else None)
        report.add(f"{label}_{group}_{stat}", [per_seed[s] for s in seeds], floor[(label, group, stat)],
                   unit=unit, metric=stat, method=label, group=group)
    if _model_kind(cfg) == "joint" and data.validation is not None:
        from ..train.checkpoint import load_model
        from . import trained_checkpoint
        model = load_model(trained_checkpoint(cfg, run_dir), use_ema=cfg.sampling.use_ema)[0].double()
        add_time_errors(report, model, read_dataset(data.validation, validate=False)[0].slice(0, 500), seeds,
                        cfg.diffusion.n_steps)
    mae_line = add_property_mae(report, cfg, data, run_dir, log)
    report.write(run_dir)
    draw_relaxations(cfg, data, run_dir, list(evaluated_labels(rx, run_dir)), seeds[0], log)
    write_results_page(report, run_dir, cfg.description, mae_line, sample_title="relaxed",
                       floor_title="no relaxation")
    return report


class Relaxation(Workflow):
    name = "relaxation"
    summary = "unstable molecules relaxed by MoreRed, a learned force field + FIRE, or MMFF94"

    def check(self, cfg) -> list[str]:
        problems = []
        if cfg.data.source != "qm9":
            problems.append(f"the relaxation workflow makes its inputs from QM9 molecules (data.source qm9), got "
                            f"'{cfg.data.source}'")
        # a time predictor relaxes nothing itself (its run only evaluates |k_hat - k|)
        bad = {} if _model_kind(cfg) == "time" else {
            s: why for s in cfg.relaxation.samplers if (why := incompatibility(s, cfg.objective.name, _model_kind(cfg)))}
        if bad:
            problems.append(f"relaxation.samplers {sorted(bad)} do not fit objective {cfg.objective.name}: "
                            + "; ".join(bad.values()))
        return problems

    def check_models(self, cfg) -> None:
        if cfg.relaxation.time_run is not None:
            from ..train.run_checks import check_trained_by
            check_trained_by(cfg, Path(checkpoint_dir(cfg.relaxation.time_run)), "relaxation.time_run",
                             needs=("morered.time", "morered.joint"))

    def sample(self, cfg, data, checkpoint, run_dir, log) -> None:
        sample_stage(cfg, data, checkpoint, run_dir, log)

    def evaluate(self, cfg, data, run_dir, log) -> Report:
        return evaluate_stage(cfg, data, run_dir, log)


register(Relaxation())
