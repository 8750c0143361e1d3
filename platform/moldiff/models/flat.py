"""Molecules of one composition seen as flat states x [B, 3n], the interface of the state-vector
models (``models.energy``): what Langevin simulation with learned forces and the Fokker-Planck
residual work on. ``score`` works for any epsilon-form molecular model (score = -eps / sigma_t);
``log_density`` only for a conservative one (``models.molecular_energy``)."""
from __future__ import annotations

import numpy as np
import torch

from ..data.batch import GraphBatch
from .energy import value_and_gradient


class FlatMolecules:
    def __init__(self, model, z):
        self.model = model
        self.z = torch.as_tensor(np.asarray(z) if not torch.is_tensor(z) else z, dtype=torch.long)
        self.n_atoms = int(self.z.shape[0])
        self.conservative = bool(getattr(model, "conservative", False))

    def parameters(self):
        return self.model.parameters()

    def graphs(self, x: torch.Tensor) -> GraphBatch:
        """M molecules at positions x [M, 3n] (on x's device)."""
        n, m, device = self.n_atoms, x.shape[0], x.device
        return GraphBatch(z=self.z.to(device).repeat(m), pos=x.reshape(m * n, 3),
                          batch=torch.arange(m, device=device).repeat_interleave(n),
                          n_atoms=torch.full((m,), n, dtype=torch.long, device=device), fixed_size=n)

    def log_density(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.conservative:
            raise ValueError("log_density needs a conservative model (model.energy_head: true)")
        return self.model.log_density(self.graphs(x), t)

    def log_density_and_score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False):
        return value_and_gradient(lambda y: self.log_density(y, t), x, create_graph)

    def score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        if self.conservative:
            return self.log_density_and_score(x, t, create_graph)[1]
        eps = self.model(self.graphs(x), t)["eps"]
        sigma = self.model.schedule.sigma(t).to(eps.dtype)
        return -(eps.reshape(x.shape[0], -1) / sigma[:, None])
