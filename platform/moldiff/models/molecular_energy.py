"""A conservative (energy) model of molecules: the molecular backbones' counterpart of
``models.energy.EnergyModel`` for state vectors.

    log p_t(x) = -sum_i u(h_i(c_in(t) x, t))       (unnormalised; u: an MLP on the backbone's
                                                   final invariant node features)
    score(x, t) = grad_x log p_t(x)                (autograd; conservative by construction)
    eps(x, t)   = -sigma_t score(x, t)             (what the epsilon-form objectives and samplers use)

The features of an E(n)-equivariant backbone are invariant under rotations, reflections,
translations and (without atom identities) permutations, so log p_t is too, and its gradient is
equivariant and free of centre-of-geometry components. Because the score is a gradient, the forces
kT * score(x, t_min) of a trained model are conservative (they derive from an energy), and the
Fokker-Planck residual of ``objectives.fokker_planck`` is defined for it (``as_state_model``: a
fixed-composition molecule seen as a flat state vector of 3n coordinates).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..diffusion.process import per_atom
from ..diffusion.schedules import NoiseSchedule
from .energy import value_and_gradient
from .score import input_scale


class MolecularEnergyModel(nn.Module):
    conservative = True

    def __init__(self, backbone: nn.Module, hidden: int, schedule: NoiseSchedule, sigma_data: float = 1.0,
                 input_scaling: bool = True):
        """``backbone(z, pos, batch, n_atoms, t, fixed_size) -> (displacement, features [N, hidden])``
        with features updated in its last layer (EGNN's ``features_out``)."""
        super().__init__()
        self.backbone, self.schedule, self.input_scaling = backbone, schedule, input_scaling
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))

    def input_scale(self, t: torch.Tensor) -> torch.Tensor:
        return input_scale(self.schedule, self.sigma_data, t, self.input_scaling)

    def log_density(self, graphs: GraphBatch, t: torch.Tensor) -> torch.Tensor:
        """log p_t [B] (up to a constant in x)."""
        x = per_atom(self.input_scale(t), graphs.batch) * graphs.pos
        _, h = self.backbone(graphs.z, x, graphs.batch, graphs.n_atoms, t, graphs.fixed_size)
        per_atom_energy = self.head(h).squeeze(-1)
        energy = torch.zeros(graphs.num_graphs, dtype=per_atom_energy.dtype, device=per_atom_energy.device)
        return -energy.index_add_(0, graphs.batch, per_atom_energy)

    def log_density_and_score(self, graphs: GraphBatch, t: torch.Tensor, create_graph: bool = False):
        """(log p_t [B], score [N, 3]). ``create_graph`` keeps the gradient's graph (training);
        works inside ``torch.no_grad()`` too (samplers)."""
        return value_and_gradient(lambda pos: self.log_density(graphs.with_pos(pos), t), graphs.pos, create_graph)

    def forward(self, graphs: GraphBatch, t: torch.Tensor) -> dict[str, torch.Tensor]:
        # the graph of the gradient is kept only where it is needed: when training (grad mode on)
        logp, score = self.log_density_and_score(graphs, t, create_graph=torch.is_grad_enabled())
        eps = -per_atom(self.schedule.sigma(t), graphs.batch) * score
        return {"eps": eps, "log_density": logp}

    def score(self, graphs: GraphBatch, t: torch.Tensor) -> torch.Tensor:
        return self.log_density_and_score(graphs, t)[1]

    def as_state_model(self, template: GraphBatch):
        """The molecules of ``template``'s (one) composition as flat 3n-vectors."""
        from .flat import FlatMolecules
        if template.fixed_size is None:
            raise ValueError("the Fokker-Planck term on molecules needs one composition per batch (fixed-size batches)")
        return FlatMolecules(self, template.z[:template.fixed_size])
