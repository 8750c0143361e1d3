"""Classical baselines of the relaxation benchmark: MMFF94 (RDKit) and GFN2-xTB (tblite).

Targets are real small molecules: an RDKit ETKDG embedding (fixed seed) optimised with MMFF94, so
the MMFF minimum is the target itself; the unstable input is the target plus 0.15 A Gaussian noise.
"""
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from moldiff.metrics.relaxation import kabsch_rmsd
from moldiff.sampling.classical import (ClassicalResult, bonded_molecule, energy_above_minimum,
                                        gfn2_energy, gfn2_reference_energy, gfn2_relax, mmff_relax)


def mmff_target(smiles: str, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(z, positions) of an ETKDG embedding optimised to convergence with MMFF94."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    assert AllChem.EmbedMolecule(mol, params) == 0
    assert AllChem.MMFFOptimizeMolecule(mol, maxIters=2000) == 0
    z = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    return z, mol.GetConformer().GetPositions()


def noisy(pos: np.ndarray, seed: int = 0, scale: float = 0.15) -> np.ndarray:
    return pos + np.random.default_rng(seed).normal(scale=scale, size=pos.shape)


@pytest.fixture(scope="module")
def ethanol():
    return mmff_target("CCO")


@pytest.fixture(scope="module")
def acetaldehyde():
    return mmff_target("CC=O")


@pytest.fixture(scope="module")
def ethanol_reference_eV(ethanol):
    z, target = ethanol
    return gfn2_reference_energy(z, target)


# ---------------------------------------------------------------------------------------------------
# bond perception

def test_bonded_molecule_keeps_atom_order_and_perceives_ethanol(ethanol):
    z, target = ethanol
    mol = bonded_molecule(z, target)
    assert [a.GetAtomicNum() for a in mol.GetAtoms()] == z.tolist()
    assert mol.GetNumAtoms() == 9 and mol.GetNumBonds() == 8             # C-C, C-O, O-H, 5 C-H
    assert all(a.GetNumImplicitHs() == 0 for a in mol.GetAtoms())         # every H is an atom of z
    np.testing.assert_allclose(mol.GetConformer().GetPositions(), target)
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == "CCO"


def test_bonded_molecule_finds_the_double_bond_of_acetaldehyde(acetaldehyde):
    z, target = acetaldehyde
    mol = bonded_molecule(z, target)
    assert mol.GetNumBonds() == 6
    assert sorted(b.GetBondTypeAsDouble() for b in mol.GetBonds()) == [1.0] * 5 + [2.0]


def test_bonded_molecule_names_the_problem():
    # a methyl radical has no closed-shell bond ordering at charge 0
    methyl = np.array([[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89]], dtype=float)
    with pytest.raises(ValueError, match="bond perception .*charge"):
        bonded_molecule(np.array([6, 1, 1, 1]), methyl)
    # six oxygens 0.3 A apart: four-valent oxygen, RDKit's valence check says which atom
    with pytest.raises(ValueError, match="valence of atom"):
        bonded_molecule(np.full(6, 8), np.arange(6)[:, None] * np.array([[0.3, 0.0, 0.0]]))
    # bare C2 at 1.2 A: the perceived graph leaves radical electrons
    with pytest.raises(ValueError, match="radical"):
        bonded_molecule(np.array([6, 6]), np.array([[0, 0, 0], [1.2, 0, 0]], dtype=float))
    with pytest.raises(ValueError, match="shape"):
        bonded_molecule(np.array([6, 8]), np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------------------
# MMFF94

def test_mmff_relaxes_a_noisy_input_back_to_the_mmff_minimum(ethanol):
    z, target = ethanol
    start = noisy(target)
    assert kabsch_rmsd(start, target) > 0.1
    result = mmff_relax(z, start, target)
    assert isinstance(result, ClassicalResult)
    assert result.failed == "" and result.converged
    assert result.pos.shape == (9, 3) and result.pos.dtype == np.float64
    assert 0 < result.n_steps < 1000                     # measured: 36 BFGS iterations
    assert kabsch_rmsd(result.pos, target) < 0.05        # measured: ~3e-6 A, the same minimum


def test_mmff_from_its_own_minimum_converges_at_once(ethanol, acetaldehyde):
    for z, target in (ethanol, acetaldehyde):
        result = mmff_relax(z, target, target)
        assert result.converged and result.failed == ""
        assert 1 <= result.n_steps <= 3                  # measured: 1 iteration
        assert kabsch_rmsd(result.pos, target) < 1e-4


def test_mmff_counts_iterations_and_stops_at_the_budget(ethanol):
    z, target = ethanol
    start = noisy(target)
    full = mmff_relax(z, start, target)
    short = mmff_relax(z, start, target, max_iters=10)
    assert not short.converged and short.n_steps == 10 and short.failed == ""
    # the count is exact: the same minimisation with exactly that budget converges, one less does not
    assert mmff_relax(z, start, target, max_iters=full.n_steps).converged
    assert not mmff_relax(z, start, target, max_iters=full.n_steps - 1).converged
    # and it is RDKit's MMFFOptimizeMolecule: the same final positions
    mol = bonded_molecule(z, target)
    conf = mol.GetConformer()
    for i, p in enumerate(start):
        conf.SetAtomPosition(i, p.tolist())
    assert AllChem.MMFFOptimizeMolecule(mol, maxIters=1000) == 0
    np.testing.assert_allclose(full.pos, conf.GetPositions(), atol=1e-10)


def test_mmff_failures_are_reported_not_raised(ethanol):
    # BF3: bonds perceive and sanitise fine, but MMFF94 has no boron parameters
    bf3_z = np.array([5, 9, 9, 9])
    bf3 = np.array([[0, 0, 0], [1.31, 0, 0], [-0.655, 1.1345, 0], [-0.655, -1.1345, 0]])
    result = mmff_relax(bf3_z, bf3, bf3)
    assert result.failed == "no MMFF parameters for this molecule"
    assert not result.converged and result.n_steps == 0
    np.testing.assert_array_equal(result.pos, bf3)
    # a target from which no bonds can be perceived
    methyl = np.array([[0, 0, 0], [1.09, 0, 0], [-0.36, 1.03, 0], [-0.36, -0.51, 0.89]], dtype=float)
    result = mmff_relax(np.array([6, 1, 1, 1]), methyl, methyl)
    assert result.failed.startswith("bond perception") and not result.converged
    # a diverged input
    z, target = ethanol
    bad = target.copy()
    bad[0, 0] = np.nan
    assert mmff_relax(z, bad, target).failed == "non-finite input positions"
    with pytest.raises(ValueError, match="shape"):
        mmff_relax(z, target[:5], target)


# ---------------------------------------------------------------------------------------------------
# GFN2-xTB

def test_gfn2_energy_of_ethanol(ethanol):
    z, target = ethanol
    energy = gfn2_energy(z, target)
    # GFN2-xTB total energy of ethanol, measured -310.03 eV (-11.39 Hartree) with tblite 0.8
    assert np.isfinite(energy) and -312.0 < energy < -308.0


def test_gfn2_relax_lowers_the_energy_and_converges(ethanol):
    z, target = ethanol
    start = noisy(target)
    result = gfn2_relax(z, start)
    assert result.failed == "" and result.converged and 0 < result.n_steps < 500    # measured: 46 steps
    assert result.energy_eV == pytest.approx(gfn2_energy(z, result.pos), abs=1e-8)
    assert result.energy_eV < gfn2_energy(z, start) - 1.0          # the noisy start is ~3.9 eV higher
    # the GFN2 minimum is near, not at, the MMFF geometry: measured 0.04 A
    assert kabsch_rmsd(result.pos, target) < 0.1
    lbfgs = gfn2_relax(z, start, optimizer="lbfgs")
    assert lbfgs.converged and lbfgs.energy_eV == pytest.approx(result.energy_eV, abs=1e-3)
    bad = start.copy()
    bad[2] = np.inf
    assert gfn2_relax(z, bad).failed == "non-finite input positions"


def test_energy_above_minimum(ethanol, ethanol_reference_eV):
    z, target = ethanol
    # the MMFF target sits a little above the GFN2 minimum reached from it (two force fields,
    # two minima): measured 0.62 kcal/mol, so clearly above zero yet below 1 kcal/mol
    at_target = energy_above_minimum(z, target, target)
    assert 0.1 < at_target < 1.0
    assert energy_above_minimum(z, target, target, reference_eV=ethanol_reference_eV) == \
        pytest.approx(at_target, abs=1e-6)
    # the noisy input is far up the surface (measured 90.6 kcal/mol)
    start = noisy(target)
    assert energy_above_minimum(z, start, target, reference_eV=ethanol_reference_eV) > 10.0
    # MMFF relaxes it back to the MMFF minimum, hence to the target's 0.62 kcal/mol
    mmff = mmff_relax(z, start, target)
    assert energy_above_minimum(z, mmff.pos, target, reference_eV=ethanol_reference_eV) == \
        pytest.approx(at_target, abs=0.01)
    # GFN2 relaxes it into the reference minimum itself (measured -0.0002 kcal/mol)
    gfn2 = gfn2_relax(z, start)
    assert abs(energy_above_minimum(z, gfn2.pos, target, reference_eV=ethanol_reference_eV)) < 0.05


def test_gfn2_dft_floor_gap_is_the_distance_from_a_geometry_to_its_gfn2_minimum():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from gfn2_dft_floor import gap_to_dft

    z, mmff = mmff_target("CCO")
    gap, steps, converged = gap_to_dft(z, mmff)               # MMFF's minimum is not GFN2's
    assert converged and steps > 0 and 0.005 < gap < 0.3
    minimum = gfn2_relax(z, mmff, fmax=0.001, max_steps=500)
    again, _, _ = gap_to_dft(z, minimum.pos)                 # from GFN2's own minimum: (almost) no gap
    assert again < 0.01 < gap
