"""The sample and evaluate stages of relaxation runs (MoreRed, and the force-field baseline):
relax unstable molecules and judge the result. ``relaxation.samplers`` picks the methods: MoreRed's
itp / as / jt / ddpm, ``fire`` (batched FIRE on a learned force field) and ``mmff`` (RDKit MMFF94,
the classical reference, needs no model), all on the same inputs.

    <data.root>/relax-inputs-<key>/          the unstable inputs (made once from the test or validation split)
    <run_dir>/relaxed/<sampler>_seed<s>/     data.parquet: relaxed positions and their targets, steps,
                                             convergence flag, failure reason, RMSDs, ratio (one row per input)
    <run_dir>/relaxed/<sampler>-kmin<k>_seed<s>/   the same with a convergence threshold k_min = k > 0
    <run_dir>/relaxed/k_min.json             what ``k_min: auto`` chose (moldiff.relaxation_threshold)

The relaxation is a Ray Data pipeline: ``read_parquet(inputs).map_batches(RelaxBatch, compute=
ActorPoolStrategy(size=num_actors))``, streamed back and written as it arrives, where every actor holds one model replica and relaxes its
batches by continuous batching (``sampling.relax``). Every input comes back exactly once: a
molecule that diverges or hits the step cap is a row with ``failed`` set and ratio inf for
divergence, never dropped.

Metrics (per sampler, mean ± std over sampling seeds): the median RMSD ratio (relaxed-to-target over
input-to-target, each after Kabsch alignment, all atoms), the failure fraction (ratio > 1), the
median RMSD after relaxation, median steps and the converged fraction, overall and per kind of
input (etkdg, diffusion<step>, thermal). The comparison column is doing nothing: ratio 1, the
inputs' own RMSD.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .accelerator import actor_gpus, record_stage_devices
from .atomic import replace_directory, temp_sibling, write_text as write_text_atomic
from .config import ConfigError, ExperimentConfig
from .data.sources import PreparedData
from .data.store import Manifest, dataset_exists, read_dataset, write_dataset
from .relaxation_threshold import ADAPTIVE_SAMPLERS, parse_label, resolve_k_min, sampler_label

K_MIN_RECORD = "k_min.json"     # relaxed/k_min.json: the thresholds k_min: auto chose

RELAXED_SCHEMA = pa.schema([
    ("id", pa.string()), ("target_id", pa.string()), ("kind", pa.string()), ("level", pa.float64()),
    ("z", pa.list_(pa.int16())), ("pos", pa.list_(pa.float32())), ("target", pa.list_(pa.float32())),
    ("n_steps", pa.int64()), ("converged", pa.bool_()),
    ("failed", pa.string()), ("first_index", pa.int64()), ("input_rmsd", pa.float64()), ("rmsd_after", pa.float64()),
    ("ratio", pa.float64()), ("device", pa.string())])
RESULT_STATS = ("median_ratio", "failure_fraction", "median_rmsd_after", "median_steps", "converged_fraction")
# the sampling error of the two headline numbers over the inputs (bootstrap), the benchmark's noise floor
ERROR_STATS = ("median_ratio_se", "failure_fraction_se")
BOOTSTRAP_DRAWS = 1000


def _source_split(cfg: ExperimentConfig, data: PreparedData) -> Path:
    """The stable molecules the inputs are made from (relaxation.inputs.split)."""
    if cfg.relaxation.inputs.split == "test":
        return data.reference
    if data.validation is None:
        raise ConfigError(f"relaxation.inputs.split: validation, but data.source {cfg.data.source!r} has no "
                          "validation split (qm9 has one)")
    return data.validation


def inputs_path(cfg: ExperimentConfig, data: PreparedData) -> Path:
    inputs = cfg.relaxation.inputs.model_dump(mode="json")
    if inputs["split"] == "test":           # test inputs keep the cache key they had before `split` existed
        del inputs["split"]
    spec = {"test": data.reference_manifest.name, "selection": data.reference_manifest.generator.get("selection"),
            "inputs": inputs, "n_steps": cfg.diffusion.n_steps}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.data.root).expanduser().resolve() / f"relax-inputs-{key}"


def prepare_inputs(cfg: ExperimentConfig, data: PreparedData, log: Callable[[str], None] = print) -> Path:
    from .data.relaxation_inputs import PerturbationSettings, build_inputs

    path = inputs_path(cfg, data)
    if dataset_exists(path):
        log(f"[relax] using cached inputs {path}")
        return path
    ri = cfg.relaxation.inputs
    source = _source_split(cfg, data)
    stable, manifest = read_dataset(source, validate=False)
    if ri.n_molecules is not None:
        stable = stable.slice(0, ri.n_molecules)
    settings = PerturbationSettings(kinds=tuple(ri.kinds), diffusion_steps=tuple(ri.diffusion_steps),
                                    n_steps=cfg.diffusion.n_steps, thermal_K=ri.thermal_K,
                                    thermal_steps=ri.thermal_steps, seed=ri.seed)
    t0 = time.time()
    table, info = build_inputs(stable, settings, log=log)
    write_dataset(path, table, Manifest(name=path.name, source="relaxation-inputs", units={"length": "Angstrom"},
                                        level_of_theory=f"perturbed {manifest.level_of_theory} geometries",
                                        generator={**info, "from": str(source), "seconds": round(time.time() - t0, 1)}))
    log(f"[relax] wrote {path} ({table.num_rows} inputs from {stable.num_rows} {ri.split} molecules, {time.time() - t0:.0f}s)")
    return path


def _checkpoint_dir(path: str) -> str:
    p = Path(path).expanduser()
    return str(p / "checkpoints" / "final") if (p / "checkpoints" / "final").is_dir() else str(p)


MORERED_SAMPLERS = ("itp", "as", "jt", "ddpm")


class RelaxBatch:
    """A Ray Data actor: one model replica (none for mmff) on this actor's device, in the
    relaxation's precision, relaxing each batch of input rows with one method: a MoreRed sampler
    (continuous batching), batched FIRE on a learned force field, or RDKit MMFF94 one molecule at a
    time (on the CPU). Every output row names the device that relaxed it."""

    def __init__(self, sampler: str, model_dir, time_dir, settings: dict, slots: int, seed: int,
                 torch_threads: int, use_ema: bool, use_gpu: bool = False, precision: str = "float32"):
        import torch

        from .accelerator import describe, device_record, local_device
        from .train.checkpoint import load_model

        torch.set_num_threads(torch_threads)
        self.sampler, self.settings, self.slots, self.seed, self.done = sampler, settings, slots, seed, 0
        self.device = local_device(use_gpu and sampler != "mmff")
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[precision]

        def model(path):
            return load_model(path, use_ema=use_ema)[0].to(device=self.device, dtype=self.dtype)
        if sampler in MORERED_SAMPLERS:
            from .models.morered import Relaxer
            self.model = Relaxer(model(model_dir), model(time_dir) if time_dir else None)
        elif sampler == "fire":
            self.model = model(model_dir)
        self.device_name = describe(device_record(self.device))
        print(f"[relax {sampler}] {precision} on {self.device_name}", flush=True)

    def _morered(self, ids, zs, starts, targets) -> list[tuple]:
        from .sampling.relax import ContinuousRelaxer, RelaxSettings

        keys = [int(hashlib.sha256(i.encode()).hexdigest()[:12], 16) for i in ids]
        relaxer = ContinuousRelaxer(self.model, RelaxSettings(self.sampler, self.settings["max_steps"],
                                                              self.settings["k_min"]), self.slots, self.seed)
        results, t0 = [], time.time()
        for r in relaxer.relax(zip(zs, starts), keys):
            results.append(r)
            if len(results) % self.slots == 0:      # a batch can take minutes: report within it
                print(f"[relax {self.sampler}] {len(results)}/{len(ids)} of this batch in {time.time() - t0:.0f}s "
                      f"({relaxer.model_steps} model steps)", flush=True)
        results.sort(key=lambda r: r.index)
        return [(r.pos, r.n_steps, r.converged, r.failed, r.first_index) for r in results]

    def _fire(self, ids, zs, starts, targets) -> list[tuple]:
        import torch

        from .data.batch import from_arrays
        from .sampling.fire import FireSettings, fire_relax

        out, t0 = [], time.time()
        settings = FireSettings(fmax=self.settings["fmax"], max_steps=self.settings["max_steps"])
        for lo in range(0, len(zs), self.slots):
            chunk = slice(lo, lo + self.slots)
            graphs = from_arrays(np.concatenate(zs[chunk]), np.concatenate(starts[chunk]),
                                 np.array([len(z) for z in zs[chunk]]), dtype=self.dtype).to(self.device)

            def forces(pos, active_atoms):        # the learned force field, on the molecules still moving
                molecules = torch.unique(graphs.batch[active_atoms])
                sub = graphs.with_pos(pos).select(molecules)
                f = torch.zeros_like(pos)
                f[active_atoms] = self.model.energy_and_forces(sub)[1].detach()
                return f
            res = fire_relax(forces, graphs.pos, graphs.batch, graphs.n_atoms, settings)
            n_atoms = graphs.n_atoms.cpu().numpy()
            bounds = np.concatenate([[0], np.cumsum(n_atoms)])
            pos, n_steps, converged = res.pos.cpu().numpy(), res.n_steps.cpu().numpy(), res.converged.cpu().numpy()
            for j in range(graphs.num_graphs):
                steps, done = int(n_steps[j]), bool(converged[j])
                failed = "" if done else ("step_cap" if steps >= settings.max_steps else "nonfinite")
                out.append((pos[bounds[j]:bounds[j + 1]], steps, done, failed, -1))
            print(f"[relax fire] {len(out)}/{len(zs)} of this batch in {time.time() - t0:.0f}s", flush=True)
        return out

    def _mmff(self, ids, zs, starts, targets) -> list[tuple]:
        from .sampling.classical import mmff_relax

        out = []
        for z, start, target in zip(zs, starts, targets):
            r = mmff_relax(z, start, target, max_iters=self.settings["max_steps"])
            out.append((r.pos, r.n_steps, r.converged, r.failed, -1))
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .data.store import positions
        from .metrics.relaxation import kabsch_rmsd

        t0 = time.time()
        ids = batch.column("id").to_pylist()
        zs = [np.asarray(z) for z in batch.column("z").to_pylist()]
        starts, targets = positions(batch), positions(batch, "target")
        relax = self._fire if self.sampler == "fire" else self._mmff if self.sampler == "mmff" else self._morered
        results = relax(ids, zs, starts, targets)
        rmsd_after = [kabsch_rmsd(pos, target) if failed != "nonfinite" else float("inf")
                      for (pos, _, _, failed, _), target in zip(results, targets)]
        input_rmsd = batch.column("input_rmsd").to_numpy()
        ratio = [a / b if b > 1e-8 else float("nan") for a, b in zip(rmsd_after, input_rmsd)]
        self.done += len(results)
        print(f"[relax {self.sampler}] {len(results)} molecules in {time.time() - t0:.0f}s "
              f"({self.done} done by this actor)", flush=True)
        flat = pa.array(np.concatenate([r[0].reshape(-1) for r in results]).astype(np.float32))
        offsets = pa.array(np.concatenate([[0], np.cumsum([r[0].size for r in results])]).astype(np.int32))
        return pa.table({
            "id": ids, "target_id": batch.column("target_id"), "kind": batch.column("kind"),
            "level": batch.column("level"), "z": batch.column("z"),
            "pos": pa.ListArray.from_arrays(offsets, flat), "target": batch.column("target"),
            "n_steps": [r[1] for r in results], "converged": [r[2] for r in results],
            "failed": [r[3] for r in results], "first_index": [r[4] for r in results],
            "input_rmsd": input_rmsd, "rmsd_after": rmsd_after, "ratio": ratio,
            "device": [self.device_name] * len(results)})


def relaxed_path(run_dir: Path, label: str, seed: int) -> Path:
    """``label``: the sampler, or ``<sampler>-kmin<k>`` for a threshold other than 0."""
    return run_dir / "relaxed" / f"{label}_seed{seed}"


def sample_stage(cfg: ExperimentConfig, data: PreparedData, checkpoint: Path, run_dir: Path,
                 log: Callable[[str], None] = print) -> None:
    rx = cfg.relaxation
    kind = cfg.objective.morered.kind if cfg.objective.name == "morered" else None
    if kind == "time":
        log("[relax] a time predictor relaxes nothing on its own (point relaxation.time_run of a noise model's "
            "run at it); skipping")
        return
    inputs = prepare_inputs(cfg, data, log)
    n_inputs = read_dataset(inputs, validate=False)[1].n_molecules
    for sampler in rx.samplers:
        if sampler == "jt" and kind != "joint":
            raise ValueError(f"relaxation.samplers: jt needs objective.morered.kind joint (this run is {kind})")
        time_dir = None
        if sampler in ("itp", "as") and kind == "noise":
            if rx.time_run is None:
                raise ValueError(f"relaxation.samplers: {sampler} with a noise model needs relaxation.time_run")
            time_dir = _checkpoint_dir(rx.time_run)
        model_dir = None if sampler == "mmff" else str(checkpoint)
        k_min = 0
        if sampler in MORERED_SAMPLERS:
            k_min = resolve_k_min(rx.k_min, sampler, time_dir or model_dir, data.validation, cfg.sampling.use_ema,
                                  run_dir / "relaxed" / K_MIN_RECORD, log)
        label = sampler_label(sampler, k_min)
        for seed in rx.seeds:
            out = relaxed_path(run_dir, label, seed)
            log(f"[relax] {label}, seed {seed}: {n_inputs} inputs on {rx.num_actors} actor(s), {rx.slots} slots each")
            t0 = time.time()
            got = relax_file(inputs, out, sampler, model_dir, time_dir, rx.num_actors, rx.slots, seed,
                             {"max_steps": rx.max_steps, "k_min": k_min, "fmax": rx.fmax},
                             cfg.ray.cpus_per_actor, cfg.ray.torch_threads, cfg.sampling.use_ema,
                             actor_gpus(cfg.ray), rx.precision)
            devices = sorted(set(pq.read_table(out, columns=["device"]).column("device").to_pylist()))
            record_stage_devices(run_dir, f"relax {label} seed {seed}", [{"device": d} for d in devices])
            log(f"[relax] {label}, seed {seed}: wrote {out} ({got} rows, {time.time() - t0:.0f}s, {rx.precision} "
                f"on {', '.join(devices)})")


def configured_label(rx, sampler: str, run_dir: Path) -> str:
    """The output label this configuration's sample stage writes for ``sampler``."""
    if sampler not in MORERED_SAMPLERS:
        return sampler
    if rx.k_min != "auto":
        return sampler_label(sampler, rx.k_min)
    if sampler not in ADAPTIVE_SAMPLERS:
        return sampler
    record = run_dir / "relaxed" / K_MIN_RECORD
    chosen = json.loads(record.read_text()).get(sampler) if record.exists() else None
    if chosen is None:
        raise FileNotFoundError(f"{record}: no k_min chosen for {sampler}; run the 'sample' stage first")
    return sampler_label(sampler, chosen["k_min"])


