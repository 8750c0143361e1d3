"""Reader and writer for the MD17 / MD22 ``.npz`` format.

Keys: ``R`` positions [frames, n, 3] in Angstrom, ``z`` atomic numbers [n], ``E`` energies
[frames] or [frames, 1] in kcal/mol, ``F`` forces [frames, n, 3] in kcal/mol/Angstrom. Optional
string keys ``name`` and ``theory`` (as in the sGDML files) are carried into the manifest.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

from ..atomic import temp_sibling
from .records import MAX_Z, DatasetError, build_table
from .store import Manifest

MD17_UNITS = {"length": "angstrom", "energy": "kcal/mol", "forces": "kcal/mol/angstrom"}


@dataclass
class MDTrajectory:
    z: np.ndarray                   # [n]
    R: np.ndarray                   # [frames, n, 3]
    E: Optional[np.ndarray]         # [frames]
    F: Optional[np.ndarray]         # [frames, n, 3]
    name: str
    theory: Optional[str]

    @property
    def n_frames(self) -> int:
        return int(self.R.shape[0])


def _scalar_string(data, key: str) -> Optional[str]:
    if key not in data.files:
        return None
    value = data[key]
    return str(value.item() if value.shape == () else value.reshape(-1)[0])


def read_md_npz(path: str | Path) -> MDTrajectory:
    """Read and validate an MD17/MD22 ``.npz``; errors name the file, the key and the frame."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DatasetError(f"{path}: not a readable .npz file: {err}") from None
    with data:
        missing = [k for k in ("R", "z") if k not in data.files]
        if missing:
            raise DatasetError(f"{path}: missing key(s) {missing}; found {sorted(data.files)} (MD17 format needs R, z, E, F)")
        R = np.asarray(data["R"], dtype=np.float64)
        z = np.asarray(data["z"]).reshape(-1)
        E = np.asarray(data["E"], dtype=np.float64) if "E" in data.files else None
        F = np.asarray(data["F"], dtype=np.float64) if "F" in data.files else None
        name = _scalar_string(data, "name") or path.stem
        theory = _scalar_string(data, "theory")
    if R.ndim != 3 or R.shape[2] != 3:
        raise DatasetError(f"{path}: key 'R' must have shape [frames, n_atoms, 3], got {list(R.shape)}")
    if R.shape[1] != len(z):
        raise DatasetError(f"{path}: key 'R' has {R.shape[1]} atoms per frame but 'z' has {len(z)}")
    if not np.issubdtype(z.dtype, np.integer) or ((z < 1) | (z > MAX_Z)).any():
        raise DatasetError(f"{path}: key 'z' must hold atomic numbers 1-{MAX_Z}, got {np.unique(z)[:10].tolist()}")
    if E is not None:
        if E.ndim == 2 and E.shape[1] == 1:
            E = E[:, 0]
        if E.shape != (R.shape[0],):
            raise DatasetError(f"{path}: key 'E' must have shape [frames] or [frames, 1] with frames={R.shape[0]}, got {list(E.shape)}")
    if F is not None and F.shape != R.shape:
        raise DatasetError(f"{path}: key 'F' must have the shape of 'R' {list(R.shape)}, got {list(F.shape)}")
    for key, arr in (("R", R), ("E", E), ("F", F)):
        if arr is not None and not np.isfinite(arr).all():
            frame = int(np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(1))[0])
            raise DatasetError(f"{path}: key '{key}' has NaN or inf at frame {frame}")
    return MDTrajectory(z=z.astype(np.int16), R=R, E=E, F=F, name=name, theory=theory)


def write_md_npz(path: str | Path, z, R, E=None, F=None, name: str = "", theory: str = "") -> None:
    """Write a trajectory in the MD17 layout (float32 R/F, float64 E as [frames, 1])."""
    arrays = {"z": np.asarray(z, dtype=np.uint8), "R": np.asarray(R, dtype=np.float32),
              "name": np.array(name), "theory": np.array(theory)}
    if E is not None:
        arrays["E"] = np.asarray(E, dtype=np.float64).reshape(-1, 1)
    if F is not None:
        arrays["F"] = np.asarray(F, dtype=np.float32)
    path = Path(path)
    tmp = temp_sibling(path, ".npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def trajectory_table(traj: MDTrajectory, frames: Optional[np.ndarray] = None) -> pa.Table:
    """Record table of the selected frames (all by default); ``group`` = 0 (one trajectory)."""
    idx = np.arange(traj.n_frames) if frames is None else np.asarray(frames)
    return build_table(
        traj.z, traj.R[idx],
        ids=[f"{traj.name}-{i}" for i in idx],
        forces=None if traj.F is None else traj.F[idx],
        energy=None if traj.E is None else traj.E[idx],
        group=np.zeros(len(idx), dtype=np.int64),
    )


def trajectory_manifest(traj: MDTrajectory, kT: float, path: str | Path) -> Manifest:
    return Manifest(
        name=traj.name, source="md-npz", units=dict(MD17_UNITS), kT=kT,
        level_of_theory=traj.theory or "unknown (not recorded in the .npz)",
        generator={"file": str(path), "n_frames": traj.n_frames},
    )
