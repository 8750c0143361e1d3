"""One short check that every stage of every family runs on the GPU with ``ray.use_gpu=true``.

Tiny configs, one per family, each run end to end through the real entry point
(``run_experiment``: Ray Train workers, Ray actors, the Ray Data relaxation pipeline):

    lj13_dsm_train, lj13_psm_train     DSM / PSM (piecewise) training, 1 Train worker
    lj13_psm_train_2gpu                the same with 2 workers over NCCL (only with 2+ GPUs)
    lj13_pc_sampling                   PC sampling of the DSM model in GPU actors
    muller_brown_fp_train              conservative model + Fokker-Planck term
    muller_brown_simulation            iid samples and Langevin with the learned forces in GPU actors
    qm9_unigem_train, qm9_unigem_generation   UniGEM on the QM9 fixture, generation in GPU actors
    qm9_morered_train, qm9_morered_itp        MoreRed time + noise models, ITP relaxation (Ray Data, GPU actors)
    qm9_fire                           FIRE on a PaiNN force field (prepared by scripts/gpu_kit.sh) in GPU actors

Every stage records the device it ran on (Train workers in ``workers/rank<r>.json``, actors in
``devices.json``, relaxed rows in their ``device`` column); a stage passes when it finished and
every one of its records names a CUDA device. Writes ``<output>/gpu_check.{md,json}``.

    python benchmarks/gpu_check.py [--output docs/results] [--work runs/gpu_check] [--only a,b]
    python benchmarks/gpu_check.py --allow-cpu --output runs/gpu_check_cpu   # rehearsal on CPUs
    python benchmarks/gpu_check.py --prepare .gpu_kit/prepared                # done by gpu_kit.sh

Use ``bash scripts/gpu_check.sh`` on a GPU machine: it sets up Ray and the rest first.
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]

FIXTURES = ROOT / "tests" / "fixtures"
PREPARED_FORCE_FIELD = "force_field"          # <prepared>/force_field: a checkpoint directory


# ------------------------------------------------------------------------------------- configs


def lj13(work: Path, name: str, objective: str, gpu: dict) -> dict:
    return {
        "name": name, "output_dir": str(work / "runs"), "seed": 0,
        "data": {"source": "lj", "root": str(work / "data"),
                 "lj": {"n_particles": 13, "reference": {"n_chains": 32, "burn_in": 500, "n_steps": 1000,
                                                          "save_every": 20, "n_tasks": 4}},
                 "train": {"selection": "random_subset", "n_frames": 1024}},
        "model": {"backbone": "egnn", "hidden": 64, "layers": 3, "time_embedding": 16},
        "diffusion": {"process": "ve", "sigma_min": 0.01, "sigma_max": 8.0},
        "objective": {"name": objective, "psm": {"weighting": "piecewise", "t_p": 0.05}},
        "training": {"epochs": 6, "batch_size": 128, "warmup_steps": 10, "checkpoint_every": 6},
        "sampling": {"n_steps": 200, "n_samples": 1000, "seeds": [0], "batch_size": 500},
        "ray": {"num_workers": 1, "num_sampling_actors": 2, **gpu},
    }


def muller_brown(work: Path, gpu: dict) -> dict:
    return {
        "name": "muller_brown_fp", "output_dir": str(work / "runs"), "seed": 0,
        "data": {"source": "muller_brown", "root": str(work / "data"),
                 "muller_brown": {"n_chains": 32, "burn_in": 500, "n_frames": 100, "save_every": 20,
                                  "reference_chains": 32, "n_tasks": 4},
                 "train": {"selection": "all"}},
        "model": {"backbone": "mlp", "hidden_layers": [64, 64], "conservative": True, "input_scaling": False},
        "diffusion": {"process": "vp", "t_min": 1.0e-5},
        "objective": {"name": "fokker_planck", "fokker_planck": {"alpha": 5e-4}},
        "training": {"epochs": 4, "batch_size": 256, "warmup_steps": 10, "optimizer": "adamw", "ema_decay": 0.0},
        "sampling": {"sampler": "em", "n_steps": 100, "n_samples": 2000, "seeds": [0], "batch_size": 1000},
        "simulation": {"enabled": True, "n_chains": 256, "n_frames": 50, "save_every": 10, "burn_in": 100,
                       "num_actors": 2},
        "ray": {"num_workers": 1, "num_sampling_actors": 2, **gpu},
    }


def qm9_data(work: Path, **extra) -> dict:
    return {"source": "qm9", "root": str(work / "data"), "qm9": {"csv_dir": str(FIXTURES), **extra}}


def unigem(work: Path, gpu: dict) -> dict:
    return {
        "name": "qm9_unigem", "output_dir": str(work / "runs"), "seed": 0, "data": qm9_data(work),
        "model": {"backbone": "branched_egnn", "hidden": 64, "layers": 4, "shared_layers": 2},
        "diffusion": {"process": "polynomial", "n_steps": 200},
        "objective": {"name": "unigem", "unigem": {"nucleation_step": 20, "property": "lumo"}},
        "training": {"epochs": 4, "batch_size": 64, "warmup_steps": 0, "ema_decay": 0.0},
        "sampling": {"n_samples": 200, "batch_size": 100, "seeds": [0]},
        "ray": {"num_workers": 1, "num_sampling_actors": 2, **gpu},
    }


def morered(work: Path, name: str, kind: str, gpu: dict, **relaxation) -> dict:
    return {
        "name": name, "output_dir": str(work / "runs"), "seed": 0, "data": qm9_data(work, max_heavy_atoms=8),
        "model": {"backbone": "painn", "hidden": 64, "layers": 3, "n_rbf": 20, "cutoff": 5.0},
        "diffusion": {"process": "polynomial", "n_steps": 1000},
        "objective": {"name": "morered", "morered": {"kind": kind}},
        "training": {"epochs": 4, "batch_size": 64, "warmup_steps": 0, "ema_decay": 0.0, "grad_clip": 0.5},
        # diffusion inputs only: ETKDG needs RDKit and thermal ones GFN2-xTB, which a bare GPU machine lacks
        "relaxation": {"samplers": ["itp"], "max_steps": 300, "slots": 64, "num_actors": 2, "energy_subset": 0,
                       "inputs": {"n_molecules": 40, "kinds": ["diffusion"], "diffusion_steps": [50, 150]},
                       **relaxation},
        "ray": {"num_workers": 1, **gpu},
    }


def force_field(work: Path) -> dict:
    """The FIRE stage's model: trained by --prepare (GFN2-xTB labels need tblite)."""
    cfg = morered(work, "qm9_force_field", "joint", {})
    cfg["data"] = qm9_data(work, max_heavy_atoms=8, gfn2_labels={"n_molecules": 24, "n_perturbed": 1})
    cfg["objective"] = {"name": "force_field"}
    cfg["model"]["hidden"] = 32
    cfg["training"].update(epochs=30, batch_size=16)
    cfg["relaxation"]["samplers"] = ["fire"]
    return cfg


