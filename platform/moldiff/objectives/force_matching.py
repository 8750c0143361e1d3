"""Energy and force matching for a machine-learned force field:

    L = w_E mean_molecules ((E_hat - E) / n_atoms)^2 + w_F mean_atoms,components (F_hat - F)^2

with the energy error per atom (molecules of different sizes weigh alike) and forces from the
model's autograd gradient, trained through (create_graph). The default weights 0.01 / 0.99 are the
usual SchNetPack choice for relaxation force fields, which live on their forces.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..data.batch import GraphBatch


class ForceMatching:
    name = "force_matching"

    def __init__(self, energy_weight: float = 0.01, force_weight: float = 0.99):
        if energy_weight < 0 or force_weight < 0 or energy_weight + force_weight == 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got {energy_weight}, {force_weight}")
        self.energy_weight, self.force_weight = energy_weight, force_weight

    def __call__(self, model, graphs: GraphBatch, generator: Optional[torch.Generator] = None):
        if graphs.energy is None or graphs.forces is None:
            raise ValueError("force matching needs energy and forces labels in the dataset")
        core = model.module if hasattr(model, "module") else model
        energy, forces = core.energy_and_forces(graphs, create_graph=True)
        per_atom = (energy - graphs.energy.to(energy.dtype)) / graphs.n_atoms.to(energy.dtype)
        e_loss = (per_atom ** 2).mean()
        f_loss = ((forces - graphs.forces.to(forces.dtype)) ** 2).mean()
        loss = self.energy_weight * e_loss + self.force_weight * f_loss
        return loss, {"loss": loss.detach(), "energy_mse_per_atom": e_loss.detach(), "force_mse": f_loss.detach()}
