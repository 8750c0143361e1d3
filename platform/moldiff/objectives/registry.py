"""Config -> objective. A new objective is one module plus an entry here."""
from __future__ import annotations

from typing import Optional

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from .fokker_planck import FokkerPlanckDSM, FokkerPlanckSettings
from .score_matching import ForceWeight, ScoreMatching


def force_weight(cfg: ExperimentConfig) -> ForceWeight:
    o = cfg.objective
    if o.name == "dsm":
        return ForceWeight("dsm")
    p = o.psm
    return ForceWeight(p.weighting, p.t_p, p.sharpness, p.t_c, p.t_cut)


def fokker_planck_settings(cfg: ExperimentConfig) -> FokkerPlanckSettings:
    from ..models.registry import time_interval

    fp = cfg.objective.fokker_planck
    t_lo, t_hi = time_interval(cfg)
    if fp.alpha > 0 and t_hi < 1.0:
        # keep the finite-difference point t + h_ahead inside this expert's own interval
        t_hi -= 2 * fp.h_ahead
    if fp.midpoint is not None and not t_lo < fp.midpoint < t_hi:
        raise ValueError(f"objective.fokker_planck.midpoint {fp.midpoint} lies outside the trained time interval "
                         f"({t_lo:g}, {t_hi:g}); give each expert its own midpoint or null")
    return FokkerPlanckSettings(alpha=fp.alpha, probe_sigma=fp.probe_sigma, h_back=fp.h_back, h_ahead=fp.h_ahead,
                                t_lo=t_lo, t_hi=t_hi, midpoint=fp.midpoint)


def unigem_settings(cfg: ExperimentConfig):
    from .unigem import UniGEMSettings

    u = cfg.objective.unigem
    return UniGEMSettings(nucleation_step=u.nucleation_step, n_steps=cfg.diffusion.n_steps, oversample=u.oversample,
                          type_weight=u.type_weight, prop_weight=u.prop_weight, predictive_at=u.predictive_at,
                          type_loss=u.type_loss, prop_loss=u.prop_loss)


def build_objective(cfg: ExperimentConfig, dataset_kT: Optional[float] = None, normalizer=None):
    """``dataset_kT``: kT of the training set's manifest, used unless ``objective.psm.kT`` is set;
    ``normalizer``: the property normaliser of the training split (unigem with a property)."""
    name = cfg.objective.name
    if name == "force_field":
        from .force_matching import ForceMatching
        ff = cfg.objective.force_field
        return ForceMatching(ff.energy_weight, ff.force_weight)
    if name == "morered":
        from .morered import MoreRedObjective
        mr = cfg.objective.morered
        return MoreRedObjective(build_schedule(cfg.diffusion), mr.kind, mr.eta, mr.t_max)
    if name == "unigem":
        from .unigem import UniGEMObjective
        u = cfg.objective.unigem
        needs_property = u.mode == "predictor" or (u.mode == "unigem" and u.property is not None)
        if needs_property and u.property is None:
            raise ValueError("objective.unigem.mode predictor needs objective.unigem.property")
        return UniGEMObjective(build_schedule(cfg.diffusion), unigem_settings(cfg), u.mode,
                               normalizer if needs_property else None)
    if name in ("dsm", "psm"):
        kT = cfg.objective.psm.kT if cfg.objective.psm.kT is not None else dataset_kT
        return ScoreMatching(build_schedule(cfg.diffusion), force_weight(cfg), kT)
    if name == "fokker_planck":
        return FokkerPlanckDSM(build_schedule(cfg.diffusion), fokker_planck_settings(cfg))
    raise ValueError(f"unknown objective.name {name!r}")
