"""MD17-style trajectories made here: Langevin MD with GFN2-xTB forces (tblite), written in the
MD17 ``.npz`` layout (R in Angstrom, E in kcal/mol, F in kcal/mol/Angstrom) and labelled as
GFN2-xTB level, never as "MD17".

Each molecule starts from an RDKit ETKDG + MMFF structure of its SMILES, is equilibrated, then
run with a frame saved every ``save_every`` steps. Frames are written in chunks with the full
integrator state (positions, velocities, random-generator state), so an interrupted run resumes
from the last chunk and produces the same trajectory as an uninterrupted one. Several molecules
run in parallel as Ray tasks (one CPU, one thread each).

    python -m moldiff.data.xtb_md --molecules ethanol aspirin --n-frames 10000 --out data/xtb_md
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..atomic import temp_sibling, write_text
from ..physics.xtb import EV_TO_KCAL_PER_MOL, KB_KCAL_PER_MOL_K, gfn2_calculator
from .npz import write_md_npz

MD17_SMILES = {
    "ethanol": "CCO",
    "malonaldehyde": "O=CC=CO",
    "uracil": "O=C1C=CNC(=O)N1",
    "toluene": "Cc1ccccc1",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic_acid": "O=C(O)c1ccccc1O",
    "aspirin": "CC(=O)Oc1ccccc1C(=O)O",
}


@dataclass(frozen=True)
class MDSettings:
    temperature_K: float = 500.0
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    equilibration_steps: int = 2000
    save_every: int = 10
    n_frames: int = 10000
    chunk_frames: int = 500
    seed: int = 0

    @property
    def kT(self) -> float:
        """Thermal energy in kcal/mol (0.9936 at 500 K)."""
        return KB_KCAL_PER_MOL_K * self.temperature_K


def initial_structure(name: str, seed: int):
    """ETKDG + MMFF geometry of an MD17 molecule (heavy atoms and hydrogens) as ase.Atoms."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    if name not in MD17_SMILES:
        raise ValueError(f"unknown molecule {name!r}; known: {', '.join(MD17_SMILES)}")
    mol = Chem.AddHs(Chem.MolFromSmiles(MD17_SMILES[name]))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise RuntimeError(f"RDKit could not embed {name} ({MD17_SMILES[name]})")
    AllChem.MMFFOptimizeMolecule(mol)
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def _save_npz_atomic(path: Path, **arrays) -> None:
    tmp = temp_sibling(path, ".npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def run_md(name: str, settings: MDSettings, out_dir: str | Path,
           log: Callable[[str], None] = print, stop_after_chunks: Optional[int] = None) -> Path:
    """Generate (or finish) the trajectory of one molecule; returns the final ``<name>.npz``.

    ``stop_after_chunks`` ends the call after that many new chunks (to test resuming).
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    work = Path(out_dir) / name
    final = Path(out_dir) / f"{name}.npz"
    if final.is_file():
        log(f"[xtb-md {name}] {final} exists")
        return final
    work.mkdir(parents=True, exist_ok=True)
    settings_file = work / "settings.json"
    if settings_file.exists() and json.loads(settings_file.read_text()) != asdict(settings):
        raise ValueError(f"{work}: holds a run with other settings ({settings_file}); use another output directory")
    write_text(settings_file, json.dumps(asdict(settings)))

    rng = np.random.default_rng(settings.seed)
    state_file = work / "state.npz"
    chunks = sorted(work.glob("chunk_*.npz"))
    atoms = initial_structure(name, settings.seed)
    atoms.calc = gfn2_calculator()
    atoms.set_constraint(FixCom())          # Langevin(fixcm=True) biases NVT sampling of small molecules
    if state_file.exists() and chunks:
        state = np.load(state_file, allow_pickle=False)
        atoms.set_positions(state["positions"])
        atoms.set_velocities(state["velocities"])
        rng.bit_generator.state = json.loads(str(state["rng_state"]))
        log(f"[xtb-md {name}] resuming after {len(chunks)} chunk(s)")
    dyn = Langevin(atoms, settings.timestep_fs * units.fs, temperature_K=settings.temperature_K,
                   friction=settings.friction_per_fs / units.fs, fixcm=False, rng=rng)
    if not chunks:
        MaxwellBoltzmannDistribution(atoms, temperature_K=settings.temperature_K, rng=rng)
        t0 = time.time()
        dyn.run(settings.equilibration_steps)
        log(f"[xtb-md {name}] equilibrated {settings.equilibration_steps} steps in {time.time() - t0:.0f}s")

    n_chunks = -(-settings.n_frames // settings.chunk_frames)
    t0, written = time.time(), 0
    for k in range(len(chunks), n_chunks):
        frames = min(settings.chunk_frames, settings.n_frames - k * settings.chunk_frames)
        R = np.zeros((frames, len(atoms), 3))
        F = np.zeros_like(R)
        E = np.zeros(frames)
        for f in range(frames):
            dyn.run(settings.save_every)
            R[f] = atoms.get_positions()
            E[f] = atoms.get_potential_energy() * EV_TO_KCAL_PER_MOL
            F[f] = atoms.get_forces(apply_constraint=False) * EV_TO_KCAL_PER_MOL   # raw labels, not FixCom's
        _save_npz_atomic(work / f"chunk_{k:05d}.npz", R=R, E=E, F=F)
        _save_npz_atomic(state_file, positions=atoms.get_positions(), velocities=atoms.get_velocities(),
                         rng_state=np.array(json.dumps(rng.bit_generator.state)))
        written += 1
        elapsed = time.time() - t0
        steps = written * settings.chunk_frames * settings.save_every
        remaining = (n_chunks - k - 1) * settings.chunk_frames * settings.save_every
        log(f"[xtb-md {name}] chunk {k + 1}/{n_chunks} ({(k + 1) * settings.chunk_frames} frames), "
            f"{1000 * elapsed / steps:.1f} ms/step, ~{remaining * elapsed / steps / 60:.0f} min left")
        if stop_after_chunks is not None and written >= stop_after_chunks and k + 1 < n_chunks:
            return work
    parts = [np.load(c) for c in sorted(work.glob("chunk_*.npz"))]
    theory = (f"GFN2-xTB (tblite), Langevin MD {settings.temperature_K:g} K, dt {settings.timestep_fs:g} fs, "
              f"friction {settings.friction_per_fs:g}/fs, a frame every {settings.save_every} steps")
    write_md_npz(final, atoms.numbers, np.concatenate([p["R"] for p in parts]),
                 np.concatenate([p["E"] for p in parts]), np.concatenate([p["F"] for p in parts]),
                 name=name, theory=theory)
    log(f"[xtb-md {name}] wrote {final}")
    return final


def generate(molecules: list[str], settings: MDSettings, out_dir: str | Path,
             log: Callable[[str], None] = print) -> dict[str, Path]:
    """Several molecules in parallel as Ray tasks (in-process, one after another, without Ray)."""
    from ..parallel.tasks import ray_running, run_tasks

    if not ray_running():
        return {m: run_md(m, settings, out_dir, log) for m in molecules}
    return dict(zip(molecules, run_tasks(_md_task, [(m, settings, out_dir) for m in molecules])))


def _md_task(molecule: str, settings: MDSettings, out_dir: str | Path) -> Path:
    os.environ["OMP_NUM_THREADS"] = "1"
    return run_md(molecule, settings, out_dir, lambda s: print(s, flush=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecules", nargs="+", default=["ethanol", "aspirin"], choices=sorted(MD17_SMILES))
    p.add_argument("--out", default="data/xtb_md")
    for field, default in asdict(MDSettings()).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    args = p.parse_args(argv)
    settings = MDSettings(**{f: getattr(args, f) for f in asdict(MDSettings())})
    from ..config import RayConfig
    from ..runtime import connect, log
    connect(RayConfig())
    for name, path in generate(args.molecules, settings, args.out, log).items():
        log(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
