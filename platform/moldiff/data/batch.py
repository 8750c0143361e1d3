"""Graph batches: concatenated atoms with a ``batch`` index (the PyG convention), built from rows.

Collation works on Arrow tables (what Ray Data yields with ``batch_format="pyarrow"``) straight
from the list columns' flat value buffers, so there is no Python loop over molecules; fixed-size
systems (LJ clusters, one MD trajectory) additionally get ``fixed_size`` set, which lets graph
builders use a cached fully connected template.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .records import PROPERTY_PREFIX


@dataclass
class GraphBatch:
    z: torch.Tensor                        # [N] long
    pos: torch.Tensor                      # [N, 3]
    batch: torch.Tensor                    # [N] long, molecule index of each atom
    n_atoms: torch.Tensor                  # [B] long
    forces: Optional[torch.Tensor] = None  # [N, 3]
    energy: Optional[torch.Tensor] = None  # [B]
    props: Optional[torch.Tensor] = None   # [B, P]
    fixed_size: Optional[int] = None       # n when every molecule has n atoms

    @property
    def num_graphs(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.z.shape[0])

    def to(self, device) -> "GraphBatch":
        moved = {f.name: (v.to(device) if isinstance(v := getattr(self, f.name), torch.Tensor) else v)
                 for f in fields(self)}
        return GraphBatch(**moved)

    def with_pos(self, pos: torch.Tensor) -> "GraphBatch":
        return replace(self, pos=pos)

    def select(self, index: torch.Tensor, host_n_atoms: Optional[np.ndarray] = None) -> "GraphBatch":
        """Sub-batch of molecules ``index`` (in that order). With ``host_n_atoms`` (this batch's
        ``n_atoms`` as a host array) the atom index is worked out on the host and copied over, so a
        batch on a GPU is cut without the host waiting for the device."""
        if host_n_atoms is not None:
            atom_idx, mol, n_sel = atom_selection(np.asarray(index.cpu() if torch.is_tensor(index) else index),
                                              np.asarray(host_n_atoms))
            device = self.pos.device
            atom_idx, mol, n_sel = (torch.from_numpy(a).to(device, non_blocking=True) for a in (atom_idx, mol, n_sel))
            index = torch.as_tensor(index).to(device, non_blocking=True)
        else:
            ptr = torch.cat([self.n_atoms.new_zeros(1), self.n_atoms.cumsum(0)])
            n_sel = self.n_atoms[index]
            mol = torch.repeat_interleave(torch.arange(len(index), device=n_sel.device), n_sel)
            first_of_mol = torch.cat([n_sel.new_zeros(1), n_sel.cumsum(0)[:-1]])
            local = torch.arange(int(n_sel.sum()), device=n_sel.device) - first_of_mol[mol]
            atom_idx = ptr[index][mol] + local
        return GraphBatch(
            z=self.z[atom_idx], pos=self.pos[atom_idx],
            batch=mol,
            n_atoms=n_sel,
            forces=None if self.forces is None else self.forces[atom_idx],
            energy=None if self.energy is None else self.energy[index],
            props=None if self.props is None else self.props[index],
            fixed_size=self.fixed_size,
        )


def atom_selection(index: np.ndarray, n_atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(atom index, molecule of each selected atom, sizes) of molecules ``index``, on the host."""
    ptr = np.concatenate([[0], np.cumsum(n_atoms)])
    n_sel = n_atoms[index].astype(np.int64)
    mol = np.repeat(np.arange(len(index), dtype=np.int64), n_sel)
    first_of_mol = np.cumsum(n_sel) - n_sel
    atom_idx = ptr[index][mol] + np.arange(int(n_sel.sum()), dtype=np.int64) - first_of_mol[mol]
    return atom_idx.astype(np.int64), mol, n_sel


def from_arrays(
    z: np.ndarray, pos: np.ndarray, n_atoms: np.ndarray, *, forces: np.ndarray | None = None,
    energy: np.ndarray | None = None, props: np.ndarray | None = None, dtype=torch.float32,
) -> GraphBatch:
    """Batch from flat atom arrays (z [N], pos [N,3]) and per-molecule sizes."""
    # torch.tensor copies: Arrow buffers are read-only and the batch must own its memory
    n_atoms_t = torch.tensor(np.asarray(n_atoms), dtype=torch.long)
    sizes = np.unique(np.asarray(n_atoms))
    return GraphBatch(
        z=torch.tensor(np.asarray(z), dtype=torch.long),
        pos=torch.tensor(np.asarray(pos).reshape(-1, 3), dtype=dtype),
        batch=torch.repeat_interleave(torch.arange(len(n_atoms_t)), n_atoms_t),
        n_atoms=n_atoms_t,
        forces=None if forces is None else torch.tensor(np.asarray(forces).reshape(-1, 3), dtype=dtype),
        energy=None if energy is None else torch.tensor(np.asarray(energy), dtype=dtype),
        props=None if props is None else torch.tensor(np.asarray(props), dtype=dtype),
        fixed_size=int(sizes[0]) if len(sizes) == 1 else None,
    )


def fixed_size_batch(z: np.ndarray, pos: np.ndarray, **kw) -> GraphBatch:
    """Batch of S molecules of one composition: z [n], pos [S, n, 3]."""
    pos = np.asarray(pos)
    s, n = pos.shape[:2]
    return from_arrays(np.tile(np.asarray(z), s), pos.reshape(-1, 3), np.full(s, n), **kw)


def _flat(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)


def collate_arrow(table: pa.Table, properties: Optional[list[str]] = None, dtype=torch.float32) -> GraphBatch:
    """Rows of a record table -> GraphBatch."""
    n_atoms = pc.list_value_length(table.column("z")).to_numpy(zero_copy_only=False)
    cols = table.column_names
    props = None
    if properties:
        props = np.stack([table.column(PROPERTY_PREFIX + p).to_numpy(zero_copy_only=False) for p in properties], -1)
    return from_arrays(
        _flat(table, "z"), _flat(table, "pos"), n_atoms,
        forces=_flat(table, "forces") if "forces" in cols else None,
        energy=table.column("energy").to_numpy(zero_copy_only=False) if "energy" in cols else None,
        props=props, dtype=dtype,
    )


def collate_numpy(rows: dict[str, np.ndarray], properties: Optional[list[str]] = None, dtype=torch.float32) -> GraphBatch:
    """Rows as Ray Data's numpy batch format (list columns come as object arrays of arrays)."""
    def cat(name):
        col = rows[name]
        return np.concatenate(list(col)) if col.dtype == object else np.asarray(col).reshape(-1)

    z = cat("z")
    n_atoms = np.array([len(a) for a in rows["z"]]) if rows["z"].dtype == object else np.full(len(rows["z"]), rows["z"].shape[1])
    props = np.stack([rows[PROPERTY_PREFIX + p] for p in properties], -1) if properties else None
    return from_arrays(
        z, cat("pos"), n_atoms,
        forces=cat("forces") if "forces" in rows else None,
        energy=rows.get("energy"), props=props, dtype=dtype,
    )
