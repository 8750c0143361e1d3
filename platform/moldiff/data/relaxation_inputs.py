"""Unstable inputs for the relaxation benchmark (our QM7-X stand-in, CHNOF only).

Every stable molecule (a QM9 DFT geometry of the test split) gets perturbed copies; the target
of each copy is the molecule's own DFT geometry, in the same atom order:

  etkdg        an RDKit ETKDGv3 embedding of the molecule's bond graph (perceived from the DFT
               geometry with rdDetermineBonds, so atoms keep their order), not optimised: what a
               cheap conformer generator hands to a relaxer;
  diffusion    forward diffusion to step s of the polynomial schedule (x_s = sqrt(abar_s) x_0 +
               sqrt(1 - abar_s) eps, eps centred), at each of ``diffusion_steps`` (MoreRed's
               synthetic set used s = 250);
  thermal      the last frame of a short GFN2-xTB Langevin run (tblite) at ``thermal_K`` started
               from the DFT geometry: a physical, non-Gaussian distortion;
  prior        pure noise N(0, I) in the centred subspace with the molecule's composition: "relaxing"
               it is de novo generation of p(x | Z) (MoreRed's QM9 generation), judged by validity
               and uniqueness rather than by the distance to the target.
  generated    (``generated_inputs``) molecules another model generated, as they are: no reference
               geometry (the target is the input itself), judged as molecules before and after.

The table has the record columns (id, z, pos = the unstable input) plus ``target`` (flattened
positions), ``target_id``, ``kind``, ``level`` (diffusion step or temperature; 0 for etkdg) and
``input_rmsd`` (Kabsch RMSD of input to target, all atoms). A molecule whose embedding fails is
left out of that kind and counted in the manifest, never silently.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
import pyarrow as pa

from ..metrics.relaxation import kabsch_rmsd
from .records import build_table

KINDS = ("etkdg", "diffusion", "thermal", "prior")
JUDGED_AS_MOLECULES = ("prior", "generated")      # kinds without a reference geometry to be near
# kinds a relaxer meets in practice (a conformer generator's guess, a hot geometry), as opposed to
# forward-diffusion noise, MoreRed's own training corruption: the benchmark's headline group
PHYSICAL_KINDS = ("etkdg", "thermal")


@dataclass(frozen=True)
class PerturbationSettings:
    kinds: tuple[str, ...] = ("etkdg", "diffusion", "thermal")      # "prior" (generation) is opt-in
    diffusion_steps: tuple[int, ...] = (50, 150, 250)
    n_steps: int = 1000                  # T of the polynomial schedule
    thermal_K: float = 1000.0
    thermal_steps: int = 200             # 100 fs at 0.5 fs
    timestep_fs: float = 0.5
    friction_per_fs: float = 0.01
    seed: int = 0

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown perturbation kind(s) {bad}; known: {KINDS}")


def _molecule_seed(seed: int, index: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, index, salt]).generate_state(1)[0] % (2 ** 31 - 1))


def etkdg_input(z: np.ndarray, pos: np.ndarray, seed: int) -> Optional[np.ndarray]:
    """ETKDGv3 coordinates of the molecule's own graph in its atom order, or None if RDKit fails."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem, rdDetermineBonds

    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.RWMol()
        for atomic_number in z:
            mol.AddAtom(Chem.Atom(int(atomic_number)))
        conf = Chem.Conformer(len(z))
        for i, p in enumerate(pos):
            conf.SetAtomPosition(i, p.tolist())
        mol.AddConformer(conf)
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        params = AllChem.ETKDGv3()
        params.randomSeed = seed
        mol.RemoveAllConformers()
        if AllChem.EmbedMolecule(mol, params) != 0:
            return None
        return np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)
    except (ValueError, RuntimeError):
        return None
    finally:
        RDLogger.EnableLog("rdApp.*")


def diffusion_input(pos: np.ndarray, step: int, n_steps: int, rng: np.random.Generator) -> np.ndarray:
    from ..diffusion.schedules import PolynomialSchedule

    abar = float(PolynomialSchedule(n_steps).alpha2[step])
    x0 = pos - pos.mean(0)
    eps = rng.normal(size=pos.shape)
    eps -= eps.mean(0)
    return np.sqrt(abar) * x0 + np.sqrt(1.0 - abar) * eps


def gfn2_langevin(z: np.ndarray, pos: np.ndarray, temperature_K: float, n_steps: int, seed: int,
                  timestep_fs: float = 0.5, friction_per_fs: float = 0.01, observe=None, interval: int = 1):
    """A GFN2-xTB (tblite) Langevin run from ``pos`` with Maxwell-Boltzmann velocities and the
    centre of mass fixed; ``observe(dynamics, atoms)`` every ``interval`` steps (ASE calls it at
    step 0 too). Returns the final atoms."""
    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from ..physics.xtb import gfn2_calculator

    rng = np.random.default_rng(seed)
    atoms = Atoms(numbers=z, positions=pos)
    atoms.calc = gfn2_calculator()
    atoms.set_constraint(FixCom())
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    if observe is not None:
        dynamics.attach(lambda: observe(dynamics, atoms), interval=interval)
    dynamics.run(n_steps)
    return atoms