# --------------------------------------------------------------------------------------- stages


@dataclass
class Outcome:
    devices: list[dict] = field(default_factory=list)   # each with at least "device"
    throughput: Optional[float] = None
    unit: str = ""
    n: int = 0
    note: str = ""


@dataclass
class Context:
    work: Path
    use_gpu: bool
    n_gpus: int
    prepared: Optional[Path]
    log: Callable[[str], None]
    runs: dict = field(default_factory=dict)       # name -> ExperimentConfig of runs made so far

    @property
    def gpu(self) -> dict:
        return {"use_gpu": self.use_gpu, "gpus_per_actor": 0.5 if self.use_gpu else 1.0,
                "cpus_per_actor": 1.0, "cpus_per_worker": 1.0}

    def run(self, raw: dict, stages: list[str]):
        from moldiff.config import validate_config
        from moldiff.experiment import run_experiment

        cfg = validate_config(self.sized(raw), source=f"gpu_check {raw['name']}")
        run_experiment(cfg, stages=stages, command=f"benchmarks/gpu_check.py {raw['name']}", log=self.log)
        self.runs[raw["name"]] = cfg
        return cfg


    def sized(self, raw: dict) -> dict:
        """On CPUs (the rehearsal) the same stages with a fraction of the work."""
        if self.use_gpu:
            return raw
        import copy
        raw = copy.deepcopy(raw)
        s = raw.setdefault("sampling", {})
        s.update(n_samples=min(s.get("n_samples", 100), 100), batch_size=min(s.get("batch_size", 50), 50),
                 n_steps=min(s.get("n_steps", 40), 40))
        if "simulation" in raw:
            raw["simulation"].update(n_chains=16, n_frames=20, burn_in=20)
        if "relaxation" in raw:
            raw["relaxation"]["max_steps"] = min(raw["relaxation"].get("max_steps", 60), 60)
            raw["relaxation"]["inputs"]["n_molecules"] = 8
        raw["training"]["epochs"] = min(raw["training"]["epochs"], 2)
        return raw


