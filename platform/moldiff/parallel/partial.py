"""Partial results of a long stage (a seed's sampling, an actor's simulation, a relaxation pass),
kept on disk block by block as they land, so a killed driver or actor loses at most the blocks in
flight and a rerun continues from the complete ones instead of starting over.

A directory of blocks carries the fingerprint of the work it belongs to (the checkpoint's digest,
the stage's settings, the seed): a rerun with the same fingerprint reuses the blocks; one with a
different fingerprint (a retrained model, changed settings) discards them, saying so. Every block
is written atomically (``moldiff.atomic``), so a block on disk is always whole. When the stage has
written its final result, the partial directory is removed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..atomic import write_file, write_text

FINGERPRINT = "fingerprint.json"
MADE_WITH = "_made_with.json"       # beside a plain Parquet result; "_": not read as data by pyarrow


def _canonical(fingerprint: dict) -> dict:
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


class PartialResults:
    """Blocks of one piece of work under ``directory``, valid for ``fingerprint`` (JSON-able)."""

    def __init__(self, directory: Path | str, fingerprint: dict, log: Optional[Callable[[str], None]] = print):
        self.dir = Path(directory)
        self.fingerprint = _canonical(fingerprint)
        if self.dir.exists() and self._stored() != self.fingerprint:
            if log is not None and any(self.dir.iterdir()):
                log(f"[resume] {self.dir}: partial results of other settings or another model; discarded")
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / FINGERPRINT).exists():
            write_text(self.dir / FINGERPRINT, json.dumps(self.fingerprint, indent=1, sort_keys=True) + "\n")

    def _stored(self) -> Optional[dict]:
        try:
            return json.loads((self.dir / FINGERPRINT).read_text())
        except (OSError, ValueError):
            return None

    def path(self, name: str) -> Path:
        return self.dir / name

    def names(self, pattern: str = "*") -> list[str]:
        """The complete blocks matching ``pattern``, sorted (temporary files of a write that was
        cut short are hidden and never match)."""
        return sorted(p.name for p in self.dir.glob(pattern) if not p.name.startswith(".") and p.name != FINGERPRINT)

    def write(self, name: str, write: Callable[[Path], None]) -> Path:
        """``write(tmp)`` writes block ``name`` at a temporary path, then renamed into place."""
        write_file(self.dir / name, write)
        return self.dir / name

    def save_arrays(self, name: str, **arrays: np.ndarray) -> Path:
        def to(tmp: Path):
            with open(tmp, "wb") as fh:                 # a handle: np.savez would append .npz to the name
                np.savez(fh, **arrays)
        return self.write(name, to)

    def load_arrays(self, name: str) -> dict[str, np.ndarray]:
        with np.load(self.dir / name, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    def discard(self) -> None:
        """The final result is written: the blocks are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)


def digest(value: Any) -> str:
    """A short hash of a JSON-able value or an array's bytes."""
    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes() + str(value.shape).encode()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(_canonical(value), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Work:
    """One seed's worth of a stage (``kind``: sample, generate, simulate, relax-<label>), named by
    everything its result depends on (``fingerprint``: the checkpoint's digest, the settings, the
    seed). Its partial blocks live in ``<run_dir>/partial/<kind>_seed_<seed>/``; the dataset it
    ends in records ``made_with`` = :attr:`id`, so a rerun knows the dataset is this work's."""
    run_dir: Path
    kind: str
    seed: int
    fingerprint: dict

    @property
    def id(self) -> str:
        return digest({"kind": self.kind, "seed": self.seed, **self.fingerprint})

    def partial(self, log: Optional[Callable[[str], None]] = print) -> PartialResults:
        return PartialResults(Path(self.run_dir) / "partial" / f"{self.kind}_seed_{self.seed}",
                              {"kind": self.kind, "seed": self.seed, **self.fingerprint}, log)

    def done_in(self, dataset: Path, log: Optional[Callable[[str], None]] = print) -> bool:
        """``dataset`` exists and was made by this very work (a rerun keeps it instead of redoing it)."""
        from ..data.store import dataset_exists, read_manifest
        try:
            if dataset_exists(dataset):
                made = read_manifest(dataset).generator.get("made_with")
            else:                           # a plain Parquet directory (relaxed molecules)
                made = json.loads((Path(dataset) / MADE_WITH).read_text()).get("made_with")
        except (OSError, ValueError):
            return False
        if made == self.id and log is not None:
            log(f"[resume] {dataset}: already made by this model with these settings ({self.kind}, seed "
                f"{self.seed}); kept (delete it to make it again)")
        return made == self.id


def seed_work(run_dir: Path, checkpoint: str, kind: str, seed: int, cfg, *sections: str, **extra) -> Work:
    """A seed's work in a run: made with the model of digest ``checkpoint`` and the named config
    ``sections`` (``sampling``: without its list of seeds, which changes no seed's result)."""
    settings = {}
    for name in sections:
        section = getattr(cfg, name).model_dump(mode="json")
        if name == "sampling":
            section.pop("seeds", None)
        settings[name] = section
    return Work(Path(run_dir), kind, seed, {"checkpoint": checkpoint, **settings, **extra})


# a chunk of work is an array (positions, states) or a list of molecules (z, pos): stored as arrays
def encode_chunk(result) -> dict[str, np.ndarray]:
    if isinstance(result, np.ndarray):
        return {"array": result}
    return {"z": np.concatenate([z for z, _ in result]), "pos": np.concatenate([p for _, p in result]),
            "n_atoms": np.array([len(z) for z, _ in result])}


def decode_chunk(arrays: dict[str, np.ndarray]):
    if "array" in arrays:
        return arrays["array"]
    bounds = np.concatenate([[0], np.cumsum(arrays["n_atoms"])])
    return [(arrays["z"][a:b], arrays["pos"][a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
