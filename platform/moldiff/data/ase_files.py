"""Bring your own data: any file ASE reads (extxyz, ASE ``.db``, ``.traj``, xyz; one file or a
glob) as a moldiff dataset.

Per frame: atomic numbers and positions; the energy and forces where present (``atoms.info`` /
``atoms.arrays`` under the configured keys, else a calculator's stored results, as extxyz and ASE
databases keep them); per-frame properties named in the config (``atoms.info``). Units are the
config's (``data.ase``), converted once to moldiff's molecular convention, the MD17 one: Angstrom,
kcal/mol, kcal/mol/Angstrom. The converted table is cached by the files' content hash, so editing a
file makes a new dataset and never touches one already converted.

Errors name the file and the frame: no positions, NaN or inf, a force array of the wrong shape,
energies on some frames but not others.
"""
from __future__ import annotations

import glob
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from .records import DatasetError, build_table
from .store import Manifest

# to the stored units
ENERGY_TO_KCAL_MOL = {"eV": 23.060547830619, "kcal/mol": 1.0, "kJ/mol": 1.0 / 4.184, "Hartree": 627.509474}
LENGTH_TO_ANGSTROM = {"Angstrom": 1.0, "nm": 10.0, "Bohr": 0.529177210903}
STORED_UNITS = {"length": "angstrom", "energy": "kcal/mol", "forces": "kcal/mol/angstrom"}


@dataclass(frozen=True)
class AseFileSettings:
    path: str                           # a file or a glob
    index: str = ":"                    # ASE's frame selection (":" every frame)
    energy_unit: str = "eV"
    length_unit: str = "Angstrom"
    energy_key: str = "energy"          # atoms.info key; else the calculator's energy
    forces_key: str = "forces"          # atoms.arrays key; else the calculator's forces
    properties: tuple[str, ...] = ()    # atoms.info keys carried as per-frame properties


def files_of(pattern: str) -> list[Path]:
    found = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())))
    if not found:
        raise DatasetError(f"data.ase.path: no file matches {pattern}")
    return found


def content_hash(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _energy_forces(atoms, s: AseFileSettings):
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    energy = atoms.info.get(s.energy_key, results.get("energy"))
    forces = atoms.arrays.get(s.forces_key, results.get("forces"))
    return energy, forces


def _frames(path: Path, index: str):
    """ASE's frames of one file; an ASE database's rows with their key-value pairs in ``info``
    (``ase.io`` drops them)."""
    from ase.io import iread

    if path.suffix != ".db":
        yield from iread(str(path), index=index)
        return
    from itertools import islice

    from ase.db import connect
    from ase.io.formats import string2index

    with connect(str(path)) as db:
        picked = range(db.count())[string2index(index)]
        if isinstance(picked, int):
            picked = range(picked, picked + 1)
        # rows stream in id order: a forward slice is read lazily, a reversed one needs them all
        if picked.step > 0:
            rows = islice(db.select(), picked.start, picked.stop, picked.step)
        else:
            every = list(db.select())
            rows = (every[i] for i in picked)
        for row in rows:
            atoms = row.toatoms()
            atoms.info.update(row.key_value_pairs)
            yield atoms


def read_frames(s: AseFileSettings):
    """(z list, positions list, energies or None, forces list or None, properties, ids) in the stored
    units; every frame checked, errors naming file and frame."""
    if s.energy_unit not in ENERGY_TO_KCAL_MOL:
        raise DatasetError(f"data.ase.energy_unit: {s.energy_unit!r} does not parse (known: {sorted(ENERGY_TO_KCAL_MOL)})")
    if s.length_unit not in LENGTH_TO_ANGSTROM:
        raise DatasetError(f"data.ase.length_unit: {s.length_unit!r} does not parse (known: {sorted(LENGTH_TO_ANGSTROM)})")
    e_scale, l_scale = ENERGY_TO_KCAL_MOL[s.energy_unit], LENGTH_TO_ANGSTROM[s.length_unit]
    zs, pos, energies, forces, ids = [], [], [], [], []
    props: dict[str, list] = {k: [] for k in s.properties}
    first_with = {"energy": None, "forces": None}
    for path in files_of(s.path):
        try:
            for i, atoms in enumerate(_frames(path, s.index)):
                where = f"{path}, frame {i}"
                if len(atoms) == 0:
                    raise DatasetError(f"{where}: no atoms (no positions)")
                x = np.asarray(atoms.get_positions(), dtype=np.float64)
                if not np.isfinite(x).all():
                    raise DatasetError(f"{where}: positions hold NaN or inf")
                energy, force = _energy_forces(atoms, s)
                for name, value in (("energy", energy), ("forces", force)):
                    present = value is not None
                    if first_with[name] is None:
                        first_with[name] = (present, where)
                    elif first_with[name][0] != present:
                        raise DatasetError(f"{where}: {'has' if present else 'lacks'} {name}, unlike "
                                           f"{first_with[name][1]}: every frame or none must carry it")
                if energy is not None:
                    energy = float(energy)
                    if not np.isfinite(energy):
                        raise DatasetError(f"{where}: energy is NaN or inf")
                    energies.append(energy * e_scale)
                if force is not None:
                    force = np.asarray(force, dtype=np.float64)
                    if force.shape != x.shape:
                        raise DatasetError(f"{where}: forces have shape {list(force.shape)}, positions {list(x.shape)}")
                    if not np.isfinite(force).all():
                        raise DatasetError(f"{where}: forces hold NaN or inf")
                    forces.append(force * e_scale / l_scale)
                for key in s.properties:
                    if key not in atoms.info:
                        raise DatasetError(f"{where}: no property '{key}' in atoms.info (it has {sorted(atoms.info)})")
                    props[key].append(float(atoms.info[key]))
                zs.append(np.asarray(atoms.get_atomic_numbers(), dtype=np.int16))
                pos.append(x * l_scale)
                ids.append(f"{path.stem}-{i}")
        except DatasetError:
            raise
        except Exception as err:            # ASE's own parse errors: say which file
            raise DatasetError(f"{path}: ASE cannot read it ({type(err).__name__}: {err})") from None
    if not zs:
        raise DatasetError(f"{s.path}: no frames (index {s.index!r})")
    return zs, pos, (np.array(energies) if energies else None), (forces or None), props, ids


def ase_table(s: AseFileSettings, kT: Optional[float]) -> tuple[pa.Table, Manifest, str]:
    """The frames as a record table, its manifest, and the files' content hash (the cache key)."""
    paths = files_of(s.path)
    zs, pos, energies, forces, props, ids = read_frames(s)
    table = build_table(zs, pos, ids=ids, forces=forces, energy=energies,
                        properties={k: np.array(v) for k, v in props.items()} or None,
                        group=np.zeros(len(zs), dtype=np.int64))
    name = paths[0].stem if len(paths) == 1 else f"{paths[0].stem}-{len(paths)}files"
    manifest = Manifest(name=name, source="ase", units=dict(STORED_UNITS),
                        kT=None if kT is None else kT * ENERGY_TO_KCAL_MOL[s.energy_unit],
                        level_of_theory="as recorded in the files (not checked)",
                        generator={"files": [str(p) for p in paths], "index": s.index,
                                   "converted_from": {"energy": s.energy_unit, "length": s.length_unit}})
    return table, manifest, content_hash(paths)
