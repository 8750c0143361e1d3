"""GFN2-xTB energy and force labels (tblite) for training the force-field baseline of the
relaxation benchmark: each stable training molecule plus ``n_perturbed`` copies displaced by
forward diffusion to a random step in ``[k_lo, k_hi]`` (the same kind of off-equilibrium structure
the relaxer meets) and ``n_thermal`` frames of one short GFN2-xTB Langevin run at ``thermal_K``
(hot geometries, like the benchmark's thermal inputs; the run's own energies and forces are the
labels, so they cost no extra calls), labelled in eV and eV/Angstrom. Runs as Ray tasks over
chunks of molecules when Ray is up (one tblite thread each)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa

from .records import build_table
from .relaxation_inputs import diffusion_input, gfn2_langevin


@dataclass(frozen=True)
class LabelSettings:
    n_perturbed: int = 4
    k_lo: int = 5
    k_hi: int = 100                    # sigma <= 0.14 A: beyond, atoms collide and GFN2 forces explode
    n_steps: int = 1000
    n_thermal: int = 0
    thermal_K: float = 1000.0
    thermal_steps: int = 60
    seed: int = 0


def gfn2_energy_forces(z: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray]:
    """(energy eV, forces [n, 3] eV/Angstrom) of one structure."""
    from ase import Atoms

    from ..physics.xtb import gfn2_calculator

    atoms = Atoms(numbers=z, positions=pos)
    atoms.calc = gfn2_calculator()
    return float(atoms.get_potential_energy()), np.asarray(atoms.get_forces())


def label_chunk(items: list[tuple[int, str, np.ndarray, np.ndarray]], s: LabelSettings) -> list[dict]:
    os.environ["OMP_NUM_THREADS"] = "1"
    out = []
    for index, ident, z, pos in items:
        rng = np.random.default_rng(np.random.SeedSequence([s.seed, index, 5]))
        structures = [(f"{ident}-stable", pos - pos.mean(0))]
        for j in range(s.n_perturbed):
            k = int(rng.integers(s.k_lo, s.k_hi + 1))
            structures.append((f"{ident}-k{k}-{j}", diffusion_input(pos, k, s.n_steps, rng)))
        for name, x in structures:
            energy, forces = gfn2_energy_forces(z, x)
            out.append({"id": name, "z": z, "pos": x, "energy": energy, "forces": forces})
        if s.n_thermal:
            out += thermal_frames(ident, z, pos - pos.mean(0), s, int(rng.integers(2 ** 31)))
    return out


def thermal_frames(ident: str, z: np.ndarray, pos: np.ndarray, s: LabelSettings, seed: int) -> list[dict]:
    """``n_thermal`` evenly spaced frames of one GFN2-xTB Langevin run (0.5 fs steps, friction
    0.01 / fs, centre of mass fixed) with the energies and forces the run computed for them."""
    every = max(s.thermal_steps // s.n_thermal, 1)
    frames = []

    def keep(dynamics, atoms):          # step 0 is the stable frame, labelled already
        if dynamics.nsteps > 0 and len(frames) < s.n_thermal:
            frames.append({"id": f"{ident}-thermal{len(frames)}", "z": z, "pos": atoms.get_positions().copy(),
                           "energy": float(atoms.get_potential_energy()),
                           # the raw GFN2 forces: FixCom would hand back forces with the centre-of-mass part removed
                           "forces": atoms.get_forces(apply_constraint=False).copy()})
    gfn2_langevin(z, pos, s.thermal_K, every * s.n_thermal, seed, observe=keep, interval=every)
    return frames


def build_labelled(table: pa.Table, s: LabelSettings, chunk: int = 50,
                   log: Callable[[str], None] = print) -> pa.Table:
    from ..parallel.tasks import run_tasks
    from .store import positions

    ids, zs, ps = table.column("id").to_pylist(), table.column("z").to_pylist(), positions(table)
    items = [(i, ids[i], np.asarray(zs[i]), ps[i]) for i in range(len(ids))]
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    log(f"[xtb-labels] {len(items)} molecules x (1 stable + {s.n_perturbed} perturbed + {s.n_thermal} thermal) "
        f"in {len(chunks)} chunk(s)")
    rows = [r for part in run_tasks(label_chunk, [(c, s) for c in chunks]) for r in part]
    return build_table([r["z"] for r in rows], [r["pos"] for r in rows], ids=[r["id"] for r in rows],
                       energy=np.array([r["energy"] for r in rows]), forces=[r["forces"] for r in rows])
