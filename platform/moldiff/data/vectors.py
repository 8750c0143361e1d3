"""Datasets of flat state vectors (systems without atoms, such as Müller-Brown).

Same directory layout as molecular datasets (``data.parquet`` + ``manifest.json``, atomic
writes) with their own record schema, one state per row:

    id      string          unique within the dataset
    x       list<float64>   the state, length D (the manifest's generator records D)
    group   int64           optional: independence group (Langevin chain)
    energy  float64         optional, in the manifest's energy unit
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .records import DatasetError
from .store import DATA_FILE, Manifest, read_dataset, write_validated


def build_vector_table(x: np.ndarray, *, group: Optional[np.ndarray] = None, energy: Optional[np.ndarray] = None,
                       id_prefix: str = "state") -> pa.Table:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"states must be an [n, D] array, got shape {x.shape}")
    n, d = x.shape
    offsets = np.arange(0, n * d + 1, d, dtype=np.int32)
    columns = {"id": pa.array([f"{id_prefix}-{i}" for i in range(n)], pa.string()),
               "x": pa.ListArray.from_arrays(pa.array(offsets), pa.array(x.reshape(-1)))}
    if group is not None:
        columns["group"] = pa.array(np.asarray(group, dtype=np.int64).reshape(-1))
    if energy is not None:
        columns["energy"] = pa.array(np.asarray(energy, dtype=np.float64).reshape(-1))
    return pa.table(columns)


def validate_vector_table(table: pa.Table, source: str) -> int:
    """Reject missing columns, ragged or non-finite states; returns D."""
    missing = [c for c in ("id", "x") if c not in table.column_names]
    if missing:
        raise DatasetError(f"{source}: missing required column(s) {missing}; found {table.column_names}")
    if table.num_rows == 0:
        raise DatasetError(f"{source}: the dataset has no rows")
    lengths = pc.list_value_length(table.column("x")).to_numpy(zero_copy_only=False)
    if (lengths != lengths[0]).any() or lengths[0] == 0:
        r = int(np.flatnonzero(lengths != lengths[0])[0]) if (lengths != lengths[0]).any() else 0
        raise DatasetError(f"{source}: row {r}: state has {lengths[r]} values, the first row {lengths[0]}")
    values = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(len(lengths), -1)
    finite = np.isfinite(values).all(1)
    if not finite.all():
        r = int(np.argmin(finite))
        raise DatasetError(f"{source}: row {r} (id {table.column('id')[r].as_py()!r}): 'x' contains NaN or inf")
    if pc.count_distinct(table.column("id")).as_py() != table.num_rows:
        raise DatasetError(f"{source}: ids are not unique")
    return int(lengths[0])


def write_vector_dataset(path: str | Path, table: pa.Table, manifest: Manifest) -> Manifest:
    path = Path(path)
    dim = validate_vector_table(table, source=str(path / DATA_FILE))
    manifest.n_molecules = table.num_rows
    manifest.generator = {**manifest.generator, "state_dim": dim}
    return write_validated(path, table, manifest)


def read_states(path: str | Path) -> tuple[np.ndarray, Manifest, Optional[np.ndarray]]:
    """(states [n, D], manifest, group or None)."""
    table, manifest = read_dataset(path, validate=False)
    dim = validate_vector_table(table, source=str(Path(path) / DATA_FILE))
    x = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    group = table.column("group").to_numpy() if "group" in table.column_names else None
    return x.astype(np.float64), manifest, group


class VectorBatch:
    """A batch of states for the training loop (the counterpart of GraphBatch)."""

    def __init__(self, x):
        self.x = x

    @property
    def num_graphs(self) -> int:          # the loop counts samples under the graph-batch name
        return int(self.x.shape[0])

    def to(self, device) -> "VectorBatch":
        return VectorBatch(self.x.to(device))

    def select(self, index) -> "VectorBatch":
        return VectorBatch(self.x[index])


def collate_vectors(table: pa.Table, dtype=None) -> VectorBatch:
    import torch

    lengths = pc.list_value_length(table.column("x")).to_numpy(zero_copy_only=False)
    flat = table.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return VectorBatch(torch.tensor(flat.reshape(len(lengths), -1), dtype=dtype or torch.float32))


def random_rotations(x, generator=None):
    """Rotate every state [B, 3n] (n particles, centred) by its own uniformly random rotation."""
    import torch

    b, d = x.shape
    if d % 3:
        raise ValueError(f"rotation augmentation needs states of 3-D particles; got {d} coordinates per state")
    q, r = torch.linalg.qr(torch.randn(b, 3, 3, generator=generator, dtype=x.dtype, device=x.device))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)     # Haar-uniform orthogonal
    q = q * torch.where(torch.det(q) < 0, -1.0, 1.0).to(x.dtype)[:, None, None]  # proper rotations only
    return (x.reshape(b, -1, 3) @ q.transpose(-1, -2)).reshape(b, d)
