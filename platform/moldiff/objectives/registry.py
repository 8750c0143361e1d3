"""Config -> objective. Every objective is registered once here, as an :class:`ObjectiveSpec`: how
to build it, the workflow its runs use when that is not the data source's own, and the config
combinations it cannot train. A new objective is one module plus an entry in ``OBJECTIVES``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from .fokker_planck import FokkerPlanckDSM, FokkerPlanckSettings
from .score_matching import ForceWeight, ScoreMatching


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    # (cfg, dataset_kT, normalizer) -> objective(model, batch, generator) -> (loss, logs)
    build: Callable[[ExperimentConfig, Optional[float], object], Callable]
    workflow: Optional[str] = None         # None: the data source's own workflow
    checks: tuple[Callable[[ExperimentConfig], Optional[str]], ...] = field(default_factory=tuple)

    def problems(self, cfg: ExperimentConfig) -> list[str]:
        return [p for check in self.checks if (p := check(cfg))]


# ------------------------------------------------------------------------------------ settings


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


# ------------------------------------------------------------------------------------ builders


def _score_matching(cfg, dataset_kT, normalizer):
    kT = cfg.objective.psm.kT if cfg.objective.psm.kT is not None else dataset_kT
    return ScoreMatching(build_schedule(cfg.diffusion), force_weight(cfg), kT)


def _fokker_planck(cfg, dataset_kT, normalizer):
    return FokkerPlanckDSM(build_schedule(cfg.diffusion), fokker_planck_settings(cfg))


def _unigem(cfg, dataset_kT, normalizer):
    from .unigem import UniGEMObjective
    u = cfg.objective.unigem
    needs_property = u.mode == "predictor" or (u.mode == "unigem" and u.property is not None)
    if needs_property and u.property is None:
        raise ValueError("objective.unigem.mode predictor needs objective.unigem.property")
    return UniGEMObjective(build_schedule(cfg.diffusion), unigem_settings(cfg), u.mode,
                           normalizer if needs_property else None)


def _morered(cfg, dataset_kT, normalizer):
    from .morered import MoreRedObjective
    mr = cfg.objective.morered
    return MoreRedObjective(build_schedule(cfg.diffusion), mr.kind, mr.eta, mr.t_max)


def _force_field(cfg, dataset_kT, normalizer):
    from .force_matching import ForceMatching
    ff = cfg.objective.force_field
    return ForceMatching(ff.energy_weight, ff.force_weight)


# -------------------------------------------------------------------------------------- checks


def _needs_backbone(*backbones: str):
    def check(cfg):
        if cfg.model.backbone not in backbones:
            return (f"objective.name {cfg.objective.name} trains model.backbone {' or '.join(backbones)} "
                    f"(got '{cfg.model.backbone}')")
    return check


def _discrete_diffusion(cfg):
    if cfg.diffusion.process != "polynomial":
        return (f"objective {cfg.objective.name} samples with the discrete ancestral sampler: set "
                "diffusion.process: polynomial")


def _nucleation_below_T(cfg):
    u = cfg.objective.unigem
    if u.nucleation_step >= cfg.diffusion.n_steps:
        return f"objective.unigem.nucleation_step ({u.nucleation_step}) must be below diffusion.n_steps ({cfg.diffusion.n_steps})"


def _fp_term_needs_energy(cfg):
    # experts check their own members (each has its own alpha and conservative setting)
    if cfg.experts is None and cfg.objective.fokker_planck.alpha > 0 and not cfg.model.conservative:
        return "objective.fokker_planck.alpha > 0 needs model.conservative: true"


def _gfn2_labels(cfg):
    if cfg.data.source != "qm9" or cfg.data.qm9.gfn2_labels is None:
        return "objective.name force_field trains on data.qm9.gfn2_labels, which only it uses"


OBJECTIVES: dict[str, ObjectiveSpec] = {s.name: s for s in (
    ObjectiveSpec("dsm", _score_matching),
    ObjectiveSpec("psm", _score_matching),
    ObjectiveSpec("fokker_planck", _fokker_planck, checks=(_fp_term_needs_energy,)),
    ObjectiveSpec("unigem", _unigem, "generation", (_needs_backbone("branched_egnn"), _discrete_diffusion,
                                                    _nucleation_below_T)),
    ObjectiveSpec("morered", _morered, "relaxation", (_needs_backbone("painn"), _discrete_diffusion)),
    ObjectiveSpec("force_field", _force_field, "relaxation", (_needs_backbone("painn"), _gfn2_labels)),
)}


def objective_spec(name: str) -> ObjectiveSpec:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective.name {name!r}; objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(cfg: ExperimentConfig, dataset_kT: Optional[float] = None, normalizer=None):
    """``dataset_kT``: kT of the training set's manifest, used unless ``objective.psm.kT`` is set;
    ``normalizer``: the property normaliser of the training split (unigem with a property)."""
    return objective_spec(cfg.objective.name).build(cfg, dataset_kT, normalizer)
