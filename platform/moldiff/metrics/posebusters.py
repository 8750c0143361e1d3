"""PoseBusters' plausibility checks (Buttenschoen et al. 2024; the ``posebusters`` package, config
``mol``) on generated or relaxed molecules: sanitisation, InChI, connectivity, radicals, bond
lengths, bond angles, internal steric clash, ring and double-bond flatness, and the energy ratio
against RDKit conformers of the same molecule. Bonds come from the geometry the same way as for
EDM stability and RDKit validity (``metrics.chemistry``: bond orders from EDM's length table), so
a molecule whose bonds make no sense fails PoseBusters' sanitisation as it fails validity, and a
ring whose bonds that table reads as single (benzene's 1.39 A bonds can be) is judged as a
non-aromatic ring.

``posebusters_rates`` returns the pass fraction of every check and of all of them together
(``all``), over the molecules given, as report keys ``posebusters_<check>``; a molecule with
NaN/inf coordinates fails every check.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Sequence

import numpy as np


PREFIX = "posebusters_"


def _mol(z: np.ndarray, pos: np.ndarray):
    from .chemistry import bond_order_matrix, to_rdkit
    return to_rdkit(z, pos, bond_order_matrix(z, pos)).GetMol()


@contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null (RDKit writes from C++); Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _passed(value) -> bool:
    """A check passed: True, or 1. A module that could not run (None, NaN) did not pass."""
    return value is not None and value == value and bool(value)


def posebusters_rates(molecules: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    import logging

    from posebusters import PoseBusters
    from rdkit import rdBase

    if not molecules:
        raise ValueError("posebusters_rates: no molecules")
    finite = [i for i, (_, p) in enumerate(molecules) if np.isfinite(np.asarray(p, dtype=np.float64)).all()]
    # implausible molecules are expected here: neither RDKit nor PoseBusters should log each one
    quiet, level = logging.getLogger("posebusters"), logging.getLogger("posebusters").level
    quiet.setLevel(logging.ERROR)
    try:
        # PoseBusters' sanitisation module re-enables RDKit's C++ log after each molecule
        with rdBase.BlockLogs(), _stderr_silenced():
            table = PoseBusters(config="mol").bust([_mol(*molecules[i]) for i in finite]) if finite else None
    finally:
        quiet.setLevel(level)
    if table is None:
        return {f"{PREFIX}all": 0.0}
    checks = table.map(_passed)
    rates = {PREFIX + name.replace("-", "_"): float(checks[name].sum()) / len(molecules) for name in checks.columns}
    rates[f"{PREFIX}all"] = float(checks.all(axis=1).sum()) / len(molecules)
    return rates