def _workers(cfg) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((cfg.run_dir / "workers").glob("rank*.json"))]


def _actor_devices(cfg, stage: str) -> list[dict]:
    path = cfg.run_dir / "devices.json"
    records = json.loads(path.read_text()) if path.is_file() else []
    return [a for r in records if r["stage"] == stage for a in r["actors"]]


def _stage_seconds(cfg, stage: str) -> float:
    from moldiff.experiment import stage_seconds
    return stage_seconds(cfg.run_dir)[stage]


def _training(ctx: Context, raw: dict) -> Outcome:
    cfg = ctx.run(raw, ["data", "train"])
    meta = json.loads((cfg.run_dir / "checkpoints" / "final" / "meta.json").read_text())
    world = meta["world_size"]
    steps_per_s = meta["metrics"]["molecules_per_s"] / (world * cfg.training.batch_size)
    workers = _workers(cfg)
    backends = sorted({str(w.get("backend")) for w in workers})
    return Outcome(workers, steps_per_s, "training steps/s per worker (last epoch)", meta["step"],
                   f"{world} worker(s), backend {', '.join(backends)}; {cfg.model.backbone} "
                   f"{cfg.model.hidden}x{cfg.model.layers}, batch {cfg.training.batch_size}")


def lj13_dsm_train(ctx):
    return _training(ctx, lj13(ctx.work, "lj13_dsm", "dsm", ctx.gpu))


def lj13_psm_train(ctx):
    return _training(ctx, lj13(ctx.work, "lj13_psm", "psm", ctx.gpu))


def lj13_psm_train_2gpu(ctx):
    if ctx.n_gpus < 2:
        return None                                    # skipped: one GPU
    raw = lj13(ctx.work, "lj13_psm_2gpu", "psm", ctx.gpu)
    raw["ray"]["num_workers"] = 2
    out = _training(ctx, raw)
    if not all(w.get("backend") == "nccl" for w in out.devices):
        raise RuntimeError(f"2 GPU workers did not use NCCL: {[w.get('backend') for w in out.devices]}")
    return out


def lj13_pc_sampling(ctx):
    cfg = ctx.runs.get("lj13_dsm") or ctx.run(lj13(ctx.work, "lj13_dsm", "dsm", ctx.gpu), ["data", "train"])
    ctx.run(cfg.model_dump(mode="json"), ["data", "sample"])
    n = cfg.sampling.n_samples * len(cfg.sampling.seeds)
    seconds = _stage_seconds(cfg, "sample")
    return Outcome(_actor_devices(cfg, "sample"), n / seconds, "molecules/s (sample stage, actors started)", n,
                   f"{cfg.sampling.n_steps} PC steps, {cfg.ray.num_sampling_actors} actors"
                   + (f" x {cfg.ray.gpus_per_actor:g} GPU" if cfg.ray.use_gpu else ""))


def muller_brown_fp_train(ctx):
    return _training(ctx, muller_brown(ctx.work, ctx.gpu))


def muller_brown_simulation(ctx):
    cfg = ctx.runs.get("muller_brown_fp") or ctx.run(muller_brown(ctx.work, ctx.gpu), ["data", "train"])
    ctx.run(cfg.model_dump(mode="json"), ["data", "sample"])
    sim = cfg.simulation
    chain_steps = sim.n_chains * (sim.burn_in + sim.n_frames * sim.save_every)
    seconds = _stage_seconds(cfg, "sample")
    return Outcome(_actor_devices(cfg, "sample") + _actor_devices(cfg, "simulate"), chain_steps / seconds,
                   "Langevin chain-steps/s (sample stage incl. iid sampling)", chain_steps,
                   f"{cfg.sampling.n_samples} iid states, {sim.n_chains} chains x "
                   f"{sim.burn_in + sim.n_frames * sim.save_every} steps on {sim.num_actors} actors")


