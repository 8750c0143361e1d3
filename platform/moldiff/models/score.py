"""The epsilon-prediction score model: ``model(batch, t) -> {"eps": [N, 3]}``.

score(x_t, t) = -eps / sigma_t. Inputs are rescaled to the data's scale at every noise level
(c_in = sigma_data / sqrt(alpha^2 sigma_data^2 + sigma^2), EDM-style) so one network handles
sigma from 0.01 to 8; the output is projected onto the zero centre-of-geometry subspace.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..diffusion.process import per_atom, remove_mean
from ..diffusion.schedules import NoiseSchedule


def input_scale(schedule: NoiseSchedule, sigma_data: torch.Tensor, t: torch.Tensor, enabled: bool = True):
    """c_in(t) = sigma_data / sqrt(alpha^2 sigma_data^2 + sigma^2): x_t at the data's scale at every noise level."""
    if not enabled:
        return torch.ones_like(t)
    alpha, sigma = schedule.alpha_sigma(t)
    sd = sigma_data.to(t.dtype)
    return sd / torch.sqrt(alpha ** 2 * sd ** 2 + sigma ** 2)


class EpsilonModel(nn.Module):
    def __init__(self, backbone: nn.Module, schedule: NoiseSchedule, sigma_data: float = 1.0,
                 input_scaling: bool = True):
        super().__init__()
        self.backbone = backbone
        self.schedule = schedule
        self.input_scaling = input_scaling
        self.register_buffer("sigma_data", torch.tensor(float(sigma_data)))

    def input_scale(self, t: torch.Tensor) -> torch.Tensor:
        return input_scale(self.schedule, self.sigma_data, t, self.input_scaling)

    def forward(self, graphs: GraphBatch, t: torch.Tensor) -> dict[str, torch.Tensor]:
        x = per_atom(self.input_scale(t), graphs.batch) * graphs.pos
        disp, _ = self.backbone(graphs.z, x, graphs.batch, graphs.n_atoms, t, graphs.fixed_size)
        return {"eps": remove_mean(disp, graphs.batch, graphs.n_atoms)}

    def score(self, graphs: GraphBatch, t: torch.Tensor) -> torch.Tensor:
        eps = self(graphs, t)["eps"]
        return -eps / per_atom(self.schedule.sigma(t), graphs.batch)
