"""Alanine dipeptide (ACE-ALA-NME, 22 atoms) in OpenMM: amber99sb-ildn with OBC implicit solvent,
no cutoff, the setting of the bgmol data the Fokker-Planck paper uses.

The structure is inlined (OpenMM ships no alanine-dipeptide PDB); its atom order is bgmol's, so the
coarse-grained backbone beads C, N, CA, C, N are atoms 4, 6, 8, 14, 16 (0-based). Backbone
dihedrals on the beads: phi = dihedral(C0, N1, CA2, C3), psi = dihedral(N1, CA2, C3, N4).
"""
from __future__ import annotations

import io

import numpy as np

ALANINE_PDB = """\
ATOM      1  H1  ACE A   1       2.000   1.000  -0.000  1.00  0.00
ATOM      2  CH3 ACE A   1       2.000   2.090   0.000  1.00  0.00
ATOM      3  H2  ACE A   1       1.486   2.454   0.890  1.00  0.00
ATOM      4  H3  ACE A   1       1.486   2.454  -0.890  1.00  0.00
ATOM      5  C   ACE A   1       3.427   2.641  -0.000  1.00  0.00
ATOM      6  O   ACE A   1       4.391   1.877  -0.000  1.00  0.00
ATOM      7  N   ALA A   2       3.555   3.970  -0.000  1.00  0.00
ATOM      8  H   ALA A   2       2.733   4.556  -0.000  1.00  0.00
ATOM      9  CA  ALA A   2       4.853   4.614  -0.000  1.00  0.00
ATOM     10  HA  ALA A   2       5.408   4.316   0.890  1.00  0.00
ATOM     11  CB  ALA A   2       5.661   4.221  -1.232  1.00  0.00
ATOM     12  HB1 ALA A   2       5.123   4.521  -2.131  1.00  0.00
ATOM     13  HB2 ALA A   2       6.630   4.719  -1.206  1.00  0.00
ATOM     14  HB3 ALA A   2       5.809   3.141  -1.241  1.00  0.00
ATOM     15  C   ALA A   2       4.713   6.129   0.000  1.00  0.00
ATOM     16  O   ALA A   2       3.601   6.653   0.000  1.00  0.00
ATOM     17  N   NME A   3       5.846   6.835   0.000  1.00  0.00
ATOM     18  H   NME A   3       6.737   6.359  -0.000  1.00  0.00
ATOM     19  C   NME A   3       5.846   8.284   0.000  1.00  0.00
ATOM     20  H1  NME A   3       4.819   8.648   0.000  1.00  0.00
ATOM     21  H2  NME A   3       6.360   8.648   0.890  1.00  0.00
ATOM     22  H3  NME A   3       6.360   8.648  -0.890  1.00  0.00
END
"""
CG_ATOMS = (4, 6, 8, 14, 16)                  # C (ACE), N, CA, C (ALA), N (NME)
CG_ELEMENTS = (6, 7, 6, 6, 7)
CG_MASSES_DA = (12.011, 14.007, 12.011, 12.011, 14.007)
GAS_CONSTANT_KJ = 0.00831446261815324         # kJ/mol/K


def kT_kj(temperature_K: float) -> float:
    return GAS_CONSTANT_KJ * temperature_K


def build_system(constraints: str = "none"):
    """(topology, system, positions in nm) for amber99sb-ildn + OBC implicit solvent, no cutoff."""
    import openmm.app as app

    pdb = app.PDBFile(io.StringIO(ALANINE_PDB))
    ff = app.ForceField("amber99sbildn.xml", "amber99_obc.xml")
    choice = {"none": None, "hbonds": app.HBonds}
    if constraints not in choice:
        raise ValueError(f"constraints must be one of {sorted(choice)}, got {constraints!r}")
    system = ff.createSystem(pdb.topology, nonbondedMethod=app.NoCutoff, constraints=choice[constraints])
    positions = np.array([[v.x, v.y, v.z] for v in pdb.getPositions(asNumpy=False)])   # nm
    return pdb.topology, system, positions


def dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    """Signed dihedral angles in (-pi, pi] of [..., 3] point quadruples (the standard arctan2 form)."""
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - (b0 * b1n).sum(-1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(-1, keepdims=True) * b1n
    x = (v * w).sum(-1)
    y = (np.cross(b1n, v) * w).sum(-1)
    return np.arctan2(y, x)


def backbone_dihedrals(beads: np.ndarray) -> np.ndarray:
    """(phi, psi) [..., 2] of coarse-grained beads [..., 5, 3] in the order C, N, CA, C, N."""
    b = np.asarray(beads)
    phi = dihedral(b[..., 0, :], b[..., 1, :], b[..., 2, :], b[..., 3, :])
    psi = dihedral(b[..., 1, :], b[..., 2, :], b[..., 3, :], b[..., 4, :])
    return np.stack([phi, psi], -1)