def evaluated_labels(rx, run_dir: Path) -> list[str]:
    """Per configured sampler: the label this configuration writes (which must exist for every
    seed), then any other threshold of the same sampler already relaxed in this run for every seed
    (so the paper's k_min = 0 and a chosen threshold are reported side by side)."""
    labels = []
    for sampler in rx.samplers:
        wanted = configured_label(rx, sampler, run_dir)
        for seed in rx.seeds:
            if not relaxed_path(run_dir, wanted, seed).exists():
                raise FileNotFoundError(f"{relaxed_path(run_dir, wanted, seed)}: no relaxed molecules; "
                                        "run the 'sample' stage first")
        labels.append(wanted)
        found = sorted({p.name.rsplit("_seed", 1)[0] for p in (run_dir / "relaxed").glob(f"{sampler}*_seed*")})
        labels += [lab for lab in found if lab != wanted and parse_label(lab)[0] == sampler
                   and all(relaxed_path(run_dir, lab, seed).exists() for seed in rx.seeds)]
    return labels


def relax_file(inputs: Path, out: Path, sampler: str, model_dir, time_dir, num_actors: int, slots: int, seed: int,
               settings: dict, cpus_per_actor: float = 1.0, torch_threads: int = 1, use_ema: bool = True,
               gpus_per_actor: float = 0, precision: str = "float32") -> int:
    """Relax every row of the inputs dataset with ``num_actors`` RelaxBatch actors (each holding
    ``gpus_per_actor`` of a GPU; 0: on CPUs); writes ``out/data.parquet`` atomically and returns the
    number of rows (always the number of inputs)."""
    import ray

    n_inputs = read_dataset(inputs, validate=False)[1].n_molecules
    # read before the actors start: once they hold every CPU, Ray Data's read tasks would wait
    # forever; the relaxed blocks stream back to this driver, which writes them
    blocks = min(n_inputs, 4 * num_actors)      # enough blocks to keep every actor busy
    ds = ray.data.read_parquet(str(inputs / "data.parquet")).repartition(blocks).materialize().map_batches(
        RelaxBatch, batch_format="pyarrow", batch_size=max(slots, -(-n_inputs // blocks)),
        compute=ray.data.ActorPoolStrategy(size=num_actors), num_cpus=cpus_per_actor,
        # mmff runs RDKit on the CPU: it asks for no GPU
        num_gpus=gpus_per_actor if sampler != "mmff" else 0,
        fn_constructor_kwargs={"model_dir": model_dir, "time_dir": time_dir, "sampler": sampler,
                               "settings": settings, "slots": slots, "seed": seed,
                               "torch_threads": torch_threads, "use_ema": use_ema,
                               "use_gpu": gpus_per_actor > 0 and sampler != "mmff", "precision": precision})
    tmp = temp_sibling(out)
    tmp.mkdir(parents=True)
    try:
        with pq.ParquetWriter(tmp / "data.parquet", RELAXED_SCHEMA) as writer:
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                writer.write_table(block.cast(RELAXED_SCHEMA))
        replace_directory(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    got = pq.read_table(out).num_rows
    if got != n_inputs:
        raise RuntimeError(f"{out}: {got} relaxed rows for {n_inputs} inputs")
    return got


def _stats(rows: pa.Table) -> dict:
    from .metrics.relaxation import summarize

    ratio = rows.column("ratio").to_numpy(zero_copy_only=False)
    s = summarize(ratio, rows.column("rmsd_after").to_numpy(zero_copy_only=False),
                  rows.column("n_steps").to_numpy(zero_copy_only=False), rows.column("converged").to_numpy(zero_copy_only=False))
    return {**{k: s[k] for k in RESULT_STATS}, **bootstrap_errors(ratio)}


def bootstrap_errors(ratio: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> dict:
    """Standard errors of the median ratio and the failure fraction over the inputs: the std of each
    over ``draws`` resamples of the inputs with replacement (undefined ratios left out, diverged
    ones, inf, kept as failures)."""
    ratio = ratio[~np.isnan(ratio)]
    if ratio.size == 0:
        return {k: float("nan") for k in ERROR_STATS}
    resampled = np.random.default_rng(seed).choice(ratio, size=(draws, ratio.size), replace=True)
    return {"median_ratio_se": float(np.median(resampled, axis=1).std()),
            "failure_fraction_se": float((resampled > 1).mean(axis=1).std())}


def _generation_stats(rows: pa.Table, data: PreparedData, log, use_targets: bool = False) -> dict:
    """Validity, uniqueness and novelty of molecules generated from noise (MoreRed's Table 1),
    with the median number of steps the sampler took; ``use_targets``: the same for the test
    molecules the compositions came from."""
    from .data.store import positions
    from .generation_pipeline import training_smiles
    from .metrics.chemistry import generation_metrics

    structures = positions(rows, "target" if use_targets else "pos")
    failed = [""] * rows.num_rows if use_targets else rows.column("failed").to_pylist()
    molecules = [(np.asarray(z), p if f != "nonfinite" else np.full_like(p, np.nan))
                 for z, p, f in zip(rows.column("z").to_pylist(), structures, failed)]
    known = training_smiles(data.train, log)
    g = generation_metrics(molecules, known)
    steps = rows.column("n_steps").to_numpy(zero_copy_only=False) * (0 if use_targets else 1)
    converged = rows.column("converged").to_numpy(zero_copy_only=False) | use_targets
    return {"validity": g["validity"], "uniqueness": g["uniqueness"], "valid_and_unique": g["valid_and_unique"],
            "novelty": g["novelty"], "molecule_stability": g["molecule_stability"],
            "median_steps": float(np.median(steps)),
            "converged_fraction": float(converged.mean())}


def _energy_subset(cfg: ExperimentConfig, data: PreparedData, rows: pa.Table, log,
                   inputs_stats: dict) -> tuple[dict, dict]:
    """GFN2-xTB energy above the minimum nearest the DFT target on the fixed subset of inputs
    (``relaxation.energy_subset``): stats of the relaxed structures, and of the inputs themselves
    (the no-relaxation comparison; the same subset for every sampler, so computed once into
    ``inputs_stats``)."""
    from .data.store import positions
    from .metrics.relaxation_energy import energies_above_minimum, energy_stats, energy_subset_ids, reference_minima

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
    """Mean |k_hat - k| of the time predictor on molecules diffused to known indices k."""
    import torch

    from .data.batch import collate_arrow
    from .diffusion.process import centred_noise, per_atom, remove_mean

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
    return out


def evaluate_time_model(cfg: ExperimentConfig, data: PreparedData, run_dir: Path, log) -> dict:
    from .evaluation import summary
    from .train.checkpoint import load_model

    model = load_model(run_dir / "checkpoints" / "final", use_ema=cfg.sampling.use_ema)[0].double()
    table, _ = read_dataset(data.validation, validate=False)
    table = table.slice(0, 500)
    errors = {s: time_prediction_errors(model, table, s) for s in cfg.relaxation.seeds}
    names = list(errors[cfg.relaxation.seeds[0]])
    metrics = {"experiment": cfg.name, "variant": cfg.variant, "seeds": list(cfg.relaxation.seeds),
               "n_samples": table.num_rows, "n_reference": table.num_rows, "n_noise_floor_set": table.num_rows,
               "n_train": data.train_manifest.n_molecules,
               "reference_split": "validation molecules diffused to known indices k; comparison: predicting k = T/2",
               "units": {"time_abs_error": "steps"},
               "metrics": {m: summary([errors[s][m] for s in errors]) for m in names},
               "noise_floor": {m: summary([abs(cfg.diffusion.n_steps / 2 - int(m.rsplit("k", 1)[1]))]) for m in names},
               "train_set": {m: 0.0 for m in names}}
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log("[evaluate] time predictor, mean |k_hat - k|: " + ", ".join(
        f"k={m.rsplit('k', 1)[1]} {metrics['metrics'][m]['mean']:.1f}" for m in names))
    return metrics


def evaluate_stage(cfg: ExperimentConfig, data: PreparedData, run_dir: Path, log: Callable[[str], None] = print) -> dict:
    from .evaluation import summary

    if cfg.objective.name == "morered" and cfg.objective.morered.kind == "time":
        return evaluate_time_model(cfg, data, run_dir, log)
    rx = cfg.relaxation
    per_seed: dict[int, dict] = {s: {} for s in rx.seeds}
    floor: dict[str, float] = {}
    inputs_energy: dict[str, float] = {}     # the inputs' own energies: one subset for every sampler
    n_inputs = 0
    for sampler in evaluated_labels(rx, run_dir):
        for seed in rx.seeds:
            rows = pq.read_table(relaxed_path(run_dir, sampler, seed))
            n_inputs = rows.num_rows
            labels = [k if k != "diffusion" else f"diffusion{int(v)}" for k, v in
                      zip(rows.column("kind").to_pylist(), rows.column("level").to_pylist())]
            labels = np.array(labels)
            groups = {"all": np.flatnonzero(labels != "prior")} if (labels != "prior").any() else {}
            for label in sorted(set(labels) - {"prior"}):
                groups[label] = np.flatnonzero(labels == label)
            for group, idx in groups.items():
                sub = rows.take(pa.array(idx))
                for stat, value in _stats(sub).items():
                    per_seed[seed][f"{sampler}_{group}_{stat}"] = value
                inputs = sub.column("input_rmsd").to_numpy()
                floor.update({f"{sampler}_{group}_median_ratio": 1.0, f"{sampler}_{group}_failure_fraction": 0.0,
                              f"{sampler}_{group}_median_rmsd_after": float(np.median(inputs)),
                              f"{sampler}_{group}_median_steps": 0.0, f"{sampler}_{group}_converged_fraction": 0.0,
                              **{f"{sampler}_{group}_{stat}": 0.0 for stat in ERROR_STATS}})
            if rx.energy_subset and "all" in groups:
                relaxed, unrelaxed = _energy_subset(cfg, data, rows, log, inputs_energy)
                for stat, value in relaxed.items():
                    per_seed[seed][f"{sampler}_subset_{stat}"] = value
                    floor[f"{sampler}_subset_{stat}"] = unrelaxed[stat]
            if "prior" in labels:                # generation from noise: judged as molecules
                generated = rows.take(pa.array(np.flatnonzero(labels == "prior")))
                for stat, value in _generation_stats(generated, data, log).items():
                    per_seed[seed][f"{sampler}_prior_{stat}"] = value
                # comparison: the stable molecules themselves (the data's own validity and uniqueness)
                for stat, value in _generation_stats(generated, data, log, use_targets=True).items():
                    floor[f"{sampler}_prior_{stat}"] = value
            s = per_seed[seed]
            if "all" not in groups:
                continue
            log(f"[evaluate] {sampler} seed {seed}: median ratio {s[f'{sampler}_all_median_ratio']:.3f}, failures "
                f"{s[f'{sampler}_all_failure_fraction']:.3f}, median RMSD {s[f'{sampler}_all_median_rmsd_after']:.3f} A, "
                f"median steps {s[f'{sampler}_all_median_steps']:.0f}"
                + (f", median GFN2 energy above the minimum {s[f'{sampler}_subset_median_energy_above_min']:.1f} kcal/mol "
                   f"(inputs {floor[f'{sampler}_subset_median_energy_above_min']:.1f})" if rx.energy_subset else ""))
    names = list(per_seed[rx.seeds[0]])
    metrics = {
        "experiment": cfg.name, "variant": cfg.variant, "seeds": list(rx.seeds), "n_samples": n_inputs,
        "n_reference": n_inputs, "n_noise_floor_set": n_inputs, "n_train": data.train_manifest.n_molecules,
        "reference_split": f"unstable inputs made from QM9 {rx.inputs.split} molecules; targets are their DFT geometries; "
                           "comparison column: no relaxation (ratio 1, the inputs' own RMSD)",
        "units": {"rmsd": "Angstrom", "energy_above_min": "kcal/mol (GFN2-xTB, above the GFN2 minimum nearest the DFT target)"},
        "metrics": {m: summary([per_seed[s][m] for s in rx.seeds]) for m in names},
        "noise_floor": {m: summary([floor[m]]) for m in names},
        "train_set": {m: floor[m] for m in names},
    }
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    lines = ["| metric | relaxed (mean ± std over seeds) | no relaxation |", "|---|---|---|"]
    lines += [f"| {m} | {metrics['metrics'][m]['mean']:.4f} ± {metrics['metrics'][m]['std']:.4f} | {floor[m]:.4f} |"
              for m in names]
    write_text_atomic(run_dir / "results.md", f"# {cfg.name}\n\n{cfg.description}\n\n{n_inputs} inputs per sampler "
                      f"and seed.\n\n" + "\n".join(lines) + "\n")
    return metrics