def qm9_unigem_train(ctx):
    return _training(ctx, unigem(ctx.work, ctx.gpu))


def qm9_unigem_generation(ctx):
    cfg = ctx.runs.get("qm9_unigem") or ctx.run(unigem(ctx.work, ctx.gpu), ["data", "train"])
    ctx.run(cfg.model_dump(mode="json"), ["data", "sample"])
    n = cfg.sampling.n_samples * len(cfg.sampling.seeds)
    return Outcome(_actor_devices(cfg, "sample"), n / _stage_seconds(cfg, "sample"),
                   "molecules/s (sample stage, actors started)", n,
                   f"{cfg.diffusion.n_steps} ancestral steps; chemistry metrics not computed (no RDKit here)")


def qm9_morered_train(ctx):
    time_run = _training(ctx, morered(ctx.work, "qm9_morered_time", "time", ctx.gpu))
    noise_run = _training(ctx, morered(ctx.work, "qm9_morered_noise", "noise", ctx.gpu,
                                       time_run=str(ctx.runs["qm9_morered_time"].run_dir)))
    return Outcome(time_run.devices + noise_run.devices, noise_run.throughput, noise_run.unit, noise_run.n,
                   f"time predictor and noise model; {noise_run.note}")


def _relaxed(path: Path):
    import pyarrow.parquet as pq
    rows = pq.read_table(path)
    devices = [{"device": d} for d in sorted(set(rows.column("device").to_pylist()))]
    return rows, devices


def qm9_morered_itp(ctx):
    if "qm9_morered_noise" not in ctx.runs:
        qm9_morered_train(ctx)
    cfg = ctx.runs["qm9_morered_noise"]
    ctx.run(cfg.model_dump(mode="json"), ["data", "sample"])
    rows, devices = _relaxed(cfg.run_dir / "relaxed" / "itp_seed0")
    return Outcome(devices, rows.num_rows / _stage_seconds(cfg, "sample"),
                   "molecules/s (sample stage: inputs made, actors started)", rows.num_rows,
                   f"{cfg.relaxation.precision}, {cfg.relaxation.num_actors} actors x {cfg.relaxation.slots} slots")


def qm9_fire(ctx):
    from moldiff.config import validate_config
    from moldiff.data.sources import prepare_data
    from moldiff.relaxation.pipeline import prepare_inputs, relax_file

    checkpoint = (ctx.prepared or Path("/nonexistent")) / PREPARED_FORCE_FIELD
    if not (checkpoint / "meta.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: no prepared force field (run scripts/gpu_kit.sh on a machine with "
                                "tblite and carry .gpu_kit)")
    cfg = validate_config(ctx.sized(morered(ctx.work, "qm9_fire", "noise", ctx.gpu)), source="gpu_check qm9_fire")
    data = prepare_data(cfg.data, ctx.log)
    inputs = prepare_inputs(cfg, data, ctx.log)
    out = ctx.work / "runs" / "qm9_fire" / "relaxed" / "fire_seed0"
    t0 = time.time()
    n = relax_file(inputs, out, "fire", str(checkpoint), None, cfg.relaxation.num_actors, cfg.relaxation.slots, 0,
                   {"max_steps": cfg.relaxation.max_steps, "k_min": 0, "fmax": cfg.relaxation.fmax}, cfg.ray.cpus_per_actor,
                   cfg.ray.torch_threads, True, gpus_per_actor=0.5 if ctx.use_gpu else 0,
                   precision=cfg.relaxation.precision)
    seconds = time.time() - t0
    _, devices = _relaxed(out)
    return Outcome(devices, n / seconds, "molecules/s (actors started)", n,
                   f"FIRE (max {cfg.relaxation.max_steps} steps), {cfg.relaxation.precision}, PaiNN force field prepared on CPU")


