"""GFN2-xTB Langevin MD (tblite): MD17 layout and units, resumable with the same trajectory."""
import numpy as np
import pytest
import tblite  # noqa: F401  (required: in the pinned set, so a broken install fails here, not skips)

from moldiff.data.npz import read_md_npz
from moldiff.data.xtb_md import MDSettings, initial_structure, run_md
from moldiff.physics.xtb import EV_TO_KCAL_PER_MOL, gfn2_calculator

SETTINGS = MDSettings(equilibration_steps=10, save_every=2, n_frames=8, chunk_frames=4, seed=3)


def quiet(_):
    pass


def test_trajectory_is_in_md17_units_and_labelled(tmp_path):
    path = run_md("ethanol", SETTINGS, tmp_path, log=quiet)
    traj = read_md_npz(path)
    assert traj.R.shape == (8, 9, 3) and traj.E.shape == (8,) and sorted(traj.z.tolist()) == [1] * 6 + [6, 6, 8]
    assert traj.theory.startswith("GFN2-xTB (tblite), Langevin MD 500 K")
    # energies and forces are GFN2-xTB's, converted from eV to kcal/mol(/A)
    atoms = initial_structure("ethanol", 3)
    atoms.set_positions(traj.R[-1])
    atoms.calc = gfn2_calculator()
    assert traj.E[-1] == pytest.approx(atoms.get_potential_energy() * EV_TO_KCAL_PER_MOL, rel=1e-6)
    # (R is stored in float32 as in MD17, so recomputed forces agree to ~1e-3 kcal/mol/A)
    np.testing.assert_allclose(traj.F[-1], atoms.get_forces() * EV_TO_KCAL_PER_MOL, rtol=1e-3, atol=2e-2)
    assert SETTINGS.kT == pytest.approx(0.99361, abs=1e-4)          # k_B x 500 K in kcal/mol


def test_interrupted_run_resumes_to_the_same_trajectory(tmp_path):
    whole = read_md_npz(run_md("ethanol", SETTINGS, tmp_path / "a", log=quiet))
    run_md("ethanol", SETTINGS, tmp_path / "b", log=quiet, stop_after_chunks=1)
    assert not (tmp_path / "b" / "ethanol.npz").exists() and (tmp_path / "b" / "ethanol" / "chunk_00000.npz").exists()
    resumed = read_md_npz(run_md("ethanol", SETTINGS, tmp_path / "b", log=quiet))
    np.testing.assert_allclose(resumed.R, whole.R, atol=1e-5)
    # (the SCF restarts from a fresh guess after resuming: energies agree to ~1e-5 kcal/mol)
    np.testing.assert_allclose(resumed.E, whole.E, rtol=0, atol=1e-3)


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    run_md("ethanol", SETTINGS, tmp_path, log=quiet, stop_after_chunks=1)
    with pytest.raises(ValueError, match="other settings"):
        run_md("ethanol", MDSettings(equilibration_steps=10, save_every=3, n_frames=8, chunk_frames=4, seed=3),
               tmp_path, log=quiet)
