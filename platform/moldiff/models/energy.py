"""Models on flat state vectors x [B, D] for the Fokker-Planck objective and Langevin simulation.

* ``EnergyModel`` (conservative): the network's scalar output is log p_t(x) (unnormalised); the
  score is its gradient by autograd, so the forces kT * score used in simulation are conservative.
* ``ScoreModel`` (not conservative): the network outputs the score directly (cheaper; fine for
  the large-t experts of a mixture, which never drive a simulation).

Both expose ``score(x, t, create_graph)``; only ``EnergyModel`` has ``log_density``.
"""
from __future__ import annotations

import torch
from torch import nn


def value_and_gradient(log_density, x: torch.Tensor, create_graph: bool = False):
    """(log_density(x) [B], its gradient in x), also inside ``torch.no_grad()`` (samplers);
    ``create_graph`` keeps the gradient's graph for a loss on it (training)."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        logp = log_density(x)
        (grad,) = torch.autograd.grad(logp.sum(), x, create_graph=create_graph)
    return logp, grad


class EnergyModel(nn.Module):
    conservative = True

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net                      # (x [B, D], t [B]) -> [B, 1]

    def log_density(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).squeeze(-1)

    def log_density_and_score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False):
        """(log p_t(x) [B], grad_x log p_t(x) [B, D]). ``create_graph`` keeps the graph of the
        gradient so a loss on the score can be back-propagated (training)."""
        return value_and_gradient(lambda y: self.log_density(y, t), x, create_graph)

    def score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return self.log_density_and_score(x, t, create_graph)[1]


class ScoreModel(nn.Module):
    conservative = False

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net                      # (x [B, D], t [B]) -> [B, D]

    def score(self, x: torch.Tensor, t: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        return self.net(x, t)