STAGES: dict[str, tuple[str, Callable[[Context], Optional[Outcome]]]] = {
    "lj13_dsm_train": ("training", lj13_dsm_train),
    "lj13_psm_train": ("training", lj13_psm_train),
    "lj13_psm_train_2gpu": ("training", lj13_psm_train_2gpu),
    "lj13_pc_sampling": ("sampling", lj13_pc_sampling),
    "muller_brown_fp_train": ("training", muller_brown_fp_train),
    "muller_brown_simulation": ("sampling", muller_brown_simulation),
    "qm9_unigem_train": ("training", qm9_unigem_train),
    "qm9_unigem_generation": ("sampling", qm9_unigem_generation),
    "qm9_morered_train": ("training", qm9_morered_train),
    "qm9_morered_itp": ("sampling", qm9_morered_itp),
    "qm9_fire": ("sampling", qm9_fire),
}


def on_cuda(devices: list[dict]) -> bool:
    """A stage passes only if it recorded devices and every one is a CUDA device."""
    return bool(devices) and all(str(d.get("device", "")).startswith("cuda") for d in devices)


def run_stages(ctx: Context, names: list[str], command: str) -> list[dict]:
    import torch

    records = []
    for name in names:
        kind, fn = STAGES[name]
        ctx.log(f"[gpu_check] {name} ...")
        t0 = time.time()
        error, outcome = "", None
        try:
            outcome = fn(ctx)
        except Exception as err:          # one broken stage must not hide the others' results
            error = f"{type(err).__name__}: {err}"
            ctx.log(f"[gpu_check] {name} FAILED: {error}\n{traceback.format_exc()}")
        seconds = time.time() - t0
        skipped = outcome is None and not error
        devices = outcome.devices if outcome else []
        passed = bool(outcome) and on_cuda(devices)
        names_seen = sorted({d.get("device_name") or d["device"] for d in devices})
        record = {"experiment": "gpu_check", "variant": name, "metric": "passed", "mean": float(passed), "std": 0.0,
                  "n_seeds": 1, "seed_kind": "training" if kind == "training" else "sampling",
                  "n_samples": outcome.n if outcome else 0, "noise_floor": None, "command": command,
                  "device": ", ".join(sorted({d["device"] for d in devices})) or None,
                  "device_name": ", ".join(names_seen) or None, "torch": torch.__version__,
                  "cuda": torch.version.cuda, "throughput": outcome.throughput if outcome else None,
                  "throughput_unit": outcome.unit if outcome else "", "seconds": round(seconds, 1),
                  "skipped": skipped, "error": error, "note": outcome.note if outcome else
                  ("needs 2 or more GPUs" if skipped else "")}
        records.append(record)
        status = "skipped" if skipped else ("passed" if passed else
                                            "ran on the CPU (rehearsal)" if outcome and not ctx.use_gpu else "FAILED")
        ctx.log(f"[gpu_check] {name}: {status} on {record['device']} in {seconds:.0f}s"
                + (f", {outcome.throughput:.3g} {outcome.unit}" if outcome and outcome.throughput else ""))
    return records


def render(records: list[dict], on_gpu: bool, command: str, seconds: float) -> list[str]:
    gpu = next((r["device_name"] for r in records if r["device"] and "cuda" in r["device"]), None)
    ok = [r for r in records if not r["skipped"]]
    lines = ["# GPU check", "", f"Command: `{command}`", ""]
    if not on_gpu:
        lines += ["**This check has not run on a GPU yet.** The table below is a CPU rehearsal "
                  "(`--allow-cpu`, `ray.use_gpu=false`, a fraction of each stage's work): it shows that every stage "
                  "runs end to end through the same code; a stage passes only on a CUDA device, so every row reads 0 "
                  "here, and its throughput says nothing about a GPU. Run "
                  "`bash scripts/gpu_check.sh` on a machine with a GPU to publish this page from a real run.", ""]
    else:
        passed = sum(r["mean"] for r in ok)
        lines += [f"On {gpu}, torch {records[0]['torch']}, CUDA {records[0]['cuda']}: **{passed:.0f} of {len(ok)} "
                  f"stages passed** (ran and recorded only CUDA devices) in {seconds:.0f} s in all.", ""]
    lines += ["| stage | passed | device | throughput | seconds | note |", "|---|---|---|---|---|---|"]
    for r in records:
        if r["skipped"]:
            lines.append(f"| {r['variant']} | skipped | | | | {r['note']} |")
            continue
        rate = f"{r['throughput']:.3g} {r['throughput_unit']}" if r["throughput"] else ""
        note = r["error"] or r["note"]
        lines.append(f"| {r['variant']} | {r['mean']:.0f} | {r['device_name'] or ''} | {rate} | {r['seconds']} | "
                     f"{note} |")
    lines += ["", "Throughput is from one short run per stage (no repeats, so no error bar); sampling and "
              "relaxation rates include starting the actors and loading the model, so they understate the "
              "steady state. Records: `gpu_check.json` (`metric: passed`, 1 or 0, with device, GPU name, torch and "
              "CUDA versions, throughput)."]
    return lines


