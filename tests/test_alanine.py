"""Alanine dipeptide: the OpenMM system, backbone dihedrals on the beads, and the resumable
replica-exchange generator."""
from __future__ import annotations

import numpy as np
import pytest

import openmm  # noqa: F401  (required: in the pinned set, so a broken install fails here, not skips)

from moldiff.data.alanine import REMDSettings, run_remd
from moldiff.physics.alanine import CG_ATOMS, backbone_dihedrals, build_system, dihedral  # noqa: E402


def test_system_has_22_atoms_and_backbone_beads_in_bgmol_order():
    top, system, pos = build_system("none")
    names = [a.name for a in top.atoms()]
    assert system.getNumParticles() == 22 and pos.shape == (22, 3)
    assert [names[i] for i in CG_ATOMS] == ["C", "N", "CA", "C", "N"]
    forces = {system.getForce(i).__class__.__name__ for i in range(system.getNumForces())}
    assert "GBSAOBCForce" in forces                   # implicit solvent
    with pytest.raises(ValueError, match="constraints"):
        build_system("all")


def test_dihedral_against_hand_made_geometry():
    # a unit square bent by a known angle around the middle bond
    for angle in (-2.5, -1.0, 0.3, 1.7, np.pi):
        p0, p1, p2 = np.array([1.0, 0, 0]), np.zeros(3), np.array([0, 0, 1.0])
        p3 = np.array([np.cos(angle), np.sin(angle), 1.0])
        assert dihedral(p0, p1, p2, p3) == pytest.approx(angle if angle < np.pi else np.pi, abs=1e-12)
    beads = np.random.default_rng(0).normal(size=(7, 5, 3))
    phi_psi = backbone_dihedrals(beads)
    assert phi_psi.shape == (7, 2) and np.all(np.abs(phi_psi) <= np.pi)
    mirrored = beads * np.array([1, 1, -1])            # a mirror image flips the sign of every dihedral
    assert np.allclose(backbone_dihedrals(mirrored), -phi_psi)


def test_interrupted_run_resumes_to_the_same_trajectory(tmp_path):
    s = REMDSettings(n_replicas=3, n_frames=6, chunk_frames=3, save_every=50, swap_every=25, equilibration_steps=100)
    whole = run_remd(s, tmp_path / "a", seed=3, run=0, log=lambda m: None)

    class Stop(Exception):
        pass

    def stop_after_first_chunk(message):
        raise Stop(message)

    with pytest.raises(Stop):
        run_remd(s, tmp_path / "b", seed=3, run=0, log=stop_after_first_chunk)
    assert sorted(p.name for p in (tmp_path / "b" / "run_0").glob("chunk_*")) == ["chunk_0000.npy"]
    lines = []
    resumed = run_remd(s, tmp_path / "b", seed=3, run=0, log=lines.append)
    assert len(lines) == 1 and "chunk 2/2" in lines[0]           # only the missing chunk ran
    assert whole.shape == (6, 5, 3) and np.allclose(resumed, whole)
    assert np.all(np.linalg.norm(whole[:, 1] - whole[:, 2], axis=-1) < 0.2)   # N-CA bond, nm
    with pytest.raises(ValueError, match="other settings"):
        run_remd(REMDSettings(n_frames=9), tmp_path / "b", seed=3, run=0)
