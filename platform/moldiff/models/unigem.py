"""Molecule generators on QM9-like data, all on the branched EGNN, in three modes:

* ``unigem`` (Feng et al. 2025): coordinates-only diffusion; node inputs carry no atom types;
  an atom-type head and a property head read the last node features; molecules at diffusion step
  s <= nucleation_step take the growth branch, the others the nucleation branch.
* ``joint`` (EDM, the baseline): coordinates and scaled one-hot types diffused together; the noisy
  types are the node inputs and a linear head predicts their noise.
* ``predictor``: the property head on clean coordinates with the clean types as inputs, t = 0 (the
  "EGNN from scratch" baseline on the same backbone).

``model(graphs, t, features=None) -> {"eps", "type_out", "prop", "eps_types"}`` (those that exist).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..diffusion.process import remove_mean
from ..diffusion.schedules import PolynomialSchedule
from ..nn.branched_egnn import BranchedEGNN

QM9_ELEMENTS = (1, 6, 7, 8, 9)          # H C N O F: type index i is element QM9_ELEMENTS[i]
MODES = ("unigem", "joint", "predictor")


def type_index(z: torch.Tensor, elements=QM9_ELEMENTS, validate: bool = True) -> torch.Tensor:
    """Atomic numbers -> type indices; an element outside ``elements`` is an error (checked when
    ``validate``: the check waits for the device)."""
    lookup = torch.full((max(elements) + 1,), -1, dtype=torch.long, device=z.device)
    lookup[torch.tensor(elements, device=z.device)] = torch.arange(len(elements), device=z.device)
    idx = lookup[z.clamp(max=len(lookup) - 1)]
    if validate and bool(((idx < 0) | (z >= len(lookup))).any()):
        bad = sorted(set(z[(idx < 0) | (z >= len(lookup))].tolist()))
        raise ValueError(f"atomic numbers {bad} are not among the model's elements {elements}")
    return idx


def mlp(hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out))


class PropertyHead(nn.Module):
    """UniGEM's property head: an atom-wise MLP, summed over each molecule, then a molecule-wise MLP
    to one (normalised) value: invariant features [N, F] -> [B]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.node, self.graph = mlp(hidden, hidden), mlp(hidden, 1)

    def forward(self, h: torch.Tensor, graphs: GraphBatch) -> torch.Tensor:
        per_atom = self.node(h)
        pooled = torch.zeros(graphs.num_graphs, per_atom.shape[-1], dtype=h.dtype, device=h.device)
        return self.graph(pooled.index_add_(0, graphs.batch, per_atom)).squeeze(-1)


class MoleculeGenerator(nn.Module):
    # DDP: a batch that lies all on one side of the nucleation step leaves a branch (and the heads
    # of the other phase) without gradients
    ddp_kwargs = {"find_unused_parameters": True}

    def __init__(self, backbone: BranchedEGNN, schedule: PolynomialSchedule, mode: str = "unigem",
                 nucleation_step: int = 10, elements=QM9_ELEMENTS, type_scale: float = 0.25,
                 predict_types: bool = True, predict_property: bool = True):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.backbone, self.schedule, self.mode = backbone, schedule, mode
        self.nucleation_step, self.elements, self.type_scale = int(nucleation_step), tuple(elements), float(type_scale)
        hidden, n_types = backbone.hidden, len(self.elements)
        self.type_head = mlp(hidden, n_types) if mode == "unigem" and predict_types else None
        self.property_head = PropertyHead(hidden) if mode == "predictor" or (mode == "unigem" and predict_property) \
            else None
        self.type_noise_head = nn.Linear(hidden, n_types) if mode == "joint" else None

    @property
    def n_types(self) -> int:
        return len(self.elements)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the property head was a module of its own (prop_node, prop_graph)
        for old, new in (("prop_node.", "property_head.node."), ("prop_graph.", "property_head.graph.")):
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def growth(self, t: torch.Tensor) -> torch.Tensor:
        """[B] bool: molecules in the growth phase (step <= nucleation step) take the growth branch."""
        return self.schedule.step_index(t) <= self.nucleation_step

    def clean_type_features(self, graphs: GraphBatch) -> torch.Tensor:
        """Scaled one-hot types (EDM's normalisation 1/4): the joint model's x_0 and the predictor's input."""
        onehot = nn.functional.one_hot(type_index(graphs.z, self.elements), self.n_types).to(graphs.pos.dtype)
        return onehot * self.type_scale

    def forward(self, graphs: GraphBatch, t: torch.Tensor, features: Optional[torch.Tensor] = None) -> dict:
        if self.mode == "predictor" and features is None:
            features = self.clean_type_features(graphs)
        if self.mode == "joint" and features is None:
            raise ValueError("the joint model needs the noisy types as features")
        growth = self.growth(t) if self.backbone.growth is not None else None
        disp, h = self.backbone(features if self.mode != "unigem" else None, graphs.pos, graphs.batch,
                                graphs.n_atoms, t, growth)
        out = {"eps": remove_mean(disp, graphs.batch, graphs.n_atoms)}
        if self.type_head is not None:
            out["type_out"] = self.type_head(h)
        if self.type_noise_head is not None:
            out["eps_types"] = self.type_noise_head(h)
        if self.property_head is not None:
            out["prop"] = self.property_head(h, graphs)
        return out

    def decode_types(self, out: dict, features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Atomic numbers [N]: argmax of the type head (unigem) or of the denoised types (joint)."""
        scores = out["type_out"] if self.mode == "unigem" else features
        return torch.tensor(self.elements, device=scores.device)[scores.argmax(-1)]
