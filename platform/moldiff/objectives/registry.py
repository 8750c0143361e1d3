"""Config -> objective. Every objective is registered once here, as an :class:`ObjectiveSpec`: how
to build it, the kind of data it trains on, the workflow its runs use when that is not the data
source's own, the config combinations it cannot train, what it needs from the training split
before training (``training_extras``, stored in the loop config and the checkpoint) and the name
results give it. A new objective is one module plus an entry in ``OBJECTIVES`` (or, from outside
the package, :func:`register_objective`); see docs/extending.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..config import ExperimentConfig
from ..diffusion.schedules import build_schedule
from ..models.registry import build_force_field, build_generator, build_morered
from .fokker_planck import FokkerPlanckDSM, FokkerPlanckSettings
from .score_matching import ForceWeight, ScoreMatching


def _no_extras(cfg, data) -> dict:
    return {}


def _nothing_to_prepare(model, extras: dict) -> None:
    return None


@dataclass(frozen=True)
class ObjectiveSpec:
    name: str
    # (cfg, dataset_kT, extras) -> objective(model, batch, generator) -> (loss, logs)
    build: Callable[[ExperimentConfig, Optional[float], dict], Callable]
    # the kinds of data it trains on (config.SOURCE_KINDS values: molecules of one composition,
    # states (flat state vectors), compositions (molecules of many compositions))
    trains_on: tuple[str, ...] = ("molecules",)
    workflow: Optional[str] = None         # None: the data source's own workflow
    checks: tuple[Callable[[ExperimentConfig], Optional[str]], ...] = field(default_factory=tuple)
    # driver side, before training: JSON-able values the objective needs from the training split;
    # they travel in the loop config and are saved in every checkpoint's meta.json
    training_extras: Callable[[ExperimentConfig, Any], dict] = _no_extras
    # worker side, after the model is built: put the extras into it (e.g. reference energies)
    prepare_model: Callable[[Any, dict], None] = _nothing_to_prepare
    # the name results use for this configuration of the objective (default: its name)
    variant: Optional[Callable[[Any], str]] = None
    # objectives registered outside the package: a pydantic model that validates objective.options
    settings: Optional[type] = None
    # (cfg, sigma_data) -> the model, for objectives with a model of their own; None: the data kind's
    # (models.registry.build_model: an epsilon / energy model on the configured backbone)
    build_model: Optional[Callable[[ExperimentConfig, float], Any]] = None
    # whether it evaluates head terms (objective.terms with TermSpec.head) on its own noisy pass
    takes_heads: bool = False

    def problems(self, cfg: ExperimentConfig) -> list[str]:
        from ..config import SOURCE_KINDS

        kind = SOURCE_KINDS[cfg.data.source]
        if kind not in self.trains_on:
            return [f"objective.name '{self.name}' does not fit data.source '{cfg.data.source}' ({self.name} trains "
                    f"on {' or '.join(self.trains_on)} data; this source is {kind})"]
        problems = []
        if self.settings is not None:
            from pydantic import ValidationError
            try:
                self.settings.model_validate(cfg.objective.options)
            except ValidationError as err:
                problems += [f"objective.options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        elif cfg.objective.options:
            problems.append(f"objective.options: {self.name} takes no options (its settings are objective.{self.name})")
        return problems + [p for check in self.checks if (p := check(cfg))]

    def options(self, cfg: ExperimentConfig):
        """``objective.options`` validated by ``settings`` (objectives registered outside the package)."""
        return self.settings.model_validate(cfg.objective.options) if self.settings is not None else None

    def properties(self, extras: dict) -> list[str]:
        """Per-molecule labels the objective regresses (collated into every batch)."""
        return list(extras.get("properties") or [])

    def variant_of(self, objective_cfg) -> str:
        return self.variant(objective_cfg) if self.variant is not None else self.name


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


def _score_matching(cfg, dataset_kT, extras):
    from ..models.registry import time_interval
    kT = cfg.objective.psm.kT if cfg.objective.psm.kT is not None else dataset_kT
    return ScoreMatching(build_schedule(cfg.diffusion), force_weight(cfg), kT, time_interval(cfg))


def _fokker_planck(cfg, dataset_kT, extras):
    return FokkerPlanckDSM(build_schedule(cfg.diffusion), fokker_planck_settings(cfg))


def _unigem(cfg, dataset_kT, extras):
    from ..data.normalization import PropertyNormalizer
    from .unigem import UniGEMObjective
    u = cfg.objective.unigem
    normalizer = extras.get("property_normalizer")
    normalizer = None if normalizer is None else PropertyNormalizer.from_dict(normalizer, "training extras")
    needs_property = u.mode == "predictor" or (u.mode == "unigem" and u.property is not None)
    if needs_property and u.property is None:
        raise ValueError("objective.unigem.mode predictor needs objective.unigem.property")
    return UniGEMObjective(build_schedule(cfg.diffusion), unigem_settings(cfg), u.mode,
                           normalizer if needs_property else None)


def _morered(cfg, dataset_kT, extras):
    from .morered import MoreRedObjective
    from .terms import head_terms
    mr = cfg.objective.morered
    return MoreRedObjective(build_schedule(cfg.diffusion), mr.kind, mr.eta, mr.t_max, heads=head_terms(cfg, extras),
                            clean_fraction=mr.clean_fraction)


def _force_field(cfg, dataset_kT, extras):
    from .force_matching import ForceMatching
    ff = cfg.objective.force_field
    return ForceMatching(ff.energy_weight, ff.force_weight)


# ------------------------------------------------------------------------- from the training split


def trained_property(cfg: ExperimentConfig) -> Optional[str]:
    """The property a model's property head regresses (UniGEM and the predictor; any objective with
    objective.terms property), or None."""
    from .terms import wants_head
    u = cfg.objective.unigem
    if cfg.objective.name == "unigem":
        return None if u.mode == "joint" else u.property
    return u.property if wants_head(cfg, "property") else None


def _property_extras(cfg, data) -> dict:
    """Mean and MAD of the trained property on the training split."""
    from ..data.normalization import PropertyNormalizer
    from ..data.records import PROPERTY_PREFIX, DatasetError
    from ..data.store import read_dataset

    name = trained_property(cfg)
    if name is None:
        return {}
    table, manifest = read_dataset(data.train, validate=False)
    column = PROPERTY_PREFIX + name
    if column not in table.column_names:
        raise DatasetError(f"{data.train}: no property '{name}' (column {column}); it has "
                           f"{sorted(manifest.properties)}")
    normalizer = PropertyNormalizer.from_values(name, manifest.properties.get(name, ""), table.column(column).to_numpy())
    return {"property_normalizer": normalizer.to_dict(), "properties": [name]}


def _force_field_extras(cfg, data) -> dict:
    """Per-element energies fitted to the training labels (the model learns the rest)."""
    from ..data.store import read_dataset
    from ..models.force_field import element_reference_energies
    table, _ = read_dataset(data.train, validate=False)
    return {"element_reference": element_reference_energies(
        table.column("z").to_pylist(), table.column("energy").to_numpy(), cfg.model.max_atomic_number).tolist()}


def _set_reference_energies(model, extras: dict) -> None:
    import torch
    if extras.get("element_reference") is not None:
        model.reference.copy_(torch.tensor(extras["element_reference"], dtype=torch.float64))


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


def _morered_variant(o) -> str:
    return f"morered_{o.morered.kind}" + ("_property" if "property" in o.terms else "")


OBJECTIVES: dict[str, ObjectiveSpec] = {s.name: s for s in (
    ObjectiveSpec("dsm", _score_matching, variant=lambda o: "dsm"),
    ObjectiveSpec("psm", _score_matching, variant=lambda o: o.psm.weighting),
    ObjectiveSpec("fokker_planck", _fokker_planck, ("states",), checks=(_fp_term_needs_energy,),
                  variant=lambda o: "fokker_planck" if o.fokker_planck.alpha > 0 else "diffusion"),
    ObjectiveSpec("unigem", _unigem, ("compositions",), "generation",
                  (_needs_backbone("branched_egnn"), _discrete_diffusion, _nucleation_below_T),
                  training_extras=_property_extras, variant=lambda o: o.unigem.mode, build_model=build_generator),
    ObjectiveSpec("morered", _morered, ("compositions",), "relaxation", (_needs_backbone("painn"), _discrete_diffusion),
                  training_extras=_property_extras, variant=_morered_variant, build_model=build_morered,
                  takes_heads=True),
    ObjectiveSpec("force_field", _force_field, ("compositions",), "relaxation", (_needs_backbone("painn"), _gfn2_labels),
                  training_extras=_force_field_extras, prepare_model=_set_reference_energies,
                  build_model=build_force_field),
)}


BUILTIN_OBJECTIVES = frozenset(OBJECTIVES)


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Add an objective from outside the package (a plug-in module, a test): its name becomes a
    valid ``objective.name``. Registering a name twice replaces the first."""
    OBJECTIVES[spec.name] = spec
    return spec


def objective_spec(name: str) -> ObjectiveSpec:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective.name {name!r}; objectives: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(cfg: ExperimentConfig, dataset_kT: Optional[float] = None, extras: Optional[dict] = None):
    """``dataset_kT``: kT of the training set's manifest, used unless ``objective.psm.kT`` is set;
    ``extras``: what the objective's ``training_extras`` took from the training split."""
    from .terms import with_terms
    return with_terms(cfg, objective_spec(cfg.objective.name).build(cfg, dataset_kT, extras or {}))
