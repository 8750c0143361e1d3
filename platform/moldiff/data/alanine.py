"""Alanine dipeptide reference data: parallel-tempering (replica-exchange) Langevin MD in OpenMM,
coarse-grained to the five backbone beads C, N, CA, C, N.

The phi > 0 basin of alanine dipeptide is rare at 300 K and crossings are slow, so plain MD of
affordable length misses or mis-weights it. Replica exchange runs K copies at temperatures from
``t_min`` to ``t_max`` (geometric ladder) and every ``swap_every`` steps tries to exchange
neighbouring configurations with the Metropolis rule min(1, exp[(b_i - b_j)(U_i - U_j)]); the
lowest replica then samples the 300 K Boltzmann distribution without reweighting, and visits the
rare basin through the hot replicas.

Runs are written chunk by chunk under ``<out_dir>/run_<r>/``: ``chunk_<k>.npy`` (bead positions
[frames, 5, 3] in nm of the 300 K replica) and ``state_<k>.npz`` (every replica's positions and
velocities at the chunk's end, the swap statistics); each chunk starts fresh integrators seeded by (seed, run, chunk),
so an interrupted run resumes to exactly the trajectory an uninterrupted one makes. Several
independent runs go in parallel as Ray tasks, each on one core (OpenMM's Reference platform: the
fastest for 22 atoms, and single-threaded).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..physics.alanine import CG_ATOMS, CG_MASSES_DA, backbone_dihedrals, build_system, kT_kj


@dataclass(frozen=True)
class REMDSettings:
    t_min: float = 300.0                # K; frames come from this replica
    t_max: float = 600.0
    n_replicas: int = 4
    friction_per_ps: float = 1.0
    timestep_fs: float = 2.0
    constraints: str = "hbonds"         # "none" is the bgmol setting (then use 1 fs)
    swap_every: int = 500               # MD steps between exchange attempts (1 ps at 2 fs)
    save_every: int = 500               # MD steps between saved frames
    equilibration_steps: int = 5000
    n_frames: int = 10000               # frames per run
    chunk_frames: int = 1000

    def temperatures(self) -> np.ndarray:
        if self.n_replicas == 1:
            return np.array([self.t_min])
        return self.t_min * (self.t_max / self.t_min) ** (np.arange(self.n_replicas) / (self.n_replicas - 1))


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % 2_000_000_000) + 1


class _Replicas:
    """K OpenMM contexts (Reference platform) at the ladder's temperatures."""

    def __init__(self, settings: REMDSettings, seeds: list[int]):
        import openmm
        import openmm.unit as u

        self.u = u
        _, system, self.initial = build_system(settings.constraints)
        self.temps = settings.temperatures()
        self.contexts, self.integrators = [], []
        platform = openmm.Platform.getPlatformByName("Reference")
        for temp, seed in zip(self.temps, seeds):
            integ = openmm.LangevinMiddleIntegrator(temp * u.kelvin, settings.friction_per_ps / u.picosecond,
                                                    settings.timestep_fs * u.femtosecond)
            integ.setRandomNumberSeed(seed)
            self.integrators.append(integ)
            self.contexts.append(openmm.Context(system, integ, platform))

    def set_state(self, pos: np.ndarray, vel: np.ndarray) -> None:
        for ctx, p, v in zip(self.contexts, pos, vel):
            ctx.setPositions(p)
            ctx.setVelocities(v)

    def get(self, i: int, velocities: bool = False):
        s = self.contexts[i].getState(getPositions=True, getEnergy=True, getVelocities=velocities)
        pos = s.getPositions(asNumpy=True).value_in_unit(self.u.nanometer)
        energy = s.getPotentialEnergy().value_in_unit(self.u.kilojoule_per_mole)
        vel = s.getVelocities(asNumpy=True).value_in_unit(self.u.nanometer / self.u.picosecond) if velocities else None
        return np.asarray(pos), energy, None if vel is None else np.asarray(vel)

    def step(self, n: int) -> None:
        for integ in self.integrators:
            integ.step(n)

    def try_swaps(self, rng: np.random.Generator, parity: int, stats: np.ndarray) -> None:
        """Metropolis exchanges between neighbours (parity picks pairs 0-1, 2-3, ... or 1-2, 3-4, ...)."""
        betas = 1.0 / np.array([kT_kj(t) for t in self.temps])
        for i in range(parity, len(self.contexts) - 1, 2):
            j = i + 1
            pi, ui, vi = self.get(i, velocities=True)
            pj, uj, vj = self.get(j, velocities=True)
            stats[i, 0] += 1
            if rng.random() < np.exp(min(0.0, (betas[i] - betas[j]) * (ui - uj))):
                stats[i, 1] += 1
                scale = np.sqrt(self.temps[j] / self.temps[i])
                self.contexts[i].setPositions(pj)
                self.contexts[i].setVelocities(vj / scale)
                self.contexts[j].setPositions(pi)
                self.contexts[j].setVelocities(vi * scale)