def thermal_input(z: np.ndarray, pos: np.ndarray, s: PerturbationSettings, seed: int) -> np.ndarray:
    return gfn2_langevin(z, pos, s.thermal_K, s.thermal_steps, seed, s.timestep_fs, s.friction_per_fs).get_positions()


def perturb_chunk(items: list[tuple[int, str, np.ndarray, np.ndarray]], s: PerturbationSettings) -> list[dict]:
    """Inputs for one chunk of (index, id, z, pos) molecules; a Ray task."""
    os.environ["OMP_NUM_THREADS"] = "1"          # tblite: one thread per process
    out = []
    for index, ident, z, pos in items:
        target = pos - pos.mean(0)
        made: list[tuple[str, float, Optional[np.ndarray]]] = []
        if "etkdg" in s.kinds:
            made.append(("etkdg", 0.0, etkdg_input(z, pos, _molecule_seed(s.seed, index, 1))))
        if "diffusion" in s.kinds:
            rng = np.random.default_rng(_molecule_seed(s.seed, index, 2))
            made += [("diffusion", float(step), diffusion_input(pos, step, s.n_steps, rng)) for step in s.diffusion_steps]
        if "thermal" in s.kinds:
            made.append(("thermal", s.thermal_K, thermal_input(z, pos, s, _molecule_seed(s.seed, index, 3))))
        if "prior" in s.kinds:
            made.append(("prior", float(s.n_steps), np.random.default_rng(_molecule_seed(s.seed, index, 4)).normal(size=pos.shape)))
        for kind, level, x in made:
            label = f"{kind}{int(level) if kind == 'diffusion' else ''}"
            if x is None or not np.isfinite(x).all():
                out.append({"failed": label, "target_id": ident})
                continue
            x = x - x.mean(0)
            out.append({"id": f"{ident}-{label}", "z": z, "pos": x, "target": target, "target_id": ident,
                        "kind": kind, "level": level, "input_rmsd": kabsch_rmsd(x, target)})
    return out


def build_inputs(table: pa.Table, s: PerturbationSettings, chunk: int = 25,
                 log: Callable[[str], None] = print) -> tuple[pa.Table, dict]:
    """(inputs table, counts of made and failed inputs per kind) for every molecule of ``table``."""
    from ..parallel.tasks import run_tasks
    from .store import positions

    ids, zs, ps = table.column("id").to_pylist(), table.column("z").to_pylist(), positions(table)
    items = [(i, ids[i], np.asarray(zs[i]), ps[i]) for i in range(len(ids))]
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    log(f"[relax-inputs] {len(items)} molecules x kinds {list(s.kinds)} in {len(chunks)} chunk(s)")
    rows = [r for part in run_tasks(perturb_chunk, [(c, s) for c in chunks]) for r in part]
    good = [r for r in rows if "failed" not in r]
    failed: dict[str, int] = {}
    for r in rows:
        if "failed" in r:
            failed[r["failed"]] = failed.get(r["failed"], 0) + 1
    out = build_table([r["z"] for r in good], [r["pos"] for r in good], ids=[r["id"] for r in good])
    target = build_table([r["z"] for r in good], [r["target"] for r in good], ids=[r["id"] for r in good]).column("pos")
    out = (out.append_column("target", target)
              .append_column("target_id", pa.array([r["target_id"] for r in good], pa.string()))
              .append_column("kind", pa.array([r["kind"] for r in good], pa.string()))
              .append_column("level", pa.array([r["level"] for r in good], pa.float64()))
              .append_column("input_rmsd", pa.array([r["input_rmsd"] for r in good], pa.float64())))
    made: dict[str, int] = {}
    for r in good:
        label = f"{r['kind']}{int(r['level']) if r['kind'] == 'diffusion' else ''}"
        made[label] = made.get(label, 0) + 1
    log(f"[relax-inputs] made {made}; failed {failed or 'none'}")
    return out, {"made": made, "failed": failed, "settings": asdict(s)}


def generated_inputs(table: pa.Table) -> pa.Table:
    """Inputs of kind ``generated`` from generated molecules (records with id, z, pos): each is its
    own target (so its RMSD ratio is undefined, nan), ``input_rmsd`` 0."""
    n = table.num_rows
    ids = [f"gen-{i}" for i in table.column("id").to_pylist()]
    out = build_table([np.asarray(z) for z in table.column("z").to_pylist()],
                      [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in table.column("pos").to_pylist()], ids=ids)
    return (out.append_column("target", out.column("pos"))
               .append_column("target_id", pa.array(ids, pa.string()))
               .append_column("kind", pa.array(["generated"] * n, pa.string()))
               .append_column("level", pa.array([0.0] * n, pa.float64()))
               .append_column("input_rmsd", pa.array([0.0] * n, pa.float64())))
