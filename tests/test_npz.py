import numpy as np
import pytest

from moldiff.config import validate_config
from moldiff.data.npz import read_md_npz, trajectory_table, write_md_npz
from moldiff.data.records import DatasetError
from moldiff.data.sources import prepare_data
from moldiff.data.store import read_dataset


def md17_file(tmp_path, frames=20, **replace):
    """An ethanol-shaped trajectory in the MD17 layout (what sGDML's .npz files hold)."""
    rng = np.random.default_rng(0)
    arrays = {
        "z": np.array([6, 6, 8, 1, 1, 1, 1, 1, 1], dtype=np.uint8),
        "R": rng.normal(size=(frames, 9, 3)).astype(np.float32),
        "E": rng.normal(size=(frames, 1)) - 97000.0,
        "F": rng.normal(size=(frames, 9, 3)).astype(np.float32),
        "name": np.array("ethanol"), "theory": np.array("GFN2-xTB (test)"),
    }
    arrays.update(replace)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "ethanol.npz"
    np.savez(path, **arrays)
    return path


def test_reads_md17_layout(tmp_path):
    traj = read_md_npz(md17_file(tmp_path))
    assert traj.R.shape == (20, 9, 3) and traj.E.shape == (20,) and traj.F.shape == (20, 9, 3)
    assert traj.name == "ethanol" and traj.theory == "GFN2-xTB (test)"
    table = trajectory_table(traj, np.arange(5))
    assert table.num_rows == 5 and table.column("id")[0].as_py() == "ethanol-0"


def test_writer_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    R, F, E = rng.normal(size=(3, 4, 3)), rng.normal(size=(3, 4, 3)), rng.normal(size=3)
    write_md_npz(tmp_path / "x.npz", [6, 1, 1, 1], R, E, F, name="methane", theory="test")
    traj = read_md_npz(tmp_path / "x.npz")
    np.testing.assert_allclose(traj.R, R, rtol=1e-6)
    np.testing.assert_allclose(traj.E, E)
    assert traj.z.tolist() == [6, 1, 1, 1]


@pytest.mark.parametrize("replace,message", [
    ({"F": None, "R": None}, r"missing key\(s\) \['R'\]"),
    ({"F": np.zeros((20, 8, 3))}, "key 'F' must have the shape of 'R'"),
    ({"E": np.zeros(19)}, "key 'E' must have shape"),
    ({"z": np.array([6, 6, 8])}, "'R' has 9 atoms per frame but 'z' has 3"),
    ({"z": np.array([6, 6, 8, 1, 1, 1, 1, 1, 0])}, "key 'z' must hold atomic numbers"),
])
def test_errors_name_file_and_key(tmp_path, replace, message):
    path = md17_file(tmp_path, **replace)
    with pytest.raises(DatasetError, match=message) as err:
        read_md_npz(path)
    assert str(path) in str(err.value)


def test_nan_frame_is_named(tmp_path):
    R = np.random.default_rng(0).normal(size=(20, 9, 3))
    R[7, 3, 1] = np.nan
    with pytest.raises(DatasetError, match="key 'R' has NaN or inf at frame 7"):
        read_md_npz(md17_file(tmp_path, R=R))


def test_npz_source_first_frames_split(tmp_path):
    path = md17_file(tmp_path, frames=30)
    cfg = validate_config({"name": "md", "data": {"source": "npz", "root": str(tmp_path / "cache"),
                                                  "npz": {"path": str(path), "kT": 1.0},
                                                  "train": {"selection": "first_frames", "n_frames": 10}}})
    prepared = prepare_data(cfg.data, log=lambda m: None)
    train, m = read_dataset(prepared.train)
    ref, _ = read_dataset(prepared.reference)
    assert train.column("id").to_pylist() == [f"ethanol-{i}" for i in range(10)]
    assert ref.num_rows == 20 and m.units["forces"] == "kcal/mol/angstrom" and m.kT == 1.0
    assert m.level_of_theory == "GFN2-xTB (test)"
