"""Müller-Brown datasets: independent Langevin runs of many chains, split over Ray tasks.

The training set and the reference come from separate seed streams of the same protocol (OpenMM
Langevin at kT = 23, mass 0.5, friction 1, step 0.005, a frame every 50 steps, chains started at
the global minimum; the Fokker-Planck paper's data). Each dataset's manifest records its basin
populations beside the exact Boltzmann ones.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..config import MullerBrownSource
from ..parallel.tasks import run_tasks
from ..physics import muller_brown as mb
from ..sampling.langevin import LangevinSettings, langevin
from .store import Manifest
from .vectors import build_vector_table

MB_UNITS = {"length": "Müller-Brown units", "energy": "Müller-Brown units"}


def _settings(src: MullerBrownSource) -> LangevinSettings:
    return LangevinSettings(kT=src.kT, mass=src.mass, friction=src.friction, dt=src.dt, burn_in=src.burn_in,
                            n_frames=src.n_frames, save_every=src.save_every)


def _chain_block(src: MullerBrownSource, n_chains: int, seed: int, label: str) -> np.ndarray:
    start = np.tile(np.array(mb.MINIMA["A"]), (n_chains, 1))
    return langevin(mb.forces_np, start, _settings(src), seed, progress=lambda m: print(m, flush=True), label=label)


def run_chains(src: MullerBrownSource, n_chains: int, seed: int, label: str,
               log: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray]:
    """Frames [n_chains * n_frames, 2] ordered chain by chain, and the chain of every frame."""
    n_tasks = max(1, min(src.n_tasks, n_chains))
    shares = [len(s) for s in np.array_split(np.arange(n_chains), n_tasks)]
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_tasks)]
    t0 = time.time()
    log(f"[{label}] {n_chains} Langevin chains x {src.burn_in}+{src.n_frames * src.save_every} steps on {n_tasks} task(s)")
    blocks = run_tasks(_chain_block, [(src, n, sd, f"{label} {i + 1}/{n_tasks}")
                                      for i, (n, sd) in enumerate(zip(shares, seeds))])
    frames = np.concatenate(blocks, axis=1)                      # [n_frames, n_chains, 2]
    log(f"[{label}] {frames.shape[0] * frames.shape[1]} frames in {time.time() - t0:.0f}s")
    return frames.transpose(1, 0, 2).reshape(-1, 2), np.repeat(np.arange(n_chains), frames.shape[0])


def build_dataset(src: MullerBrownSource, role: str, seed: int, name: str, log: Callable[[str], None] = print):
    n_chains = src.n_chains if role == "train" else src.reference_chains
    frames, chain = run_chains(src, n_chains, seed, name, log)
    if not np.isfinite(frames).all():
        raise RuntimeError(f"{name}: a Langevin chain of the reference potential diverged; lower data.muller_brown.dt")
    pops, exact = mb.basin_populations(frames), mb.exact_populations(src.kT)
    log(f"[{name}] basin populations " + " / ".join(f"{k} {pops[k]:.3f} (exact {exact[k]:.3f})" for k in pops))
    table = build_vector_table(frames, group=chain, energy=mb.energy_np(frames), id_prefix=role)
    manifest = Manifest(name=name, source="muller_brown", units=dict(MB_UNITS), kT=src.kT,
                        level_of_theory="analytic Müller-Brown potential",
                        generator={"kind": role, "system": src.model_dump(mode="json"), "seed": seed,
                                   "masses": [src.mass, src.mass],
                                   "basin_populations": pops, "exact_populations": exact})
    return table, manifest
