"""Classical baselines of the MoreRed relaxation benchmark: MMFF94 (RDKit) and GFN2-xTB (tblite).

The benchmark relaxes unstable inputs towards their stable QM9 DFT geometry (the *target*, same
atom order). Next to the diffusion relaxers it needs two references that involve no learning:

  MMFF94       the classical relaxer. The bond graph is perceived from the *target* geometry
               (rdDetermineBonds, atom order kept, hydrogens explicit), the coordinates are the
               *input's*, and RDKit minimises the MMFF94 energy. This is what a chemist would run
               on a distorted structure whose connectivity is known, and it costs milliseconds.
               Its minimum is MMFF's, not DFT's, so even a perfect MMFF relaxation keeps a small
               RMSD to the DFT target.
  GFN2-xTB     an independent potential energy surface to judge energies. DFT (the level of the
               QM9 targets) is out of reach on CPU for a whole benchmark, GFN2-xTB is not (tens of
               milliseconds per molecule and gradient). :func:`energy_above_minimum` says how far a
               relaxed structure sits above the GFN2 minimum nearest the DFT geometry, in kcal/mol;
               :func:`gfn2_relax` is also a relaxer in its own right (a semi-empirical upper
               reference for the learned relaxers).

Every relaxation returns a :class:`ClassicalResult`. A relaxation that cannot be run for a
chemical reason (bond perception fails, no MMFF parameters, the xTB calculation fails, the input
has non-finite coordinates) is reported through ``failed`` (a reason, never dropped silently)
with the input positions left in place; malformed arrays (wrong shapes) are caller errors and
raise ValueError. Positions are in Angstrom, energies in eV unless the name says kcal/mol.
Run one thread per process (OMP_NUM_THREADS=1), as for every tblite calculation here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["ClassicalResult", "bonded_molecule", "mmff_relax", "gfn2_relax", "gfn2_energy",
           "gfn2_reference_energy", "energy_above_minimum"]


@dataclass
class ClassicalResult:
    """One classical relaxation.

    pos        [n, 3] float64, the relaxed positions (the input positions when it failed);
    n_steps    iterations used (MMFF: BFGS iterations of RDKit's minimiser; GFN2: ASE optimiser
               steps, i.e. force evaluations after the first);
    converged  the minimiser's own convergence criterion was met within the budget;
    failed     "" or the reason the relaxation could not be run;
    energy_eV  the final energy (GFN2-xTB relaxations only; NaN otherwise).
    """
    pos: np.ndarray
    n_steps: int
    converged: bool
    failed: str = ""
    energy_eV: float = float("nan")


# ---------------------------------------------------------------------------------------------------
# input handling

def _arrays(z, pos, name: str = "pos") -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(z)
    if z.ndim != 1 or len(z) == 0 or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"z must be a non-empty 1-d array of atomic numbers, got shape {z.shape} "
                         f"dtype {z.dtype}")
    x = np.asarray(pos, dtype=np.float64)
    if x.shape != (len(z), 3):
        raise ValueError(f"{name} must have shape [{len(z)}, 3] to match z, got {x.shape}")
    return z.astype(np.int64), x


def _failure(x: np.ndarray, reason: str) -> ClassicalResult:
    return ClassicalResult(pos=x.copy(), n_steps=0, converged=False, failed=reason)


# ---------------------------------------------------------------------------------------------------
# MMFF94

def bonded_molecule(z, target_pos):
    """The RDKit molecule of atoms ``z`` with bonds (and bond orders, formal charges) perceived from
    ``target_pos`` by rdDetermineBonds (total charge 0): atom i of the molecule is atom i of ``z``,
    every hydrogen is an explicit atom, the molecule is sanitised and carries ``target_pos`` as its
    conformer. Raises ValueError naming the problem when perception or sanitisation fails."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdDetermineBonds

    z, x = _arrays(z, target_pos, "target_pos")
    if not np.isfinite(x).all():
        raise ValueError("target_pos has non-finite coordinates; no bonds can be perceived")
    mol = Chem.RWMol()
    for atomic_number in z:
        atom = Chem.Atom(int(atomic_number))
        atom.SetNoImplicit(True)                   # the hydrogens are the atoms in z, nothing else
        mol.AddAtom(atom)
    conf = Chem.Conformer(len(z))
    for i, p in enumerate(x):
        conf.SetAtomPosition(i, p.tolist())
    mol.AddConformer(conf, assignId=True)

    RDLogger.DisableLog("rdApp.*")
    try:
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"bond perception (rdDetermineBonds) failed: {err}") from err
        mol = mol.GetMol()
        try:
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError) as err:      # Chem.MolSanitizeException is a ValueError
            raise ValueError(f"the perceived molecule cannot be sanitised: {err}") from err
    finally:
        RDLogger.EnableLog("rdApp.*")
    radicals = [a.GetIdx() for a in mol.GetAtoms() if a.GetNumRadicalElectrons()]
    if radicals:
        raise ValueError(f"bond perception left radical electrons on atom(s) {radicals}")
    if mol.GetNumAtoms() != len(z) or [a.GetAtomicNum() for a in mol.GetAtoms()] != z.tolist():
        raise ValueError("bond perception changed the atoms")        # never expected; the order is the API
    return mol


