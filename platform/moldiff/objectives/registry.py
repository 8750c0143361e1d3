"""Config -> objective. A new objective is one module plus an entry here."""
from __future__ import annotations

from typing import Optional

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from .score_matching import ForceWeight, ScoreMatching


def force_weight(cfg: ExperimentConfig) -> ForceWeight:
    o = cfg.objective
    if o.name == "dsm":
        return ForceWeight("dsm")
    p = o.psm
    return ForceWeight(p.weighting, p.t_p, p.sharpness, p.t_c, p.t_cut)


def build_objective(cfg: ExperimentConfig, dataset_kT: Optional[float] = None):
    """``dataset_kT``: kT of the training set's manifest, used unless ``objective.psm.kT`` is set."""
    name = cfg.objective.name
    if name in ("dsm", "psm"):
        kT = cfg.objective.psm.kT if cfg.objective.psm.kT is not None else dataset_kT
        return ScoreMatching(build_schedule(cfg.diffusion), force_weight(cfg), kT)
    raise ValueError(f"unknown objective.name {name!r}")
