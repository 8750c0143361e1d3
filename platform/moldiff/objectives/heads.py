"""Prediction heads as named loss terms, computed on an objective's own noisy pass.

A diffusion objective noises a batch and runs the model once; a model may carry heads beside its
denoiser (UniGEM's atom-type and property heads, MoreRed's time head). Each head's loss is a named
term here, so objectives compose them instead of each writing its own:

    atom_types      UniGEM's atom-type head: |type_out - onehot / 4| (or cross-entropy), per molecule
    property        UniGEM's property head: |prop_hat - (c - mean) / MAD| (or squared)
    diffusion_time  MoreRed's time head: mean over atoms of (g_i(x) - time fraction)^2

``loss(head_pass)`` is per molecule ([B]) or, for a head fitted atom by atom, per atom ([N]:
MoreRed's time head, whose loss is the mean over every atom of the batch as in the authors' code);
:func:`head_losses` weights, masks (UniGEM: growth phase only) and averages them. The property head
can be added to other objectives' networks through ``objective.terms`` (see ``terms.TERMS``:
``property`` on a MoreRed network predicts the property of a molecule from its unrelaxed structure).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from ..data.batch import GraphBatch


def per_molecule_mean(values: torch.Tensor, graphs: GraphBatch) -> torch.Tensor:
    """[N, d] -> [B]: mean over each molecule's atoms and the d components."""
    total = torch.zeros(graphs.num_graphs, dtype=values.dtype, device=values.device)
    total.index_add_(0, graphs.batch, values.sum(-1))
    return total / (graphs.n_atoms.to(values.dtype) * values.shape[-1])


@dataclass
class HeadPass:
    """What a head's loss reads from the objective's pass: the clean batch (its labels), the model's
    outputs on the noisy batch, and where in the diffusion each molecule sat ([B], 0 clean, 1 noise)."""
    graphs: GraphBatch
    out: dict
    time_fraction: torch.Tensor
    model: nn.Module                 # the bare model (DDP unwrapped): element lists, type scale


class AtomTypesLoss:
    def __init__(self, kind: str = "l1"):
        if kind not in ("l1", "ce"):
            raise ValueError(f"atom-type loss must be l1 or ce, got {kind!r}")
        self.kind, self._elements_checked = kind, False

    def __call__(self, p: HeadPass) -> torch.Tensor:
        from ..models.unigem import type_index

        model, pred = p.model, p.out["type_out"]
        # the elements are checked on the first batch only: the check costs a host sync
        idx = type_index(p.graphs.z, model.elements, validate=not self._elements_checked)
        self._elements_checked = True
        if self.kind == "l1":
            target = nn.functional.one_hot(idx, model.n_types).to(pred.dtype) * model.type_scale
            return per_molecule_mean((pred - target).abs(), p.graphs)
        ce = nn.functional.cross_entropy(pred, idx, reduction="none")
        return per_molecule_mean(ce.unsqueeze(-1), p.graphs)


class PropertyLoss:
    def __init__(self, normalizer, kind: str = "l1"):
        if kind not in ("l1", "l2"):
            raise ValueError(f"property loss must be l1 or l2, got {kind!r}")
        self.normalizer, self.kind = normalizer, kind

    def __call__(self, p: HeadPass) -> torch.Tensor:
        if p.graphs.props is None or self.normalizer is None:
            raise ValueError("the property loss needs the batch's property column and its normaliser")
        err = p.out["prop"] - self.normalizer.normalize(p.graphs.props[:, 0])
        return err.abs() if self.kind == "l1" else err ** 2


class DiffusionTimeLoss:
    per_atom = True

    def __call__(self, p: HeadPass) -> torch.Tensor:
        time = p.out["time"]
        return (time - p.time_fraction[p.graphs.batch].to(time.dtype)) ** 2


@dataclass(frozen=True)
class HeadSpec:
    name: str
    output: str                          # the model output the head writes
    log: str                             # the name its loss is logged under
    summary: str


HEADS: dict[str, HeadSpec] = {h.name: h for h in (
    HeadSpec("atom_types", "type_out", "type", "UniGEM's atom-type head (types of a coordinates-only diffusion)"),
    HeadSpec("property", "prop", "prop", "UniGEM's property head (a molecular property from a noisy structure)"),
    HeadSpec("diffusion_time", "time", "time", "MoreRed's time head (how far a structure is diffused)"),
)}


@dataclass
class Head:
    """One head term of an objective: its name, weight and loss (per molecule, or per atom when the
    loss has ``per_atom``)."""
    name: str
    weight: float
    loss: Callable[[HeadPass], torch.Tensor]

    def __post_init__(self):
        if self.name not in HEADS:
            raise ValueError(f"unknown head {self.name!r}; heads: {', '.join(HEADS)}")

    @property
    def spec(self) -> HeadSpec:
        return HEADS[self.name]


def head_losses(heads: list[Head], p: HeadPass, mask: Optional[torch.Tensor] = None):
    """sum_h weight_h * mean(mask * loss_h) over the heads whose output the model wrote (None if
    none did), ``mask`` [B] per molecule (1: the head's loss counts), and the logs: each head's
    loss averaged over the molecules (atoms) its mask keeps."""
    from ..train.logs import masked_mean

    total, logs = None, {}
    for head in heads:
        if head.spec.output not in p.out:
            continue
        value = head.loss(p)
        keep = None if mask is None else mask.to(value.dtype)
        if keep is not None and getattr(head.loss, "per_atom", False):
            keep = keep[p.graphs.batch]
        term = head.weight * (value if keep is None else keep * value).mean()
        total = term if total is None else total + term
        logs[head.spec.log] = value.mean().detach() if keep is None else masked_mean(value, keep)
    return total, logs
