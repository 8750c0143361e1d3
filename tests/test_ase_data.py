"""Bring your own data (data.source: ase): extxyz and ASE databases written here, read with their
energies and forces, converted to Angstrom and kcal/mol, cached by content, with errors that name the
file and the frame; and one tiny experiment trained on an extxyz file end to end."""
from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import write

from moldiff.config import ConfigError, apply_overrides, validate_config
from moldiff.data.ase_files import ENERGY_TO_KCAL_MOL, AseFileSettings, read_frames
from moldiff.data.records import DatasetError
from moldiff.data.sources import prepare_data
from moldiff.data.store import positions, read_dataset

EV = ENERGY_TO_KCAL_MOL["eV"]


def frames(n=12, seed=0):
    """Displaced copies of a small C/H/N/O molecule with EMT energies and forces (eV, eV/A)."""
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [1.45, 0, 0], [2.0, 1.2, 0], [-0.5, 0.9, 0.3], [-0.4, -0.9, 0.4], [1.9, -0.9, -0.3]])
    out = []
    for i in range(n):
        atoms = Atoms("CCOHHH", positions=base + rng.normal(scale=0.05, size=base.shape))
        atoms.calc = EMT()
        atoms.get_forces()
        atoms.info["dipole_norm"] = float(i)
        out.append(atoms)
    return out


def ase_data(tmp_path, path, **extra):
    raw = {"name": "x", "output_dir": str(tmp_path / "runs"),
           "data": {"source": "ase", "root": str(tmp_path / "data"), "ase": {"path": str(path), "kT": 0.05, **extra},
                    "train": {"selection": "random_subset", "n_frames": 8}},
           "model": {"hidden": 16, "layers": 2, "time_embedding": 8},
           "training": {"epochs": 2, "batch_size": 4, "warmup_steps": 2},
           "sampling": {"n_steps": 10, "n_samples": 8, "seeds": [0], "batch_size": 8},
           "evaluation": {"distance_bins": 20, "energy_bins": 10, "w2_samples": 8},
           "ray": {"num_workers": 1, "num_sampling_actors": 1}}
    return validate_config(raw)


def test_extxyz_and_an_ase_database_give_the_same_converted_frames(tmp_path):
    atoms = frames()
    write(tmp_path / "traj.extxyz", atoms)
    from ase.db import connect
    with connect(tmp_path / "traj.db") as db:
        for a in atoms:
            db.write(a, dipole_norm=a.info["dipole_norm"])
    read = {}
    for name in ("traj.extxyz", "traj.db"):
        z, pos, energy, forces, props, _ = read_frames(AseFileSettings(str(tmp_path / name), properties=("dipole_norm",)))
        read[name] = (pos, energy, forces, props)
        assert len(z) == 12 and list(z[0]) == [6, 6, 8, 1, 1, 1]
        np.testing.assert_allclose(energy, [a.get_potential_energy() * EV for a in atoms], rtol=1e-6)
        np.testing.assert_allclose(forces[3], atoms[3].get_forces() * EV, rtol=1e-5, atol=1e-8)
        assert props["dipole_norm"] == [float(i) for i in range(12)]
    np.testing.assert_allclose(read["traj.db"][0], read["traj.extxyz"][0], atol=1e-6)
    # an index picks the same frames from both (a database read row by row for a forward slice)
    for index, expected in (("2:9:3", [2, 5, 8]), ("::-4", [11, 7, 3]), ("-2", [10])):
        for name in ("traj.extxyz", "traj.db"):
            picked = read_frames(AseFileSettings(str(tmp_path / name), index=index, properties=("dipole_norm",)))
            assert picked[4]["dipole_norm"] == [float(i) for i in expected], (name, index)
    # nm and kJ/mol convert too
    _, pos_nm, e_kj, f_kj, _, _ = read_frames(AseFileSettings(str(tmp_path / "traj.extxyz"), energy_unit="kJ/mol",
                                                               length_unit="nm"))
    np.testing.assert_allclose(pos_nm[0], read["traj.extxyz"][0][0] * 10)
    np.testing.assert_allclose(e_kj, read["traj.extxyz"][1] / EV / 4.184)
    np.testing.assert_allclose(f_kj[0], read["traj.extxyz"][2][0] / EV / 4.184 / 10)


def test_prepared_once_cached_by_content_and_stated_in_the_manifest(tmp_path):
    write(tmp_path / "traj.extxyz", frames())
    cfg = ase_data(tmp_path, tmp_path / "traj.extxyz")
    data = prepare_data(cfg.data, log=lambda m: None)
    train, manifest = read_dataset(data.train)
    assert train.num_rows == 8 and read_dataset(data.reference)[0].num_rows == 4
    assert manifest.units == {"length": "angstrom", "energy": "kcal/mol", "forces": "kcal/mol/angstrom"}
    assert manifest.kT == pytest.approx(0.05 * EV) and manifest.source == "ase"
    assert data.train == prepare_data(cfg.data, log=lambda m: None).train          # the cache
    write(tmp_path / "traj.extxyz", frames(seed=1))                                # new content: a new dataset
    again = prepare_data(cfg.data, log=lambda m: None)
    assert again.train != data.train and data.train.exists()                      # the first one is kept
    assert not np.allclose(positions(read_dataset(again.train)[0])[0], positions(train)[0])


def test_bad_files_name_the_file_and_the_frame(tmp_path):
    atoms = frames(4)
    atoms[2].positions[1, 0] = np.nan
    write(tmp_path / "nan.extxyz", atoms)
    with pytest.raises(DatasetError, match=r"nan.extxyz, frame 2: positions hold NaN"):
        read_frames(AseFileSettings(str(tmp_path / "nan.extxyz")))
    atoms = frames(3)
    for a in atoms:
        a.new_array("wrong", np.zeros((len(a), 2)))
    write(tmp_path / "shape.extxyz", atoms)
    with pytest.raises(DatasetError, match=r"shape.extxyz, frame 0: forces have shape \[6, 2\], positions \[6, 3\]"):
        read_frames(AseFileSettings(str(tmp_path / "shape.extxyz"), forces_key="wrong"))
    mixed = frames(3)
    mixed[1].calc = None
    write(tmp_path / "mixed.extxyz", mixed)
    with pytest.raises(DatasetError, match=r"mixed.extxyz, frame 1: lacks energy, unlike .*frame 0"):
        read_frames(AseFileSettings(str(tmp_path / "mixed.extxyz")))
    with pytest.raises(DatasetError, match="no file matches"):
        read_frames(AseFileSettings(str(tmp_path / "missing-*.xyz")))
    (tmp_path / "junk.extxyz").write_text("3\nnot a header\nC 0 0\n")
    with pytest.raises(DatasetError, match="junk.extxyz: ASE cannot read it"):
        read_frames(AseFileSettings(str(tmp_path / "junk.extxyz")))
    with pytest.raises(ConfigError, match="data.ase.energy_unit"):
        ase_data(tmp_path, tmp_path / "nan.extxyz", energy_unit="Rydberg")


def test_a_tiny_experiment_trains_on_an_extxyz_file(ray_session, tmp_path):
    from moldiff.experiment import run_experiment
    write(tmp_path / "traj.extxyz", frames(24))
    cfg = ase_data(tmp_path, tmp_path / "traj.extxyz")
    cfg = validate_config(apply_overrides(cfg.model_dump(mode="json"), ["objective.name=psm"]))
    report = run_experiment(cfg, command="pytest", log=lambda m: None)
    assert np.isfinite(report["distance_tvd"].mean) and report.n_samples == 8