def _save_atomic(path: Path, **arrays) -> None:
    tmp = path.parent / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays) if path.suffix == ".npz" else np.save(fh, arrays["data"])
    os.replace(tmp, path)


def run_remd(settings: REMDSettings, out_dir: str | Path, seed: int, run: int,
             log: Callable[[str], None] = print) -> np.ndarray:
    """One replica-exchange run; returns the 300 K replica's bead frames [n_frames, 5, 3] (nm)."""
    import openmm

    out = Path(out_dir) / f"run_{run}"
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "settings.json"
    if meta.exists() and json.loads(meta.read_text()) != {**asdict(settings), "seed": seed}:
        raise ValueError(f"{out}: holds a run with other settings ({meta}); use another directory")
    meta.write_text(json.dumps({**asdict(settings), "seed": seed}, indent=2))
    n_chunks = -(-settings.n_frames // settings.chunk_frames)
    label = f"remd run {run}"
    for k in range(n_chunks):
        chunk = out / f"chunk_{k:04d}.npy"
        if chunk.exists():
            continue
        replicas = _Replicas(settings, [_seed(seed, run, k, i) for i in range(settings.n_replicas)])
        rng = np.random.default_rng(_seed(seed, run, k, 999))
        if k == 0:
            pos0 = replicas.initial
            for ctx, temp in zip(replicas.contexts, replicas.temps):
                ctx.setPositions(pos0)
                openmm.LocalEnergyMinimizer.minimize(ctx)
                ctx.setVelocitiesToTemperature(temp, _seed(seed, run, 7))
            replicas.step(settings.equilibration_steps)
            stats = np.zeros((settings.n_replicas, 2))
        else:
            saved = np.load(out / f"state_{k - 1:04d}.npz")
            replicas.set_state(saved["pos"], saved["vel"])
            stats = saved["swaps"]
        n = min(settings.chunk_frames, settings.n_frames - k * settings.chunk_frames)
        frames = np.empty((n, len(CG_ATOMS), 3))
        t0, steps, parity = time.time(), 0, k % 2
        for f in range(n):
            done = 0
            while done < settings.save_every:
                block = min(settings.swap_every - steps % settings.swap_every, settings.save_every - done)
                replicas.step(block)
                steps += block
                done += block
                if steps % settings.swap_every == 0:
                    replicas.try_swaps(rng, parity, stats)
                    parity = 1 - parity
            frames[f] = replicas.get(0)[0][list(CG_ATOMS)]
        pos = np.stack([replicas.get(i, velocities=True)[0] for i in range(settings.n_replicas)])
        vel = np.stack([replicas.get(i, velocities=True)[2] for i in range(settings.n_replicas)])
        _save_atomic(out / f"state_{k:04d}.npz", pos=pos, vel=vel, swaps=stats)
        _save_atomic(chunk, data=frames)                # the chunk last: it marks the chunk as done
        (out / f"state_{k - 2:04d}.npz").unlink(missing_ok=True)   # keep the last two states
        ns = steps * settings.timestep_fs * 1e-6
        phi = backbone_dihedrals(frames)[:, 0]
        acc = stats[:, 1] / np.maximum(stats[:, 0], 1)
        log(f"[{label}] chunk {k + 1}/{n_chunks}: {n} frames, {ns:.2f} ns per replica in {time.time() - t0:.0f}s "
            f"({ns / max(time.time() - t0, 1e-9) * 86400:.0f} ns/day); phi > 0 in {np.mean(phi > 0):.1%} of the "
            f"chunk; swap acceptance {' '.join(f'{a:.2f}' for a in acc[:-1])}")
    return np.concatenate([np.load(out / f"chunk_{k:04d}.npy") for k in range(n_chunks)])


def _run_task(settings: REMDSettings, out_dir: str, seed: int, run: int) -> np.ndarray:
    os.environ["OPENMM_CPU_THREADS"] = "1"
    return run_remd(settings, out_dir, seed, run, lambda m: print(m, flush=True))


def generate(settings: REMDSettings, out_dir: str | Path, seed: int, n_runs: int,
             log: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """``n_runs`` independent runs in parallel (Ray tasks; in-process without Ray).
    Returns bead frames [n_runs * n_frames, 5, 3] (nm) run by run, and the run of every frame."""
    from ..parallel.tasks import ray_running, run_tasks

    log(f"[remd] {n_runs} run(s) x {settings.n_frames} frames, {settings.n_replicas} replicas "
        f"{np.round(settings.temperatures()).astype(int).tolist()} K, frames every "
        f"{settings.save_every * settings.timestep_fs / 1000:g} ps -> {out_dir}")
    if ray_running():
        runs = run_tasks(_run_task, [(settings, str(out_dir), seed, r) for r in range(n_runs)])
    else:
        runs = [run_remd(settings, out_dir, seed, r, log) for r in range(n_runs)]
    return np.concatenate(runs), np.repeat(np.arange(n_runs), [len(r) for r in runs])


def settings_from(src) -> REMDSettings:
    """REMD settings from the config's ``data.alanine`` section."""
    return REMDSettings(t_min=src.t_min, t_max=src.t_max, n_replicas=src.n_replicas,
                        friction_per_ps=src.friction_per_ps, timestep_fs=src.timestep_fs,
                        constraints=src.constraints, swap_every=src.swap_every, save_every=src.save_every,
                        equilibration_steps=src.equilibration_steps, n_frames=src.n_frames,
                        chunk_frames=src.chunk_frames)


def build_dataset(src, role: str, seed: int, name: str, work_dir: Path, log: Callable[[str], None] = print):
    """A state-vector dataset of centred bead coordinates (15 per frame, nm) from fresh REMD runs."""
    from ..data.store import Manifest
    from ..data.vectors import build_vector_table

    n_runs = src.n_runs if role == "train" else src.reference_runs
    beads, run = generate(settings_from(src), work_dir, seed, n_runs, log)
    centred = beads - beads.mean(1, keepdims=True)
    phi_psi = backbone_dihedrals(beads)
    log(f"[{name}] {len(beads)} frames; phi > 0 in {np.mean(phi_psi[:, 0] > 0):.2%} "
        f"(per run: {', '.join(f'{np.mean(phi_psi[run == r, 0] > 0):.2%}' for r in range(n_runs))})")
    manifest = Manifest(
        name=name, source="alanine", units={"length": "nm", "energy": "kJ/mol", "mass": "Da"},
        kT=kT_kj(src.t_min), level_of_theory="amber99sb-ildn + OBC implicit solvent (OpenMM), coarse-grained "
        "to the backbone beads C, N, CA, C, N",
        generator={"kind": role, "system": src.model_dump(mode="json"), "seed": seed, "particles": len(CG_ATOMS),
                   "masses": [m for m in CG_MASSES_DA for _ in range(3)],
                   "phi_positive_fraction": float(np.mean(phi_psi[:, 0] > 0))})
    return build_vector_table(centred.reshape(len(beads), -1), group=run, id_prefix=role), manifest
