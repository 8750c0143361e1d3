"""Judge samples against the reference: distance TVD, h(r) MAE, energy TVD, W2, and the noise floor.

The reference is split into two independent halves by independence group (MCMC chain parity):
half A is what samples are compared with; half B, subsampled to the sample size, gives the noise
floor, the value of each metric between two independent draws from the true distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .config import ExperimentConfig
from .data.store import read_dataset, stacked_positions
from .metrics.distributions import distance_tvd, energy_tvd, hr_mae, wasserstein2
from .metrics.molecular import BondReference, stable_fraction
from .metrics.report import Report

METRIC_ORDER = ("distance_tvd", "hr_mae", "energy_tvd", "w2", "stable_fraction", "distance_frac_outside",
                "energy_frac_outside",
                "diverged_fraction", "median_energy")


@dataclass
class ReferenceSplit:
    a: np.ndarray          # compared against
    b: np.ndarray          # independent draw for the noise floor
    how: str


def split_reference(table, max_frames: int, seed: int) -> ReferenceSplit:
    pos = stacked_positions(table)
    rng = np.random.default_rng(seed)
    if "group" in table.column_names and len(np.unique(table.column("group").to_numpy())) > 1:
        group = table.column("group").to_numpy()
        a_idx, b_idx = np.flatnonzero(group % 2 == 0), np.flatnonzero(group % 2 == 1)
        how = "independent chains: even chains vs odd chains"
    else:
        half = len(pos) // 2
        a_idx, b_idx = np.arange(half), np.arange(half, len(pos))
        how = "one trajectory: first half vs second half (not fully independent)"
    a_idx = np.sort(rng.permutation(a_idx)[:max_frames])
    b_idx = np.sort(rng.permutation(b_idx)[:max_frames])
    return ReferenceSplit(pos[a_idx], pos[b_idx], how)


class Judge:
    """Computes every configured metric of a sample set against reference half A."""

    def __init__(self, cfg: ExperimentConfig, reference: np.ndarray, z: np.ndarray,
                 energy_fn: Optional[Callable[[np.ndarray], np.ndarray]]):
        self.ev, self.reference, self.energy_fn = cfg.evaluation, reference, energy_fn
        self.ref_energy = energy_fn(reference) if energy_fn is not None else None
        self.bonds = BondReference.from_frames(z, reference) if cfg.evaluation.stability else None

    def __call__(self, pos: np.ndarray, seed: int) -> dict:
        ev, ref = self.ev, self.reference
        out = {}
        out["distance_tvd"], out["distance_frac_outside"] = distance_tvd(pos, ref, ev.distance_bins)
        out["hr_mae"] = hr_mae(pos, ref, ev.distance_bins)
        if self.energy_fn is not None:
            e = self.energy_fn(pos)
            out["energy_tvd"], out["energy_frac_outside"] = energy_tvd(e, self.ref_energy, ev.energy_bins)
            finite = e[np.isfinite(e)]
            out["median_energy"] = float(np.median(finite)) if finite.size else float("nan")
        if ev.w2:
            out["w2"] = wasserstein2(pos, ref, max_points=ev.w2_samples, seed=seed)
        if self.bonds is not None:
            out["stable_fraction"] = stable_fraction(pos, self.bonds, ev.stability_tolerance)
        return out


def evaluate(cfg: ExperimentConfig, reference_path, train_path, samples: dict[int, np.ndarray],
             energy_fn: Optional[Callable[[np.ndarray], np.ndarray]], log: Callable[[str], None] = print,
             diverged: Optional[dict[int, float]] = None) -> Report:
    """Metrics per seed (mean ± std), noise floor, and the training set's own distance to the reference.

    ``diverged``: fraction of each seed's samples that the sampler lost to NaN/inf (reported as
    ``diverged_fraction``; those samples are not in ``samples``)."""
    ref_table, ref_manifest = read_dataset(reference_path, validate=False)
    split = split_reference(ref_table, cfg.evaluation.max_reference, cfg.data.seed)
    judge = Judge(cfg, split.a, np.asarray(ref_table.column("z")[0].as_py()), energy_fn)
    log(f"[evaluate] reference: {len(split.a)} frames (A) + {len(split.b)} (B); {split.how}")
    per_seed, floor = {}, {}
    n = min(len(s) for s in samples.values())
    for seed, pos in sorted(samples.items()):
        per_seed[seed] = judge(pos, seed)
        per_seed[seed]["diverged_fraction"] = float((diverged or {}).get(seed, 0.0))
        b = split.b[np.random.default_rng(seed).permutation(len(split.b))[:len(pos)]]
        floor[seed] = judge(b, seed)
        floor[seed]["diverged_fraction"] = 0.0
        log(f"[evaluate] seed {seed}: distance TVD {per_seed[seed]['distance_tvd']:.4f} "
            f"(floor {floor[seed]['distance_tvd']:.4f}), h(r) MAE {per_seed[seed]['hr_mae']:.4f}")
    train_table, _ = read_dataset(train_path, validate=False)
    train_pos = stacked_positions(train_table)
    train_metrics = judge(train_pos, 0)
    train_metrics["diverged_fraction"] = 0.0
    seeds = sorted(samples)
    report = Report(cfg.name, cfg.variant, "molecules", seeds, n_samples=n, n_reference=len(split.a),
                    n_noise_floor_set=min(len(split.b), n), n_train=len(train_pos),
                    reference=f"half A of the reference ({split.how})",
                    floor_meaning="the same metric for equally many frames of reference half B (two independent "
                                  "draws from the true distribution)",
                    context={"units": ref_manifest.units})
    energy_unit = ref_manifest.units.get("energy")
    for m in (m for m in METRIC_ORDER if m in per_seed[seeds[0]]):
        report.add(m, [per_seed[s][m] for s in seeds], [floor[s][m] for s in seeds], train_metrics[m],
                   unit=energy_unit if m == "median_energy" else ref_manifest.units.get("length") if m == "w2" else None)
    return report
