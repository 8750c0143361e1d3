"""The relaxation pipeline: the unstable inputs (made once per input settings, cached under
``data.root``), and relaxing them with any method of ``moldiff.relaxation.methods`` in a Ray Data
pipeline: ``read_parquet(inputs).map_batches(RelaxBatch, compute=ActorPoolStrategy(size=num_actors))``,
streamed back and written as it arrives. Every actor holds one model replica (none for a classical
method) and relaxes its batches by continuous batching (``sampling.relax``) or batched FIRE. Every
input comes back exactly once: a molecule that diverges or hits the step cap is a row with
``failed`` set (and ratio inf for divergence), never dropped.

    <data.root>/relax-inputs-<key>/          the unstable inputs (made once from the test or validation split)
    <run_dir>/relaxed/<label>_seed<s>/       data.parquet: relaxed positions and their targets, steps,
                                             convergence flag, failure reason, RMSDs, ratio (one row per input);
                                             label: the method, or <method>-kmin<k> with a threshold k > 0
    <run_dir>/relaxed/k_min.json             what ``k_min: auto`` chose (``relaxation.threshold``)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq

from ..atomic import replace_directory, temp_sibling
from ..config import ConfigError, ExperimentConfig
from ..data.sources import PreparedData
from ..data.store import Manifest, dataset_exists, read_dataset, write_dataset
from ..parallel.partial import MADE_WITH, PartialResults
from ..plugins import registered as registered_plugins
from .methods import method, parse_label

K_MIN_RECORD = "k_min.json"     # relaxed/k_min.json: the thresholds k_min: auto chose

RELAXED_SCHEMA = pa.schema([
    ("id", pa.string()), ("target_id", pa.string()), ("kind", pa.string()), ("level", pa.float64()),
    ("z", pa.list_(pa.int16())), ("pos", pa.list_(pa.float32())), ("target", pa.list_(pa.float32())),
    ("n_steps", pa.int64()), ("converged", pa.bool_()),
    ("failed", pa.string()), ("first_index", pa.int64()), ("input_rmsd", pa.float64()), ("rmsd_after", pa.float64()),
    ("ratio", pa.float64()), ("device", pa.string())])

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
    # inputs made before `split` and `from_run` existed keep their cache keys
    if inputs["split"] == "test":
        del inputs["split"]
    if inputs["from_run"] is None:
        del inputs["from_run"]
    else:                                   # generated molecules: the run's samples, not the settings, make them
        inputs = {"from_run": str(Path(inputs["from_run"]).expanduser().resolve()),
                  "samples": _generated_fingerprint(Path(inputs["from_run"])), "n_molecules": inputs["n_molecules"]}
    spec = {"test": data.reference_manifest.name, "selection": data.reference_manifest.generator.get("selection"),
            "inputs": inputs, "n_steps": cfg.diffusion.n_steps}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.data.root).expanduser().resolve() / f"relax-inputs-{key}"


def prepare_inputs(cfg: ExperimentConfig, data: PreparedData, log: Callable[[str], None] = print) -> Path:
    from ..data.relaxation_inputs import PerturbationSettings, build_inputs

    path = inputs_path(cfg, data)
    if dataset_exists(path):
        log(f"[relax] using cached inputs {path}")
        return path
    ri = cfg.relaxation.inputs
    if ri.from_run is not None:
        return _generated_inputs(path, Path(ri.from_run).expanduser(), ri.n_molecules, log)
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


def _generated_samples(run_dir: Path) -> list[Path]:
    """The sample datasets of a run that generated molecules, seed by seed."""
    found = sorted((p for p in (run_dir / "samples").glob("seed_*") if dataset_exists(p)),
                   key=lambda p: int(p.name.split("_")[1]))
    if not found:
        raise FileNotFoundError(f"relaxation.inputs.from_run: {run_dir / 'samples'} holds no generated molecules "
                                "(samples/seed_<s>/); run that run's 'sample' stage first")
    return found


def _generated_fingerprint(run_dir: Path) -> list:
    from ..data.store import read_manifest
    return [[p.name, read_manifest(p).n_molecules] for p in _generated_samples(run_dir.expanduser())]


def _generated_inputs(path: Path, run_dir: Path, n_molecules, log) -> Path:
    """Inputs of kind ``generated``: another run's molecules as they came out of its sampler."""
    import pyarrow as pa

    from ..data.relaxation_inputs import generated_inputs

    tables = [read_dataset(p, validate=False)[0] for p in _generated_samples(run_dir)]
    table = pa.concat_tables(tables)
    if n_molecules is not None:
        table = table.slice(0, n_molecules)
    inputs = generated_inputs(table)
    write_dataset(path, inputs, Manifest(name=path.name, source="relaxation-inputs", units={"length": "Angstrom"},
                                         level_of_theory=f"molecules generated by {run_dir.name}",
                                         generator={"from_run": str(run_dir.resolve()), "made": {"generated": inputs.num_rows}}))
    log(f"[relax] wrote {path} ({inputs.num_rows} generated molecules of {run_dir} as inputs)")
    return path


