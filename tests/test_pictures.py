"""Pictures of molecules (moldiff.pictures): RDKit drawings at the molecules' own positions with
EDM's inferred bonds, stable ones labelled, wrong valences marked."""
from __future__ import annotations

import numpy as np
from PIL import Image
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.pictures import drawable, generated_grid, relaxation_panel


def embedded(smiles: str, seed: int = 0):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def ink(path) -> float:
    """Fraction of pixels that are not white."""
    pixels = np.asarray(Image.open(path).convert("L"))
    return float((pixels < 250).mean())


def test_drawable_marks_the_atoms_edm_finds_unstable():
    z, pos = embedded("CCO")
    mol, unstable, stable, valid = drawable(z, pos)
    assert stable and valid and unstable == [] and mol.GetNumAtoms() == len(z) == 9
    assert mol.GetNumBonds() == 8                              # the inferred bonds, no implicit hydrogens
    stretched = pos.copy()
    stretched[2] += 1.5 * (pos[2] - pos[1]) / np.linalg.norm(pos[2] - pos[1])     # pull the O off its C
    _, unstable, stable, _ = drawable(z, stretched)
    assert not stable and 1 in unstable and 2 in unstable
    assert drawable(z, np.full_like(pos, np.nan))[0] is None


def test_grids_have_the_panels_asked_for_and_something_drawn_in_each(tmp_path):
    molecules = [embedded(s) for s in ("CCO", "CC(=O)O", "C#N", "OCC(N)C", "C1CC1")]
    path = generated_grid(tmp_path / "molecules.png", molecules + [(np.array([6]), np.full((1, 3), np.nan))],
                          per_row=4)
    image = Image.open(path)
    assert image.size == (4 * 220, 2 * 220)
    cells = np.asarray(image.convert("L")).reshape(2, 220, 4, 220).transpose(0, 2, 1, 3)
    inked = (cells < 250).mean(axis=(2, 3))
    assert (inked[0] > 0.01).all() and (inked[1, :2] > 0.01).all()   # 4 + 2 panels drawn (one of them NaN)
    assert (inked[1, 2:] == 0).all()                                    # the two empty cells stay empty
    z, pos = molecules[0]
    noisy = pos + np.random.default_rng(0).normal(scale=0.3, size=pos.shape)
    panel = relaxation_panel(tmp_path / "relaxations.png", [(z, noisy, "ethanol")], {"itp": [pos], "mmff": [pos]})
    assert Image.open(panel).size == (3 * 220, 220) and ink(panel) > 0.01
