"""SMILES of a dataset's molecules inferred from their geometries (as generated molecules' are),
the set novelty is judged against; cached beside the dataset because every run on it needs it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..atomic import write_text
from .store import positions, read_dataset


def training_smiles(train_path: Path, log=print) -> set[str]:
    from ..metrics.chemistry import smiles_from_structure

    cache = train_path.parent / f"{train_path.name}.smiles.json"
    if cache.is_file():
        return set(json.loads(cache.read_text()))
    table, _ = read_dataset(train_path, validate=False)
    log(f"[evaluate] inferring SMILES of {table.num_rows} training molecules (once; cached in {cache})")
    found = {s for z, p in zip(table.column("z").to_pylist(), positions(table))
             if (s := smiles_from_structure(np.asarray(z), p)) is not None}
    write_text(cache, json.dumps(sorted(found)))
    return found
