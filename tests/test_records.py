import numpy as np
import pyarrow as pa
import pytest
import torch

from moldiff.data.batch import collate_arrow, collate_numpy, fixed_size_batch
from moldiff.data.records import DatasetError, build_table, validate_table
from moldiff.data.store import Manifest, read_dataset, stacked_positions, write_dataset


def mixed_table():
    z = [np.array([6, 1, 1, 1, 1]), np.array([8, 1, 1]), np.array([6, 8])]
    pos = [np.random.default_rng(i).normal(size=(len(a), 3)) for i, a in enumerate(z)]
    forces = [np.ones((len(a), 3)) for a in z]
    return build_table(z, pos, forces=forces, energy=np.array([1.0, 2.0, 3.0]), ids=["ch4", "h2o", "co"],
                       properties={"gap": np.array([0.1, 0.2, 0.3])})


def manifest(**kw):
    return Manifest(name="t", source="test", units={"length": "angstrom"}, properties={"gap": "eV"}, **kw)


def test_round_trip_with_manifest(tmp_path):
    table = mixed_table()
    m = write_dataset(tmp_path / "ds", table, manifest(kT=0.6))
    assert (m.n_molecules, m.n_atoms_min, m.n_atoms_max, m.elements) == (3, 2, 5, [1, 6, 8])
    back, m2 = read_dataset(tmp_path / "ds")
    assert back.equals(table) and m2.kT == 0.6 and m2.units == {"length": "angstrom"}


def replace_column(table, name, values):
    return table.set_column(table.column_names.index(name), name, values)


def test_nan_coordinates_are_rejected_with_row_and_id(tmp_path):
    table = mixed_table()
    pos = table.column("pos").to_pylist()
    pos[1][4] = float("nan")
    bad = replace_column(table, "pos", pa.array(pos, pa.list_(pa.float32())))
    with pytest.raises(DatasetError, match=r"row 1 \(id 'h2o'\): 'pos' contains NaN"):
        write_dataset(tmp_path / "ds", bad, manifest())
    assert not (tmp_path / "ds").exists()


def test_unknown_element_and_shape_mismatch():
    table = mixed_table()
    z = table.column("z").to_pylist()
    z[2][1] = 0
    with pytest.raises(DatasetError, match=r"row 2 \(id 'co'\): unknown element with atomic number 0"):
        validate_table(replace_column(table, "z", pa.array(z, pa.list_(pa.int16()))), "f.parquet")
    z[2][1] = 8
    forces = table.column("forces").to_pylist()
    forces[0] = forces[0][:-3]
    with pytest.raises(DatasetError, match=r"f.parquet: row 0 \(id 'ch4'\): 'forces' has 12 values but z has 5 atoms"):
        validate_table(replace_column(table, "forces", pa.array(forces, pa.list_(pa.float32()))), "f.parquet")
    with pytest.raises(DatasetError, match="missing required column"):
        validate_table(table.drop(["pos"]), "f.parquet")


def test_failed_write_keeps_existing_dataset(tmp_path):
    write_dataset(tmp_path / "ds", mixed_table(), manifest())
    with pytest.raises(DatasetError):
        write_dataset(tmp_path / "ds", mixed_table(), Manifest(name="t", source="x", units={}))  # no unit for gap
    back, _ = read_dataset(tmp_path / "ds")
    assert back.num_rows == 3


def test_corrupt_parquet_names_file(tmp_path):
    write_dataset(tmp_path / "ds", mixed_table(), manifest())
    (tmp_path / "ds" / "data.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="data.parquet: cannot read Parquet"):
        read_dataset(tmp_path / "ds")


def test_collate_variable_size():
    g = collate_arrow(mixed_table(), properties=["gap"])
    assert g.n_atoms.tolist() == [5, 3, 2] and g.fixed_size is None
    assert g.batch.tolist() == [0] * 5 + [1] * 3 + [2] * 2
    assert g.z.tolist()[:6] == [6, 1, 1, 1, 1, 8]
    assert g.pos.shape == (10, 3) and g.forces.shape == (10, 3) and g.props.shape == (3, 1)
    sub = g.select(torch.tensor([2, 0]))
    assert sub.n_atoms.tolist() == [2, 5] and sub.z.tolist() == [6, 8, 6, 1, 1, 1, 1]
    torch.testing.assert_close(sub.pos[2:], g.pos[:5])
    # the numpy batch format of Ray Data (object arrays) gives the same batch
    rows = {k: np.array(table_col, dtype=object) if k in ("z", "pos", "forces") else np.array(table_col)
            for k, table_col in ((c, [np.array(v) for v in mixed_table().column(c).to_pylist()]
                                 if c in ("z", "pos", "forces") else mixed_table().column(c).to_pylist())
                                for c in mixed_table().column_names)}
    g2 = collate_numpy(rows, properties=["gap"])
    torch.testing.assert_close(g2.pos, g.pos)
    assert g2.n_atoms.tolist() == [5, 3, 2]


def test_collate_fixed_size_fast_path():
    pos = np.random.default_rng(0).normal(size=(4, 13, 3))
    table = build_table(np.full(13, 18), pos)
    g = collate_arrow(table)
    assert g.fixed_size == 13 and g.num_graphs == 4
    torch.testing.assert_close(g.pos.double(), torch.from_numpy(pos.reshape(-1, 3)), atol=1e-6, rtol=0)
    np.testing.assert_allclose(stacked_positions(table), pos, atol=1e-6)
    assert fixed_size_batch(np.full(13, 18), pos).fixed_size == 13
