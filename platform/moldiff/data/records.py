"""The molecule record schema and its validation.

A dataset is a table with one molecule per row:

    id       string               unique within the dataset
    z        list<int16>          atomic numbers, length n
    pos      list<float32>        positions, flattened [n, 3] row-major, in the manifest's length unit
    forces   list<float32>        optional, same shape as pos, in the manifest's force unit
    energy   float64              optional, in the manifest's energy unit
    group    int64                optional: independence group (MCMC chain / trajectory); frames of
                                  different groups are statistically independent
    smiles   string               optional
    prop_<name> float64           optional scalar properties (units in the manifest)
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_Z = 118
REQUIRED = ("id", "z", "pos")
PROPERTY_PREFIX = "prop_"


class DatasetError(ValueError):
    """A dataset that fails validation; the message names the file and the row."""


def build_table(
    z: Sequence[np.ndarray] | np.ndarray,
    pos: Sequence[np.ndarray] | np.ndarray,
    *,
    ids: Optional[Sequence[str]] = None,
    forces: Sequence[np.ndarray] | np.ndarray | None = None,
    energy: Optional[np.ndarray] = None,
    group: Optional[np.ndarray] = None,
    smiles: Optional[Sequence[str]] = None,
    properties: Optional[dict[str, np.ndarray]] = None,
    id_prefix: str = "mol",
) -> pa.Table:
    """Build a record table from per-molecule arrays or from stacked fixed-size arrays.

    ``z`` is either a list of [n_i] arrays or one [n] array shared by every molecule (fixed-size
    systems); ``pos`` / ``forces`` are lists of [n_i, 3] arrays or one [S, n, 3] array.
    """
    n_mol = len(pos)
    if isinstance(z, np.ndarray) and z.ndim == 1 and isinstance(pos, np.ndarray) and pos.ndim == 3:
        z_list = np.broadcast_to(z.astype(np.int16), (n_mol, len(z)))
    else:
        z_list = z
    columns = {
        "id": pa.array(list(ids) if ids is not None else [f"{id_prefix}-{i}" for i in range(n_mol)], pa.string()),
        "z": _list_column(z_list, np.int16),
        "pos": _list_column(pos, np.float32),
    }
    if forces is not None:
        columns["forces"] = _list_column(forces, np.float32)
    if energy is not None:
        columns["energy"] = pa.array(np.asarray(energy, dtype=np.float64).reshape(-1))
    if group is not None:
        columns["group"] = pa.array(np.asarray(group, dtype=np.int64).reshape(-1))
    if smiles is not None:
        columns["smiles"] = pa.array(list(smiles), pa.string())
    for name, values in (properties or {}).items():
        columns[PROPERTY_PREFIX + name] = pa.array(np.asarray(values, dtype=np.float64).reshape(-1))
    return pa.table(columns)


def _list_column(arrays, dtype) -> pa.Array:
    if isinstance(arrays, np.ndarray) and arrays.dtype != object:
        flat = np.ascontiguousarray(arrays, dtype=dtype).reshape(len(arrays), -1)
        offsets = np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32) if len(arrays) else np.zeros(1, np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.reshape(-1)))
    flats = [np.asarray(a, dtype=dtype).reshape(-1) for a in arrays]
    lengths = np.array([len(a) for a in flats], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(flats) if flats else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def _row_label(table: pa.Table, row: int) -> str:
    ident = table.column("id")[row].as_py() if "id" in table.column_names else None
    return f"row {row}" + (f" (id {ident!r})" if ident is not None else "")


def _first_bad_row(table: pa.Table, values_ok: np.ndarray, column: str) -> int:
    """Row index of the first False in a flattened list column's validity mask."""
    offsets = np.asarray(table.column(column).combine_chunks().offsets)
    bad_value = int(np.argmin(values_ok))
    return int(np.searchsorted(offsets, bad_value, side="right") - 1)


def validate_table(table: pa.Table, source: str) -> None:
    """Reject missing columns, shape mismatches, NaN/inf coordinates and unknown elements."""
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DatasetError(f"{source}: missing required column(s) {missing}; found {table.column_names}")
    if table.num_rows == 0:
        raise DatasetError(f"{source}: the dataset has no rows")
    n_atoms = pc.list_value_length(table.column("z")).to_numpy(zero_copy_only=False)
    for name in ("pos", "forces"):
        if name not in table.column_names:
            continue
        lengths = pc.list_value_length(table.column(name)).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != 3 * n_atoms)
        if bad.size:
            r = int(bad[0])
            raise DatasetError(
                f"{source}: {_row_label(table, r)}: '{name}' has {lengths[r]} values but z has "
                f"{n_atoms[r]} atoms (expected {3 * n_atoms[r]} = n x 3)"
            )
        values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        if not finite.all():
            r = _first_bad_row(table, finite, name)
            raise DatasetError(f"{source}: {_row_label(table, r)}: '{name}' contains NaN or inf")
    if (n_atoms == 0).any():
        r = int(np.flatnonzero(n_atoms == 0)[0])
        raise DatasetError(f"{source}: {_row_label(table, r)}: molecule has no atoms")
    z = table.column("z").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    z_ok = (z >= 1) & (z <= MAX_Z)
    if not z_ok.all():
        r = _first_bad_row(table, z_ok, "z")
        bad_z = int(z[np.argmin(z_ok)])
        raise DatasetError(f"{source}: {_row_label(table, r)}: unknown element with atomic number {bad_z} (allowed 1-{MAX_Z})")
    if "energy" in table.column_names:
        e = table.column("energy").to_numpy(zero_copy_only=False)
        ok = np.isfinite(e)
        if not ok.all():
            r = int(np.argmin(ok))
            raise DatasetError(f"{source}: {_row_label(table, r)}: 'energy' is NaN or inf")
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise DatasetError(f"{source}: ids are not unique")


def property_names(table: pa.Table) -> list[str]:
    return [c[len(PROPERTY_PREFIX):] for c in table.column_names if c.startswith(PROPERTY_PREFIX)]
