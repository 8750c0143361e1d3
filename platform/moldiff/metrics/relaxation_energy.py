"""Energies of relaxed structures: how far above the GFN2-xTB minimum nearest the DFT target.

RMSD to the DFT geometry says where a relaxer lands; the energy says whether the landing place is
chemically sound (a structure 0.1 A off in a soft torsion is fine, 0.1 A off in a bond is not).
GFN2-xTB is the independent judge (the learned models never saw it, except the force-field
baseline, which is trained on it). On a fixed subset of the inputs, chosen from the input ids
alone, so every sampler and run is judged on the same molecules:

  reference    the GFN2 relaxation started from each target's DFT geometry (its energy, once per
               target, cached in a JSON file beside the inputs: every run shares it);
  relaxed      the GFN2 single point of each relaxed structure, minus its target's reference,
               in kcal/mol (NaN where the relaxation failed, the structure is not finite or
               the calculation fails: counted, never dropped).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..atomic import write_text as write_text_atomic


def energy_subset_ids(ids: Sequence[str], kinds: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` input ids drawn with ``seed`` from the non-``prior`` inputs, independent of row order
    (the same inputs give the same subset in every run), in sorted order."""
    pool = sorted(i for i, k in zip(ids, kinds) if k != "prior")
    if n <= 0 or not pool:
        return []
    pick = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return sorted(pool[i] for i in pick)


def _reference_task(z, target) -> tuple[Optional[float], str]:
    from ..sampling.classical import gfn2_reference_energy
    try:
        return gfn2_reference_energy(np.asarray(z), np.asarray(target, dtype=np.float64)), ""
    except (RuntimeError, ValueError) as err:
        return None, str(err)


def reference_minima(targets: dict[str, tuple[np.ndarray, np.ndarray]], cache: Path,
                     log: Callable[[str], None] = print) -> dict[str, Optional[float]]:
    """GFN2 energy (eV) of the minimum nearest each target's DFT geometry, ``None`` where that
    relaxation fails (the reason is logged and cached). Computed once per target id, in parallel
    Ray tasks when Ray is up, and kept in ``cache`` (JSON: {target_id: {"eV": ..., "error": ...}})."""
    from ..parallel.tasks import run_tasks

    known = json.loads(cache.read_text()) if cache.exists() else {}
    todo = [t for t in targets if t not in known]
    if todo:
        log(f"[energy] GFN2-xTB relaxation of {len(todo)} DFT target(s) (reference minima, cached in {cache})")
        for target_id, (energy, error) in zip(todo, run_tasks(_reference_task, [targets[t] for t in todo])):
            known[target_id] = {"eV": energy, "error": error}
            if error:
                log(f"[energy] target {target_id}: no reference minimum ({error})")
        write_text_atomic(cache, json.dumps(known, indent=1, sort_keys=True) + "\n")
    return {t: known[t]["eV"] for t in targets}


def _single_point_task(z, pos) -> Optional[float]:
    from ..sampling.classical import gfn2_energy
    try:
        return gfn2_energy(np.asarray(z), np.asarray(pos, dtype=np.float64))
    except (RuntimeError, ValueError):
        return None


def energies_above_minimum(zs: Sequence, positions: Sequence, target_ids: Sequence[str],
                           minima: dict[str, Optional[float]], usable: Optional[Sequence[bool]] = None) -> np.ndarray:
    """kcal/mol above the target's reference minimum for each structure; NaN where ``usable`` is
    False (a failed relaxation), the structure is not finite, the single point fails or the target
    has no reference."""
    from ..parallel.tasks import run_tasks
    from ..physics.xtb import EV_TO_KCAL_PER_MOL

    usable = [True] * len(zs) if usable is None else list(usable)
    calls = [i for i, ok in enumerate(usable)
             if ok and minima.get(target_ids[i]) is not None and np.isfinite(np.asarray(positions[i])).all()]
    energies = run_tasks(_single_point_task, [(zs[i], positions[i]) for i in calls])
    out = np.full(len(zs), np.nan)
    for i, e in zip(calls, energies):
        if e is not None:
            out[i] = (e - minima[target_ids[i]]) * EV_TO_KCAL_PER_MOL
    return out


def energy_stats(values: np.ndarray) -> dict[str, float]:
    """Median and mean kcal/mol over the structures that have an energy, and the fraction that
    has none (failed relaxation or calculation)."""
    ok = values[np.isfinite(values)]
    return {"median_energy_above_min": float(np.median(ok)) if ok.size else float("nan"),
            "mean_energy_above_min": float(np.mean(ok)) if ok.size else float("nan"),
            "no_energy_fraction": float(1 - ok.size / max(len(values), 1))}
