"""Lennard-Jones cluster datasets: the reference set and the training sets of the PSM paper.

* reference: many independent MALA chains from jittered lattices, burn-in discarded, frames saved
  every ``save_every`` steps; chains are split over Ray tasks.
* random_subset (unbiased): fresh independent chains with the reference settings.
* first_frames (biased): the first N frames of one chain, saved every ``save_every`` steps,
  starting from the lattice (with the collapse transient) or after a burn-in.
* ``data_kT`` (cold set): either of the above sampled at another temperature; energies and forces
  are always those of the system, so the labels stay "true".
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ..config import LJSource, TrainSetConfig
from ..physics.lennard_jones import LennardJones, lattice_start
from ..parallel.tasks import run_tasks
from ..physics.mcmc import chain_diagnostics, mala
from .records import build_table
from .store import Manifest

ARGON = 18  # LJ particles are written as argon so that xyz viewers and element tables accept them
LJ_UNITS = {"length": "reduced (r_m = 1)", "energy": "reduced (pair well depth 1)", "forces": "reduced"}


def lj_potential(src: LJSource) -> LennardJones:
    return LennardJones(src.n_particles, src.pair_convention, src.harmonic_k)


@dataclass
class ChainSpec:
    n_chains: int
    burn_in: int
    n_steps: int
    save_every: int
    step_size: float
    kT: float
    init_spacing: float


def _run_chain_block(potential: LennardJones, spec: ChainSpec, n_chains: int, seed: int, label: str) -> tuple[np.ndarray, float]:
    """One Ray task's share: ``n_chains`` chains -> frames [n_saved, n_chains, n, 3] and acceptance."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    x0 = np.stack([lattice_start(potential.n_particles, spec.init_spacing, rng) for _ in range(n_chains)])
    result = mala(potential.energy_and_forces, x0, spec.kT, spec.step_size, spec.burn_in, spec.n_steps,
                  spec.save_every, seed=seed + 1, progress=lambda m: print(m, flush=True), progress_label=label)
    return result.positions, result.acceptance


def run_chains(potential: LennardJones, spec: ChainSpec, seed: int, n_tasks: int, label: str,
               log: Callable[[str], None] = print) -> tuple[np.ndarray, np.ndarray, float]:
    """Run ``spec.n_chains`` chains split over Ray tasks (in-process when Ray is not running).

    Returns frames [S, n, 3] ordered chain by chain (time order within a chain), the chain index of
    every frame, and the mean acceptance rate.
    """
    n_tasks = max(1, min(n_tasks, spec.n_chains))
    shares = np.array_split(np.arange(spec.n_chains), n_tasks)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_tasks)]
    t0 = time.time()
    log(f"[{label}] {spec.n_chains} MALA chains x {spec.burn_in}+{spec.n_steps} steps on {n_tasks} task(s)")
    blocks = run_tasks(_run_chain_block, [(potential, spec, len(s), sd, f"{label} {i + 1}/{n_tasks}")
                                          for i, (s, sd) in enumerate(zip(shares, seeds))])
    frames = np.concatenate([b[0] for b in blocks], axis=1)            # [n_saved, n_chains, n, 3]
    acceptance = float(np.average([b[1] for b in blocks], weights=[len(s) for s in shares]))
    n_saved = frames.shape[0]
    frames = frames.transpose(1, 0, 2, 3).reshape(-1, potential.n_particles, 3)
    chain = np.repeat(np.arange(spec.n_chains), n_saved)
    log(f"[{label}] {len(frames)} frames in {time.time() - t0:.0f}s, acceptance {acceptance:.2f}")
    return frames, chain, acceptance


def _labelled_table(potential: LennardJones, frames: np.ndarray, chain: np.ndarray, prefix: str):
    frames = frames - frames.mean(1, keepdims=True)        # the centre of geometry carries no information
    energy, forces = potential.energy_and_forces(torch.from_numpy(frames))
    table = build_table(np.full(potential.n_particles, ARGON), frames, forces=forces.numpy(), energy=energy.numpy(),
                        group=chain, ids=[f"{prefix}-{i}" for i in range(len(frames))])
    return table, energy.numpy()


def _manifest(name: str, src: LJSource, kind: str, extra: dict) -> Manifest:
    return Manifest(
        name=name, source="lj", units=dict(LJ_UNITS), kT=src.kT,
        level_of_theory=f"analytic Lennard-Jones, pair convention '{src.pair_convention}' "
                        f"(c={lj_potential(src).pair_factor:g}), harmonic k={src.harmonic_k:g}",
        generator={"kind": kind, "system": src.model_dump(mode="json", exclude={"reference"}), **extra},
    )


def build_reference(src: LJSource, seed: int, name: str, log: Callable[[str], None] = print):
    ref = src.reference
    spec = ChainSpec(ref.n_chains, ref.burn_in, ref.n_steps, ref.save_every, ref.step_size, src.kT, ref.init_spacing)
    potential = lj_potential(src)
    frames, chain, acc = run_chains(potential, spec, seed, ref.n_tasks, f"{name}", log)
    table, energy = _labelled_table(potential, frames, chain, "ref")
    diagnostics = chain_diagnostics(energy.reshape(ref.n_chains, -1))
    log(f"[{name}] mean energy {energy.mean():.2f} ± {energy.std():.2f}; energy autocorrelation time "
        f"{diagnostics['energy_autocorr_time_frames']:.1f} frames, effective sample size "
        f"{diagnostics['effective_sample_size']:.0f} of {len(energy)}; first vs second half of the chains: "
        f"{diagnostics['halves_difference_in_se']:+.1f} standard errors")
    manifest = _manifest(name, src, "reference", {
        "mcmc": ref.model_dump(mode="json"), "seed": seed, "acceptance": acc,
        "mean_energy": float(energy.mean()), "std_energy": float(energy.std()), **diagnostics,
    })
    return table, manifest


def build_training_set(src: LJSource, train: TrainSetConfig, seed: int, name: str,
                       log: Callable[[str], None] = print):
    ref = src.reference
    kT = train.data_kT or src.kT
    potential = lj_potential(src)
    if train.selection == "first_frames":
        burn = 0 if train.chain_start == "lattice" else ref.burn_in
        spec = ChainSpec(1, burn, train.n_frames * train.save_every, train.save_every, ref.step_size, kT, ref.init_spacing)
        frames, chain, acc = run_chains(potential, spec, seed, 1, name, log)
    elif train.selection == "random_subset":
        n_chains = min(ref.n_chains, train.n_frames)
        per_chain = math.ceil(train.n_frames / n_chains)
        spec = ChainSpec(n_chains, ref.burn_in, per_chain * ref.save_every, ref.save_every, ref.step_size, kT, ref.init_spacing)
        frames, chain, acc = run_chains(potential, spec, seed, ref.n_tasks, name, log)
        keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:train.n_frames])
        frames, chain = frames[keep], chain[keep]
    else:
        raise ValueError(f"data.train.selection '{train.selection}' is not available for LJ (use random_subset or first_frames)")
    table, energy = _labelled_table(potential, frames, chain, "train")
    manifest = _manifest(name, src, f"train/{train.selection}", {
        "train": train.model_dump(mode="json"), "sampling_kT": kT, "seed": seed, "acceptance": acc,
        "mcmc_step_size": ref.step_size, "mean_energy": float(energy.mean()), "std_energy": float(energy.std()),
    })
    return table, manifest