def mmff_relax(z, pos, target_pos, max_iters: int = 1000) -> ClassicalResult:
    """MMFF94 relaxation (RDKit) of input ``pos`` on the bond graph perceived from ``target_pos``.

    The force field comes from MMFFGetMoleculeForceField and is minimised once, with RDKit's BFGS
    and its default tolerances, for at most ``max_iters`` iterations: the same minimisation (the
    same final positions) as ``MMFFOptimizeMolecule(mol, maxIters=max_iters)``, which only returns
    a flag. The iterations are counted exactly by recording a snapshot at every iteration
    (``ff.MinimizeTrajectory(1, maxIts=...)``); minimising in chunks of ``ff.Minimize(maxIts=k)``
    instead would restart BFGS (forgetting its Hessian estimate) at every chunk and count only to
    the chunk size.

    ``failed`` is set, with the input positions returned, when the bonds cannot be perceived from
    the target, when MMFF94 has no parameters for the molecule, or when the input is not finite."""
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers as ffh
    from rdkit.Chem import rdtrajectory  # noqa: F401  (registers the Snapshot class MinimizeTrajectory returns)

    z, x = _arrays(z, pos)
    _arrays(z, target_pos, "target_pos")
    if max_iters < 0:
        raise ValueError(f"max_iters must be >= 0, got {max_iters}")
    if not np.isfinite(x).all():
        return _failure(x, "non-finite input positions")
    try:
        mol = bonded_molecule(z, target_pos)
    except ValueError as err:
        return _failure(x, str(err))
    if not ffh.MMFFHasAllMoleculeParams(mol):
        return _failure(x, "no MMFF parameters for this molecule")

    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    for i, p in enumerate(x):
        conf.SetAtomPosition(i, p.tolist())
    ff = ffh.MMFFGetMoleculeForceField(mol, ffh.MMFFGetMoleculeProperties(mol, mmffVariant="MMFF94"))
    if ff is None:
        return _failure(x, "no MMFF force field for this molecule")
    if max_iters == 0:
        return ClassicalResult(pos=x.copy(), n_steps=0, converged=False)
    flag, snapshots = ff.MinimizeTrajectory(1, maxIts=max_iters)
    out = np.asarray(ff.Positions(), dtype=np.float64).reshape(-1, 3)
    n_steps = len(snapshots)                        # one snapshot per BFGS iteration
    if not np.isfinite(out).all():
        return ClassicalResult(pos=out, n_steps=n_steps, converged=False, failed="MMFF minimisation diverged")
    return ClassicalResult(pos=out, n_steps=n_steps, converged=flag == 0)


# ---------------------------------------------------------------------------------------------------
# GFN2-xTB

def _gfn2_atoms(z: np.ndarray, x: np.ndarray):
    from ase import Atoms

    from ..physics.xtb import gfn2_calculator

    atoms = Atoms(numbers=z, positions=x)
    atoms.calc = gfn2_calculator()
    return atoms