# ------------------------------------------------------------------------------------- prepare


def prepare(target: Path, work: Path, log) -> None:
    """What the GPU machine cannot make itself: the FIRE stage's force field (GFN2-xTB labels)."""
    from moldiff.config import validate_config
    from moldiff.experiment import run_experiment
    from moldiff.runtime import connect
    from moldiff.train.checkpoint import copy_checkpoint

    raw = force_field(work)
    raw["ray"] = {"num_workers": 1}
    cfg = validate_config(raw, source="gpu_check force field")
    connect(cfg.ray)
    run_experiment(cfg, stages=["data", "train"], command="benchmarks/gpu_check.py --prepare", log=log)
    target.mkdir(parents=True, exist_ok=True)
    copy_checkpoint(cfg.run_dir / "checkpoints" / "final", target / PREPARED_FORCE_FIELD)
    log(f"[gpu_check] prepared {target / PREPARED_FORCE_FIELD}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default=str(ROOT / "docs" / "results"), help="folder for gpu_check.md / .json")
    p.add_argument("--work", default=None, help="run and data folder (default: a fresh temporary folder)")
    p.add_argument("--only", default=None, help="comma-separated stages (default: all)")
    p.add_argument("--allow-cpu", action="store_true", help="rehearse on CPUs (ray.use_gpu=false; nothing passes)")
    p.add_argument("--prepared", default=str(ROOT / ".gpu_kit" / "prepared"))
    p.add_argument("--prepare", default=None, metavar="DIR", help="make the prepared inputs into DIR and exit")
    args = p.parse_args(argv)

    import tempfile

    import torch

    from moldiff.runtime import connect, log
    from moldiff.config import RayConfig
    from moldiff.reporting.files import write_result

    torch.set_num_threads(1)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-"))
    if args.prepare:
        prepare(Path(args.prepare), work, log)
        return 0
    n_gpus = torch.cuda.device_count()
    if n_gpus == 0 and not args.allow_cpu:
        print(f"error: torch {torch.__version__} sees no CUDA device; this check is for GPU machines "
              "(--allow-cpu rehearses it on CPUs)", file=sys.stderr)
        return 2
    names = list(STAGES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        print(f"error: unknown stage(s) {unknown}; stages: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    use_gpu = n_gpus > 0
    import os
    connect(RayConfig(num_cpus=min(os.cpu_count() or 2, 16), object_store_memory=2 * 2 ** 30))
    log(f"[gpu_check] {n_gpus} CUDA device(s), torch {torch.__version__}, CUDA {torch.version.cuda}; "
        f"{len(names)} stage(s); work in {work}")
    # gpu_check.sh is the way on a GPU machine; a CPU rehearsal runs this script directly
    command = ("python benchmarks/gpu_check.py " + shlex.join(argv if argv is not None else sys.argv[1:])
               if args.allow_cpu else "bash scripts/gpu_check.sh" + (f" --only {args.only}" if args.only else ""))
    t0 = time.time()
    ctx = Context(work, use_gpu, n_gpus, Path(args.prepared) if args.prepared else None, log)
    records = run_stages(ctx, names, command)
    lines = render(records, use_gpu, command, time.time() - t0)
    print(write_result(str(Path(args.output) / "gpu_check"), lines, records))
    # a rehearsal succeeds when every stage ran; a real check when every stage passed on a GPU
    failed = [r["variant"] for r in records if not r["skipped"] and (r["error"] if args.allow_cpu else r["mean"] < 1)]
    if failed:
        print(f"[gpu_check] not passed: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
