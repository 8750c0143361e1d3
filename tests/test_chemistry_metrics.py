"""EDM chemistry metrics on small QM9-like molecules embedded by RDKit (MMFF geometries, UFF for HF)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.metrics.chemistry import (atom_stability, bond_order_matrix, canonical_smiles, generation_metrics,
                                       smiles_from_structure, to_rdkit)

NON_AROMATIC = ["C", "CCO", "CC#N", "C=O", "C=C", "O", "F"]  # methane ... HF


@lru_cache(maxsize=None)
def _embedded(smiles: str) -> Chem.Mol:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=0) == 0
    # MMFF has no parameters for HF; UFF does
    if AllChem.MMFFHasAllMoleculeParams(mol):
        assert AllChem.MMFFOptimizeMolecule(mol) == 0
    else:
        assert AllChem.UFFOptimizeMolecule(mol) == 0
    return mol


def structure(smiles: str) -> tuple[np.ndarray, np.ndarray]:
    mol = _embedded(smiles)
    z = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    return z, mol.GetConformer().GetPositions().copy()


def rdkit_orders(smiles: str) -> np.ndarray:
    mol = _embedded(smiles)
    orders = np.zeros((mol.GetNumAtoms(),) * 2, dtype=int)
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        orders[i, j] = orders[j, i] = int(bond.GetBondTypeAsDouble())
    return orders


def stretched_ethanol() -> tuple[np.ndarray, np.ndarray, int, int]:
    """Ethanol with one C-H bond pulled to 2.5 Angstrom; returns (z, pos, carbon, hydrogen)."""
    z, pos = structure("CCO")
    mol = _embedded("CCO")
    bond = next(b for b in mol.GetBonds()
                if {b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()} == {"C", "H"})
    carbon, hydrogen = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()), key=lambda i: -z[i])
    direction = pos[hydrogen] - pos[carbon]
    pos[hydrogen] = pos[carbon] + 2.5 * direction / np.linalg.norm(direction)
    return z, pos, carbon, hydrogen


def per_atom_stable(z: np.ndarray, pos: np.ndarray) -> np.ndarray:
    valences = {1: 1, 6: 4, 7: 3, 8: 2, 9: 1}
    return bond_order_matrix(z, pos).sum(1) == np.array([valences[a] for a in z])


@pytest.mark.parametrize("smiles", NON_AROMATIC)
def test_bond_orders_match_rdkit_and_all_atoms_stable(smiles):
    z, pos = structure(smiles)
    orders = bond_order_matrix(z, pos)
    np.testing.assert_array_equal(orders, rdkit_orders(smiles))
    assert atom_stability(z, pos) == (len(z), len(z))


@pytest.mark.parametrize("distance, order", [
    (1.53, 1), (1.33, 2), (1.20, 3), (1.70, 0),
    # just either side of single 154 + 10, double 134 + 5 and triple 120 + 3 pm
    (1.6399, 1), (1.6401, 0), (1.3899, 2), (1.3901, 1), (1.2299, 3), (1.2301, 2),
])
def test_carbon_pair_orders_and_margins(distance, order):
    orders = bond_order_matrix(np.array([6, 6]), np.array([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]]))
    np.testing.assert_array_equal(orders, [[0, order], [order, 0]])


def test_pair_without_reference_length_is_not_bonded():
    # sulfur is not in the QM9 tables: no bond at any distance, and the atom can never be stable
    z, pos = np.array([16, 1]), np.array([[0.0, 0.0, 0.0], [1.3, 0.0, 0.0]])
    assert bond_order_matrix(z, pos).sum() == 0
    assert atom_stability(z, pos) == (0, 2)


def test_stretched_bond_makes_its_atoms_unstable():
    z, pos, carbon, hydrogen = stretched_ethanol()
    stable = per_atom_stable(z, pos)
    assert not stable[carbon] and not stable[hydrogen]
    assert stable.sum() == len(z) - 2
    assert atom_stability(z, pos) == (len(z) - 2, len(z))


def test_squeezed_non_bonded_atoms_are_unstable():
    z, pos = structure("C")
    h1, h2 = 1, 2
    direction = pos[h2] - pos[h1]
    pos[h2] = pos[h1] + 0.75 * direction / np.linalg.norm(direction)
    assert bond_order_matrix(z, pos)[h1, h2] == 1
    stable = per_atom_stable(z, pos)
    assert not stable[h1] and not stable[h2] and stable[0]
    n_stable, n_atoms = atom_stability(z, pos)
    assert n_stable == n_atoms - 2


def test_ethanol_smiles_is_canonical_heavy_atom_smiles():
    z, pos = structure("CCO")
    expected = Chem.MolToSmiles(Chem.MolFromSmiles("CCO"))
    assert smiles_from_structure(z, pos) == expected
    assert canonical_smiles("OCC") == expected


def test_canonical_smiles_drops_stereo_and_rejects_garbage():
    assert canonical_smiles("C[C@H](N)O") == canonical_smiles("CC(N)O")
    assert canonical_smiles("not a smiles") is None


def test_to_rdkit_keeps_bonds_and_positions():
    z, pos = structure("CC#N")
    orders = bond_order_matrix(z, pos)
    mol = to_rdkit(z, pos, orders)
    assert mol.GetNumAtoms() == len(z) and mol.GetNumBonds() == np.count_nonzero(np.triu(orders))
    assert mol.GetBondBetweenAtoms(1, 2).GetBondType() == Chem.BondType.TRIPLE
    np.testing.assert_allclose(mol.GetConformer().GetPositions(), pos)


def test_pentavalent_carbon_is_unstable_and_invalid():
    z, pos = structure("C")
    # a fifth H opposite H1, at C-H bonding distance but more than 0.84 Angstrom from every other H
    direction = pos[1] - pos[0]
    extra = pos[0] - 1.09 * direction / np.linalg.norm(direction)
    z, pos = np.append(z, 1), np.vstack([pos, extra])
    assert bond_order_matrix(z, pos)[0].sum() == 5
    assert atom_stability(z, pos) == (len(z) - 1, len(z))  # only the carbon
    # RDKit's sanitisation rejects a carbon of explicit valence 5 (AtomValenceException)
    assert smiles_from_structure(z, pos) is None


def test_under_bonded_atoms_are_filled_with_hydrogens_so_stretched_ethanol_is_valid():
    z, pos, _, _ = stretched_ethanol()
    # the lost H becomes its own fragment; the largest fragment's carbon gets an implicit H back
    assert smiles_from_structure(z, pos) == canonical_smiles("CCO")


def test_non_finite_positions_are_unstable_and_invalid():
    z, pos = structure("CCO")
    pos[0, 0] = np.nan
    assert atom_stability(z, pos) == (0, len(z))
    assert smiles_from_structure(z, pos) is None


def test_generation_metrics_counts_every_molecule():
    ethanol, methane = structure("CCO"), structure("C")
    broken_z, broken_pos, _, _ = stretched_ethanol()
    nan_molecule = (ethanol[0], np.full_like(ethanol[1], np.nan))
    molecules = [ethanol, (ethanol[0].copy(), ethanol[1].copy()), methane, (broken_z, broken_pos), nan_molecule]

    metrics = generation_metrics(molecules, training_smiles={canonical_smiles("CCO")})

    # atoms: 9 + 9 + 5 + 9 + 9 (the NaN molecule stays in the denominator), stable: 9 + 9 + 5 + 7 + 0
    atom_stab = 30 / 41
    # stable molecules: ethanol, its copy, methane
    mol_stab = 3 / 5
    # valid SMILES: CCO, CCO, C, CCO (stretched ethanol, see above); the NaN molecule is invalid
    validity = 4 / 5
    uniqueness = 2 / 4
    # unique {CCO, C}; only C is absent from training
    novelty = 1 / 2
    assert metrics == pytest.approx({
        "n_molecules": 5,
        "atom_stability": atom_stab, "atom_stability_se": np.sqrt(atom_stab * (1 - atom_stab) / 41),
        "molecule_stability": mol_stab, "molecule_stability_se": np.sqrt(mol_stab * (1 - mol_stab) / 5),
        "validity": validity, "validity_se": np.sqrt(validity * (1 - validity) / 5),
        "uniqueness": uniqueness, "valid_and_unique": validity * uniqueness,
        "novelty": novelty,
    })


def test_generation_metrics_without_training_set_has_no_novelty():
    metrics = generation_metrics([structure("C")])
    assert metrics["novelty"] is None
    assert metrics["molecule_stability"] == 1.0 and metrics["molecule_stability_se"] == 0.0