def gfn2_energy(z, pos) -> float:
    """GFN2-xTB single-point total energy (eV) of neutral, closed-shell ``z`` at ``pos``. Raises
    ValueError for non-finite positions and RuntimeError when the xTB calculation fails."""
    from ase.calculators.calculator import CalculatorError

    z, x = _arrays(z, pos)
    if not np.isfinite(x).all():
        raise ValueError("pos has non-finite coordinates")
    try:
        return float(_gfn2_atoms(z, x).get_potential_energy())
    except CalculatorError as err:
        raise RuntimeError(f"GFN2-xTB single point failed: {err}") from err


def gfn2_relax(z, pos, fmax: float = 0.01, max_steps: int = 500, optimizer: str = "bfgs") -> ClassicalResult:
    """GFN2-xTB relaxation (tblite through ASE) of ``pos`` until the largest atomic force is below
    ``fmax`` (eV/Angstrom) or ``max_steps`` optimiser steps are spent; ``optimizer`` is ASE's
    "bfgs" or "lbfgs". ``energy_eV`` is the GFN2 energy of the returned positions. ``failed`` is set
    (input positions returned) when the input is not finite or the xTB calculation fails."""
    from ase.calculators.calculator import CalculatorError
    from ase.optimize import BFGS, LBFGS

    z, x = _arrays(z, pos)
    optimizers = {"bfgs": BFGS, "lbfgs": LBFGS}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r}; known: {sorted(optimizers)}")
    if fmax <= 0 or max_steps < 0:
        raise ValueError(f"need fmax > 0 and max_steps >= 0, got {fmax} and {max_steps}")
    if not np.isfinite(x).all():
        return _failure(x, "non-finite input positions")
    atoms = _gfn2_atoms(z, x)
    try:
        opt = optimizers[optimizer](atoms, logfile=None)
        converged = bool(opt.run(fmax=fmax, steps=max_steps))
        energy = float(atoms.get_potential_energy())
    except CalculatorError as err:
        return _failure(x, f"GFN2-xTB calculation failed: {err}")
    return ClassicalResult(pos=atoms.get_positions().astype(np.float64), n_steps=int(opt.nsteps),
                           converged=converged, energy_eV=energy)


def gfn2_reference_energy(z, target_pos, fmax: float = 0.01, max_steps: int = 500) -> float:
    """The reference of :func:`energy_above_minimum` (eV): the GFN2 energy of the GFN2 relaxation
    started from the DFT target, i.e. of the GFN2 minimum nearest the DFT geometry. Compute it once
    per target and pass it as ``reference_eV`` when several inputs share a target. Raises
    RuntimeError when that relaxation fails or does not converge."""
    ref = gfn2_relax(z, target_pos, fmax=fmax, max_steps=max_steps)
    if ref.failed:
        raise RuntimeError(f"GFN2 relaxation of the target failed: {ref.failed}")
    if not ref.converged:
        raise RuntimeError(f"GFN2 relaxation of the target did not reach fmax={fmax} eV/A in {max_steps} steps")
    return ref.energy_eV


def energy_above_minimum(z, pos, target_pos, fmax: float = 0.01,
                         reference_eV: Optional[float] = None) -> float:
    """E_GFN2(pos) - E_GFN2(reference) in kcal/mol, where the reference is the GFN2-xTB relaxation
    started from the DFT ``target_pos`` (to ``fmax`` eV/Angstrom): how far a relaxed structure sits
    above the GFN2 minimum nearest the DFT geometry.

    It is >= 0 up to the optimiser tolerance when ``pos`` lies in the same basin; it may be
    negative when ``pos`` found a lower GFN2 minimum (another conformer), which is no error of the
    relaxer. ``reference_eV`` (from :func:`gfn2_reference_energy`) skips the reference relaxation."""
    from ..physics.xtb import EV_TO_KCAL_PER_MOL

    _arrays(z, target_pos, "target_pos")
    if reference_eV is None:
        reference_eV = gfn2_reference_energy(z, target_pos, fmax=fmax)
    return (gfn2_energy(z, pos) - float(reference_eV)) * EV_TO_KCAL_PER_MOL
