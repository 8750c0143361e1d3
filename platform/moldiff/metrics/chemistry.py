"""Chemistry metrics of generated molecules: the EDM definitions used on QM9 (UniGEM, MoreRed).

EDM (Hoogeboom et al. 2022) infers bonds from interatomic distances alone: a pair is bonded with the
highest order whose reference length plus a margin exceeds its distance. Lengths are in picometres
(Angstrom x 100) because the reference tables and the margins (10, 5 and 3 pm for single, double and
triple bonds) are stated in pm; the margins shrink with the order because multiple bonds are shorter
and closer together. From those bonds:

- atom stability: an atom is stable if the sum of its bond orders equals its valence
  (H 1, C 4, N 3, O 2, F 1; charges are ignored); a molecule is stable if all its atoms are;
- validity: the bonds, written as an RDKit molecule, pass ``Chem.SanitizeMol``. As in EDM, atoms
  with too few bonds are filled up with implicit hydrogens, so validity is more lenient than
  stability; too many bonds or an impossible kekulisation make a molecule invalid;
- uniqueness and novelty: on the canonical SMILES of the largest fragment of each valid molecule.

Explicit hydrogens are removed before writing SMILES and stereochemistry is never written, so that
the strings compare with ordinary (e.g. QM9) SMILES passed through :func:`canonical_smiles`;
structures from coordinates carry no perceived stereo, and isomeric training SMILES would otherwise
never match them.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Geometry import Point3D

SINGLE_MARGIN_PM = 10.0
DOUBLE_MARGIN_PM = 5.0
TRIPLE_MARGIN_PM = 3.0

H, C, N, O, F = 1, 6, 7, 8, 9
VALENCE = {H: 1, C: 4, N: 3, O: 2, F: 1}

_SINGLE_PM = {(H, H): 74, (H, C): 109, (H, N): 101, (H, O): 96, (H, F): 92,
              (C, C): 154, (C, N): 147, (C, O): 143, (C, F): 135,
              (N, N): 145, (N, O): 140, (N, F): 136,
              (O, O): 148, (O, F): 142, (F, F): 142}
_DOUBLE_PM = {(C, C): 134, (C, N): 129, (C, O): 120, (N, N): 125, (N, O): 121, (O, O): 121}
_TRIPLE_PM = {(C, C): 120, (C, N): 116, (C, O): 113, (N, N): 110}

_N_ELEMENTS = 119
_BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}


def _length_table(lengths: dict[tuple[int, int], float]) -> np.ndarray:
    """Symmetric [119, 119] table indexed by atomic numbers; NaN (never bonded) where no length is known."""
    table = np.full((_N_ELEMENTS, _N_ELEMENTS), np.nan)
    for (a, b), length in lengths.items():
        table[a, b] = table[b, a] = length
    return table


SINGLE_PM, DOUBLE_PM, TRIPLE_PM = (_length_table(t) for t in (_SINGLE_PM, _DOUBLE_PM, _TRIPLE_PM))

# -1 for elements without a valence: they can never be stable.
_VALENCE_TABLE = np.full(_N_ELEMENTS, -1)
for _z, _v in VALENCE.items():
    _VALENCE_TABLE[_z] = _v


def bond_order_matrix(z: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """EDM bond orders (0-3) of all pairs of one molecule: [n, n] int, symmetric, zero diagonal.

    ``z``: [n] atomic numbers; ``pos``: [n, 3] positions in Angstrom. Non-finite distances bond nothing.
    """
    z = np.asarray(z, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    d_pm = 100.0 * np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    pair = (z[:, None], z[None, :])
    # Comparisons with NaN (no reference length, or non-finite positions) are False: no bond.
    single = d_pm < SINGLE_PM[pair] + SINGLE_MARGIN_PM
    double = single & (d_pm < DOUBLE_PM[pair] + DOUBLE_MARGIN_PM)
    triple = double & (d_pm < TRIPLE_PM[pair] + TRIPLE_MARGIN_PM)
    orders = single.astype(np.int64) + double + triple
    np.fill_diagonal(orders, 0)
    return orders


def atom_stability(z: np.ndarray, pos: np.ndarray) -> tuple[int, int]:
    """(number of stable atoms, number of atoms); the molecule is stable iff the two are equal."""
    z = np.asarray(z, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        return 0, len(z)
    valence_used = bond_order_matrix(z, pos).sum(1)
    return int((valence_used == _VALENCE_TABLE[z]).sum()), len(z)


def to_rdkit(z: np.ndarray, pos: np.ndarray, orders: np.ndarray) -> Chem.RWMol:
    """Unsanitised RDKit molecule with the given atoms, the bonds of ``orders`` and a conformer at ``pos``."""
    mol = Chem.RWMol()
    for atomic_number in np.asarray(z):
        mol.AddAtom(Chem.Atom(int(atomic_number)))
    for i, j in zip(*np.nonzero(np.triu(orders, k=1))):
        mol.AddBond(int(i), int(j), _BOND_TYPES[int(orders[i, j])])
    conformer = Chem.Conformer(len(z))
    for i, (x, y, w) in enumerate(np.asarray(pos, dtype=np.float64)):
        conformer.SetAtomPosition(i, Point3D(x, y, w))
    mol.AddConformer(conformer, assignId=True)
    return mol


@contextmanager
def _rdkit_silenced() -> Iterator[None]:
    """Invalid molecules are expected here; RDKit would log every one of them."""
    RDLogger.DisableLog("rdApp.*")
    try:
        yield
    finally:
        RDLogger.EnableLog("rdApp.*")


def _smiles(mol: Chem.Mol) -> str:
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def valid_smiles(mol: Chem.Mol) -> Optional[str]:
    """SMILES of the largest fragment if ``mol`` sanitises (EDM validity), else None."""
    with _rdkit_silenced():
        try:
            Chem.SanitizeMol(mol)
            fragments = Chem.rdmolops.GetMolFrags(mol, asMols=True)
            return _smiles(max(fragments, key=lambda fragment: fragment.GetNumAtoms()))
        except ValueError:  # RDKit's sanitisation errors derive from ValueError
            return None


def smiles_from_structure(z: np.ndarray, pos: np.ndarray) -> Optional[str]:
    """Inferred bonds -> RDKit -> sanitise -> largest fragment -> SMILES; None if invalid or non-finite."""
    pos = np.asarray(pos, dtype=np.float64)
    if not np.isfinite(pos).all():
        return None
    return valid_smiles(to_rdkit(z, pos, bond_order_matrix(z, pos)))


def canonical_smiles(smiles: str) -> Optional[str]:
    """The form :func:`smiles_from_structure` writes (no hydrogens, no stereo); None if unparsable."""
    with _rdkit_silenced():
        mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else _smiles(mol)


def _binomial_se(p: float, n: int) -> float:
    return float(np.sqrt(p * (1.0 - p) / n))


@dataclass
class GenerationMetrics:
    n_molecules: int
    atom_stability: float           # stable atoms / all atoms
    atom_stability_se: float        # binomial over atoms
    molecule_stability: float       # stable molecules / all molecules
    molecule_stability_se: float
    validity: float                 # valid / all
    validity_se: float
    uniqueness: float               # unique valid SMILES / valid
    valid_and_unique: float         # validity x uniqueness (EDM's V*U)
    novelty: Optional[float]        # unique valid SMILES not in training / unique valid


def generation_metrics(molecules: Sequence[tuple[np.ndarray, np.ndarray]],
                       training_smiles: Optional[set[str]] = None) -> dict:
    """EDM metrics of generated molecules, each ``(z [n], pos [n, 3] in Angstrom)``.

    Molecules with non-finite positions count as unstable and invalid and stay in every denominator.
    ``training_smiles`` must already be in :func:`canonical_smiles` form; without it novelty is None.
    Uniqueness and novelty are 0 when nothing is valid (as in EDM).
    """
    if len(molecules) == 0:
        raise ValueError("no molecules to evaluate")
    n_molecules = len(molecules)
    stable_atoms = total_atoms = stable_molecules = 0
    valid = []
    for z, pos in molecules:
        n_stable, n_atoms = atom_stability(z, pos)
        stable_atoms += n_stable
        total_atoms += n_atoms
        stable_molecules += n_stable == n_atoms
        smiles = smiles_from_structure(z, pos)
        if smiles is not None:
            valid.append(smiles)

    atom_stab = stable_atoms / total_atoms
    mol_stab = stable_molecules / n_molecules
    validity = len(valid) / n_molecules
    unique = set(valid)
    uniqueness = len(unique) / len(valid) if valid else 0.0
    novelty = None
    if training_smiles is not None:
        novelty = len(unique - set(training_smiles)) / len(unique) if unique else 0.0
    return asdict(GenerationMetrics(
        n_molecules=n_molecules,
        atom_stability=atom_stab, atom_stability_se=_binomial_se(atom_stab, total_atoms),
        molecule_stability=mol_stab, molecule_stability_se=_binomial_se(mol_stab, n_molecules),
        validity=validity, validity_se=_binomial_se(validity, n_molecules),
        uniqueness=uniqueness, valid_and_unique=validity * uniqueness, novelty=novelty))
