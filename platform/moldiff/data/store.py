"""Parquet datasets on disk: ``<dir>/data.parquet`` plus ``<dir>/manifest.json`` (units, provenance).

Writes go to a temporary directory that is renamed into place, so a crash never leaves a
half-written dataset behind and an existing dataset is only replaced by a complete one.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import replace_directory, temp_sibling
from .records import DatasetError, property_names, validate_table

DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1


@dataclass
class Manifest:
    name: str
    source: str                              # "lj", "md17-npz", "qm9", ...
    units: dict[str, str]                    # {"length": ..., "energy": ..., "forces": ...}
    kT: float | None = None                  # thermal energy in the energy unit
    level_of_theory: str | None = None       # "analytic LJ", "GFN2-xTB", "B3LYP/6-31G(2df,p)", ...
    n_molecules: int = 0
    n_atoms_min: int = 0
    n_atoms_max: int = 0
    elements: list[int] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)   # name -> unit
    generator: dict[str, Any] = field(default_factory=dict)    # how it was made (config, seed, stats)
    schema_version: int = SCHEMA_VERSION

    @property
    def fixed_size(self) -> bool:
        return self.n_atoms_min == self.n_atoms_max


def write_dataset(path: str | Path, table: pa.Table, manifest: Manifest) -> Manifest:
    """Validate and write a dataset atomically; fills in the manifest's counts."""
    path = Path(path)
    validate_table(table, source=str(path / DATA_FILE))
    n_atoms = pc.list_value_length(table.column("z")).to_numpy(zero_copy_only=False)
    manifest.n_molecules = table.num_rows
    manifest.n_atoms_min, manifest.n_atoms_max = int(n_atoms.min()), int(n_atoms.max())
    manifest.elements = sorted(int(v) for v in np.unique(table.column("z").combine_chunks().flatten().to_numpy()))
    missing = [p for p in property_names(table) if p not in manifest.properties]
    if missing:
        raise DatasetError(f"{path}: properties {missing} have no unit in the manifest")
    return write_validated(path, table, manifest)


def write_validated(path: Path, table: pa.Table, manifest: Manifest) -> Manifest:
    """The atomic write itself, for a table its schema's validator has accepted."""
    tmp = temp_sibling(path)
    tmp.mkdir(parents=True)
    try:
        pq.write_table(table, tmp / DATA_FILE)
        (tmp / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=2) + "\n")
        replace_directory(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def read_manifest(path: str | Path) -> Manifest:
    file = Path(path) / MANIFEST_FILE
    if not file.is_file():
        raise DatasetError(f"{file}: manifest not found (is {path} a moldiff dataset directory?)")
    try:
        raw = json.loads(file.read_text())
        return Manifest(**raw)
    except (json.JSONDecodeError, TypeError) as err:
        raise DatasetError(f"{file}: not a valid manifest: {err}") from None


def read_dataset(path: str | Path, validate: bool = True) -> tuple[pa.Table, Manifest]:
    path = Path(path)
    file = path / DATA_FILE
    manifest = read_manifest(path)
    if not file.is_file():
        raise DatasetError(f"{file}: data file not found")
    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(f"{file}: cannot read Parquet: {err}") from None
    if validate:
        validate_table(table, source=str(file))
    return table, manifest


def dataset_exists(path: str | Path) -> bool:
    path = Path(path)
    return (path / DATA_FILE).is_file() and (path / MANIFEST_FILE).is_file()


def positions(table: pa.Table, column: str = "pos") -> list[np.ndarray]:
    """Per-molecule [n_i, 3] arrays (float64)."""
    col = table.column(column).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    offsets = np.asarray(col.offsets)
    return [flat[offsets[i]:offsets[i + 1]].reshape(-1, 3) for i in range(len(offsets) - 1)]


def stacked_positions(table: pa.Table, column: str = "pos") -> np.ndarray:
    """[S, n, 3] for a fixed-size dataset; raises if molecule sizes differ."""
    n_atoms = pc.list_value_length(table.column("z")).to_numpy(zero_copy_only=False)
    if len(np.unique(n_atoms)) != 1:
        raise DatasetError(f"stacked_positions needs molecules of one size; found sizes {np.unique(n_atoms)[:10]}")
    flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float64).reshape(table.num_rows, int(n_atoms[0]), 3)
