"""A time-conditioned MLP on flat state vectors (2-D systems such as Müller-Brown).

Input [x, t-features] with the features of the Fokker-Planck paper's code:
[t - t_mid, cos 2 pi t, sin 2 pi t, -cos 4 pi t], t_mid the centre of the model's time interval.
SiLU (swish) activations: smooth, so the second derivatives that the Fokker-Planck residual
takes of an energy model exist everywhere.
"""
from __future__ import annotations

import math

import torch
from torch import nn

N_TIME_FEATURES = 4


def time_features(t: torch.Tensor, t_mid: float = 0.5) -> torch.Tensor:
    two_pi_t = 2.0 * math.pi * t
    return torch.stack([t - t_mid, torch.cos(two_pi_t), torch.sin(two_pi_t), -torch.cos(2.0 * two_pi_t)], -1)


class TimeMLP(nn.Module):
    """[B, dim] x [B] -> [B, out]."""

    def __init__(self, dim: int, hidden: list[int], out: int, t_mid: float = 0.5):
        super().__init__()
        if not hidden:
            raise ValueError("TimeMLP needs at least one hidden layer")
        sizes = [dim + N_TIME_FEATURES, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], out))
        self.net = nn.Sequential(*layers)
        self.t_mid = float(t_mid)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, time_features(t.to(x.dtype), self.t_mid)], -1))
