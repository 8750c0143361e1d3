"""Terms added to an objective's loss (``objective.terms``), each usable wherever the model and
the data supply what it needs, so objectives combine:

    loss = objective(model, batch) + sum_k weight_k * term_k(model, batch)

    fokker_planck   the weak Fokker-Planck residual of a conservative model (Plainer et al. 2025), on
                    molecules of one composition seen as flat 3n-vectors; weight
                    objective.fokker_planck.alpha, settings from objective.fokker_planck. It is what
                    the fokker_planck objective adds to DSM on state vectors, here added to DSM or
                    PSM on molecules (PSM + FP: force labels at small t *and* consistency).

A term is ``term(model, batch, generator) -> (value, logs)`` plus a :class:`TermSpec` in ``TERMS``
(its weight and the combinations it cannot work with). Each term draws its own diffusion times and
noise, so it is an unbiased estimate of its own expectation whatever the objective does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from ..diffusion.process import noise_batch


class FokkerPlanckTerm:
    """E_t,x_t [ w(t) R~(x_t, t; v) R~(x_t, t; v') ] / D^2 for a conservative molecular model, D
    the 3(n - 1) degrees of freedom of a centred molecule of n atoms."""

    def __init__(self, schedule, settings):
        self.schedule, self.settings = schedule, settings

    def __call__(self, model, graphs, generator: Optional[torch.Generator] = None):
        from .fokker_planck import time_weight, weak_residuals

        if not getattr(model, "conservative", False) or not hasattr(model, "as_state_model"):
            raise ValueError("objective.terms fokker_planck needs a conservative molecular model "
                             "(model.energy_head: true)")
        s = self.settings
        batch, device, dtype = graphs.num_graphs, graphs.pos.device, graphs.pos.dtype
        t = s.t_lo + (s.t_hi - s.t_lo) * torch.rand(batch, generator=generator, dtype=dtype, device=device)
        xt, _, _ = noise_batch(self.schedule, graphs, t, generator)
        flat = model.as_state_model(graphs)
        x = xt.reshape(batch, -1)
        dim = 3 * (flat.n_atoms - 1)          # a centred molecule has no centre-of-geometry freedom
        probes = s.probe_sigma * torch.randn((2,) + x.shape, generator=generator, dtype=dtype, device=device)
        r1, r2 = weak_residuals(flat, self.schedule, x, t, probes, s, dim=dim)
        fp = (time_weight(t, s) * r1 * r2).mean() / dim ** 2
        return fp, {"fp": fp.detach()}


@dataclass(frozen=True)
class TermSpec:
    name: str
    build: Callable[..., Callable]                      # cfg -> term; head terms: (cfg, extras) -> Head
    weight: Callable[..., float]                        # cfg -> its weight in the loss
    checks: tuple[Callable[..., Optional[str]], ...] = field(default_factory=tuple)
    head: bool = False                                  # evaluated on the objective's own pass

    def problems(self, cfg) -> list[str]:
        return [p for check in self.checks if (p := check(cfg))]


def _fokker_planck_term(cfg):
    from ..diffusion.schedules import build_schedule
    from .registry import fokker_planck_settings
    return FokkerPlanckTerm(build_schedule(cfg.diffusion), fokker_planck_settings(cfg))


def _needs_energy_head(cfg):
    if not cfg.model.energy_head:
        return "objective.terms fokker_planck needs a conservative model: set model.energy_head: true"


def _not_twice(cfg):
    if cfg.objective.name == "fokker_planck":
        return "objective.name fokker_planck has the Fokker-Planck term built in; leave it out of objective.terms"


def _one_composition(cfg):
    from ..config import SOURCE_KINDS
    if SOURCE_KINDS[cfg.data.source] != "molecules":
        return (f"objective.terms fokker_planck works on molecules of one composition (flat 3n-vectors); "
                f"data.source '{cfg.data.source}' is not")


def _smooth_in_time(cfg):
    # the residual's d/dt is a three-point difference with steps h: time features sin(w t) with
    # w h near 1 make it wrong by O((w h)^2) (a bias, not noise)
    fp = cfg.objective.fokker_planck
    worst = cfg.model.time_max_freq * max(fp.h_back, fp.h_ahead)
    if worst > 0.05:
        return (f"objective.terms fokker_planck takes d/dt by finite differences (h {max(fp.h_back, fp.h_ahead):g}); "
                f"model.time_max_freq {cfg.model.time_max_freq:g} makes that biased: set it to at most "
                f"{0.05 / max(fp.h_back, fp.h_ahead):g}")


def _property_head(cfg, extras):
    from ..data.normalization import PropertyNormalizer
    from .heads import Head, PropertyLoss
    u = cfg.objective.unigem
    normalizer = PropertyNormalizer.from_dict(extras["property_normalizer"], "training extras")
    return Head("property", u.prop_weight, PropertyLoss(normalizer, u.prop_loss))


def _objective_takes_heads(cfg):
    from .registry import OBJECTIVES
    spec = OBJECTIVES.get(cfg.objective.name)
    if cfg.objective.name == "unigem":
        return "objective unigem has the property head built in: set objective.unigem.property instead of objective.terms"
    if spec is not None and not spec.takes_heads:
        takers = [s.name for s in OBJECTIVES.values() if s.takes_heads]
        return (f"objective.terms property is a head on the objective's own noisy pass; objective "
                f"{cfg.objective.name} takes none (objectives that do: {', '.join(takers)})")


def _has_property_labels(cfg):
    if cfg.data.source != "qm9":
        return f"objective.terms property needs per-molecule property labels (data.source qm9), got '{cfg.data.source}'"
    if cfg.objective.unigem.property is None:
        return "objective.terms property: name the property in objective.unigem.property (e.g. lumo)"


TERMS: dict[str, TermSpec] = {t.name: t for t in (
    TermSpec("fokker_planck", _fokker_planck_term, lambda cfg: cfg.objective.fokker_planck.alpha,
             (_needs_energy_head, _not_twice, _one_composition, _smooth_in_time)),
    TermSpec("property", _property_head, lambda cfg: cfg.objective.unigem.prop_weight,
             (_objective_takes_heads, _has_property_labels), head=True),
)}


class CombinedObjective:
    """The objective's loss plus weighted terms; each term's value is logged under its own name."""

    def __init__(self, objective, terms: list[tuple[str, float, Callable]]):
        self.objective, self.terms = objective, terms

    def __call__(self, model, batch, generator: Optional[torch.Generator] = None):
        loss, logs = self.objective(model, batch, generator)
        logs = dict(logs)
        logs["objective_loss"] = loss.detach()
        for name, weight, term in self.terms:
            value, term_logs = term(model, batch, generator)
            loss = loss + weight * value
            logs.update(term_logs)
        logs["loss"] = loss.detach()
        return loss, logs


def with_terms(cfg, objective):
    """``objective`` with the terms ``objective.terms`` names (itself when there are none); head
    terms are the objective's own business (:func:`head_terms`)."""
    names = [n for n in cfg.objective.terms if not TERMS[n].head]
    if not names:
        return objective
    return CombinedObjective(objective, [(n, TERMS[n].weight(cfg), TERMS[n].build(cfg)) for n in names])


def head_terms(cfg, extras: dict) -> list:
    """The ``objectives.heads.Head`` of every head term ``objective.terms`` names."""
    return [TERMS[n].build(cfg, extras) for n in cfg.objective.terms if TERMS[n].head]


def wants_head(cfg, name: str) -> bool:
    """Whether the config adds the head term ``name`` (model builders give the network the head)."""
    return name in cfg.objective.terms and TERMS[name].head


def term_problems(cfg) -> list[str]:
    problems = []
    for name in cfg.objective.terms:
        if name not in TERMS:
            problems.append(f"objective.terms: unknown term {name!r}; terms: {', '.join(TERMS)}")
        else:
            problems += TERMS[name].problems(cfg)
    if len(set(cfg.objective.terms)) != len(cfg.objective.terms):
        problems.append(f"objective.terms {cfg.objective.terms} names a term twice")
    return problems