def checkpoint_dir(path: str) -> str:
    p = Path(path).expanduser()
    return str(p / "checkpoints" / "final") if (p / "checkpoints" / "final").is_dir() else str(p)


class RelaxBatch:
    """A Ray Data actor: one model replica (none for mmff) on this actor's device, in the
    relaxation's precision, relaxing each batch of input rows with one method: a MoreRed sampler
    (continuous batching), batched FIRE on a learned force field, or RDKit MMFF94 one molecule at a
    time (on the CPU). Every output row names the device that relaxed it."""

    def __init__(self, sampler: str, model_dir, time_dir, settings: dict, slots: int, seed: int,
                 torch_threads: int, use_ema: bool, use_gpu: bool = False, precision: str = "float32",
                 plugins: dict | None = None, compile: bool = False):
        import torch

        from ..accelerator import describe, device_record, local_device
        from ..plugins import install
        from ..train.checkpoint import load_model

        install(plugins)

        torch.set_num_threads(torch_threads)
        self.sampler, self.settings, self.slots, self.seed, self.done = sampler, settings, slots, seed, 0
        self.engine = method(sampler).engine
        self.device = local_device(use_gpu and method(sampler).on_gpu)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[precision]

        def model(path):
            return load_model(path, use_ema=use_ema)[0].to(device=self.device, dtype=self.dtype)
        if self.engine == "reverse_diffusion":
            from ..models.morered import Relaxer
            self.model = Relaxer(model(model_dir), model(time_dir) if time_dir else None)
        elif self.engine == "force_field":
            self.model = model(model_dir)
        elif self.engine == "ase_optimizer":
            from ..ase import MoldiffCalculator
            self.model = MoldiffCalculator(model=load_model(model_dir, use_ema=use_ema)[0])     # float64, CPU
        compiled = ""
        if compile and self.engine in ("reverse_diffusion", "force_field"):
            from ..nn.compile import compile_blocks
            networks = [self.model.noise_model, self.model.time_model] if self.engine == "reverse_diffusion" else [self.model]
            # a joint model is both networks; compile_blocks skips blocks already compiled
            compiled = f", {sum(compile_blocks(n) for n in networks if n is not None)} blocks compiled"
        self.device_name = describe(device_record(self.device))
        print(f"[relax {sampler}] {precision} on {self.device_name}{compiled}", flush=True)

    def _morered(self, ids, zs, starts, targets) -> list[tuple]:
        from ..sampling.relax import ContinuousRelaxer, RelaxSettings

        keys = [int(hashlib.sha256(i.encode()).hexdigest()[:12], 16) for i in ids]
        st = self.settings
        relaxer = ContinuousRelaxer(self.model, RelaxSettings(self.sampler, st["max_steps"], st["k_min"],
                                                              st.get("noise_scale", 1.0),
                                                              st.get("final_denoise", False)), self.slots, self.seed)
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

        from ..data.batch import from_arrays
        from ..sampling.fire import FireSettings, fire_relax

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

    def _ase(self, ids, zs, starts, targets) -> list[tuple]:
        from ase import Atoms
        from ase.optimize import LBFGS

        out, t0 = [], time.time()
        for z, start in zip(zs, starts):
            atoms = Atoms(numbers=z, positions=start)
            atoms.calc = self.model
            optimizer = LBFGS(atoms, logfile=None)
            try:
                converged = bool(optimizer.run(fmax=self.settings["fmax"], steps=self.settings["max_steps"]))
                pos = atoms.get_positions()
                failed = "" if converged else ("nonfinite" if not np.isfinite(pos).all() else "step_cap")
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):     # a blown-up step
                converged, pos, failed = False, start, "nonfinite"
            out.append((pos, int(optimizer.nsteps), converged, failed, -1))
        print(f"[relax lbfgs] {len(out)} molecules in {time.time() - t0:.0f}s", flush=True)
        return out

    def _mmff(self, ids, zs, starts, targets) -> list[tuple]:
        from ..sampling.classical import mmff_relax

        out = []
        for z, start, target in zip(zs, starts, targets):
            r = mmff_relax(z, start, target, max_iters=self.settings["max_steps"])
            out.append((r.pos, r.n_steps, r.converged, r.failed, -1))
        return out

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..data.store import positions
        from ..metrics.relaxation import kabsch_rmsd

        t0 = time.time()
        ids = batch.column("id").to_pylist()
        zs = [np.asarray(z) for z in batch.column("z").to_pylist()]
        starts, targets = positions(batch), positions(batch, "target")
        relax = {"reverse_diffusion": self._morered, "force_field": self._fire, "ase_optimizer": self._ase,
                 "classical": self._mmff}[self.engine]
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
    """``label``: the sampler and its settings (``relaxation.methods``: ``jt``, ``jt-kmin19-denoised``)."""
    return run_dir / "relaxed" / f"{label}_seed{seed}"


