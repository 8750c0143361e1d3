"""PoseBusters' checks on molecules given as atoms and coordinates: plausible RDKit conformers pass,
a clash and non-finite coordinates fail, and a check that cannot run counts as failed."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.metrics.posebusters import posebusters_rates


def conformer(smiles, seed=1):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    AllChem.EmbedMolecule(mol, randomSeed=seed)
    AllChem.MMFFOptimizeMolecule(mol)
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def test_plausible_molecules_pass_and_broken_ones_fail():
    good = [conformer("C1CCCCC1"), conformer("CCN"), conformer("OCCO")]
    rates = posebusters_rates(good)
    assert rates["posebusters_all"] == 1.0 and rates["posebusters_bond_lengths"] == 1.0
    assert rates["posebusters_internal_steric_clash"] == 1.0
    z, pos = good[1]
    clash = pos.copy()
    clash[0] = clash[1] + np.array([0.25, 0.0, 0.0])           # two heavy atoms 0.25 A apart
    lost = np.full_like(pos, np.nan)
    rates = posebusters_rates(good + [(z, clash), (z, lost)])
    assert rates["posebusters_all"] == pytest.approx(3 / 5)
    assert rates["posebusters_mol_pred_loaded"] == pytest.approx(4 / 5)    # the NaN molecule fails every check
    assert all(rates["posebusters_all"] <= v for v in rates.values())
    with pytest.raises(ValueError, match="no molecules"):
        posebusters_rates([])