def configured_label(rx, sampler: str, run_dir: Path) -> str:
    """The output label this configuration's sample stage writes for ``sampler``."""
    m = method(sampler)
    if m.engine != "reverse_diffusion":
        return sampler
    if rx.k_min != "auto":
        return m.label(rx.k_min, rx.noise_scale, rx.final_denoise)
    if not m.adaptive:
        return m.label(0, rx.noise_scale, rx.final_denoise)
    record = run_dir / "relaxed" / K_MIN_RECORD
    chosen = json.loads(record.read_text()).get(sampler) if record.exists() else None
    if chosen is None:
        raise FileNotFoundError(f"{record}: no k_min chosen for {sampler}; run the 'sample' stage first")
    return m.label(chosen["k_min"], rx.noise_scale, rx.final_denoise)


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


# network calls per input, for relaxation.compile: auto (ITP on the benchmark's QM9 inputs: ~106)
TYPICAL_RELAX_STEPS = 100
REFILLS_PER_BATCH = 8     # a Ray Data batch holds this many slots' worth of inputs


def relax_batch_size(n_inputs: int, num_actors: int, slots: int) -> int:
    """Inputs per Ray Data batch: enough that the actor's slots are refilled from the batch many
    times over (a batch of exactly ``slots`` inputs drains from full to one molecule and is never
    refilled), and no more than one actor's share, so every actor gets work."""
    per_actor = -(-n_inputs // max(1, num_actors))
    return max(1, min(per_actor, REFILLS_PER_BATCH * slots))


def relax_file(inputs: Path, out: Path, sampler: str, model_dir, time_dir, num_actors: int, slots: int, seed: int,
               settings: dict, cpus_per_actor: float = 1.0, torch_threads: int = 1, use_ema: bool = True,
               gpus_per_actor: float = 0, precision: str = "float32", compile: bool = False,
               batch_size: int | None = None, partial: Optional[PartialResults] = None,
               made_with: Optional[str] = None, log: Callable[[str], None] = print) -> int:
    """Relax every row of the inputs dataset with ``num_actors`` RelaxBatch actors (each holding
    ``gpus_per_actor`` of a GPU; 0: on CPUs); writes ``out/data.parquet`` atomically and returns the
    number of rows (always the number of inputs). ``batch_size``: inputs per Ray Data batch
    (default :func:`relax_batch_size`; benchmarks set it to compare). ``partial``: where the relaxed
    batches are kept as they stream back; a rerun relaxes only the inputs not yet there (each
    molecule's noise is keyed by its id, so it takes the path an uncut run would, up to the
    rounding of batching it with other molecules). ``made_with``:
    the work's id (``parallel.partial.Work``), recorded in ``out/_made_with.json``."""
    import ray

    table = pq.read_table(inputs / "data.parquet")
    n_inputs = table.num_rows
    with ExitStack() as cleanup:
        if partial is None:         # no resume asked for: a scratch place, gone however this call ends
            partial = PartialResults(temp_sibling(out, ".partial"), {}, log=None)
            cleanup.callback(partial.discard)
        parts = partial.names("part_*.parquet")
        done = set().union(*(pq.read_table(partial.path(n), columns=["id"]).column("id").to_pylist() for n in parts))
        todo = table.filter(pa.array([i not in done for i in table.column("id").to_pylist()])) if done else table
        if done:
            log(f"[resume] {out.name}: {len(done)}/{n_inputs} inputs relaxed before the run was cut short "
                f"({partial.dir}); relaxing the other {todo.num_rows}")
        if todo.num_rows:
            batch = batch_size or relax_batch_size(todo.num_rows, num_actors, slots)
            # in the object store before the actors start: once they hold every CPU, Ray Data's read
            # tasks would wait forever; the relaxed blocks stream back to this driver, which keeps them
            ds = ray.data.from_arrow(todo).repartition(-(-todo.num_rows // batch)).materialize().map_batches(
                RelaxBatch, batch_format="pyarrow", batch_size=batch,
                # one batch per actor at a time: an actor queues no batch while another actor sits idle
                # (Ray Data's default let the first ready actor take both batches of a 2-actor run)
                compute=ray.data.ActorPoolStrategy(size=num_actors, max_tasks_in_flight_per_actor=1), num_cpus=cpus_per_actor,
                # a classical method (RDKit) runs on the CPU: it asks for no GPU
                num_gpus=gpus_per_actor if method(sampler).on_gpu else 0,
                fn_constructor_kwargs={"model_dir": model_dir, "time_dir": time_dir, "sampler": sampler,
                                       "settings": settings, "slots": slots, "seed": seed,
                                       "torch_threads": torch_threads, "use_ema": use_ema,
                                       "use_gpu": gpus_per_actor > 0 and method(sampler).on_gpu, "precision": precision,
                                       "plugins": registered_plugins(), "compile": compile})
            for i, block in enumerate(ds.iter_batches(batch_size=None, batch_format="pyarrow"), start=len(parts)):
                partial.write(f"part_{i:06d}.parquet", lambda tmp, b=block: pq.write_table(b.cast(RELAXED_SCHEMA), tmp))
        relaxed = pa.concat_tables([pq.read_table(partial.path(n)) for n in partial.names("part_*.parquet")]).cast(RELAXED_SCHEMA)
        order = pa.compute.index_in(relaxed.column("id"), value_set=table.column("id"))
        relaxed = relaxed.take(pa.compute.sort_indices(order))        # in the inputs' order, however they streamed
        tmp = temp_sibling(out)
        tmp.mkdir(parents=True)
        try:
            pq.write_table(relaxed, tmp / "data.parquet")
            if made_with is not None:
                (tmp / MADE_WITH).write_text(json.dumps({"made_with": made_with}) + "\n")
            replace_directory(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        partial.discard()
        got = pq.read_table(out).num_rows
        if got != n_inputs:
            raise RuntimeError(f"{out}: {got} relaxed rows for {n_inputs} inputs")
        return got
