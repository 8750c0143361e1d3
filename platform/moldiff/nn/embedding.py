"""Embeddings of diffusion time."""
from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """[sin(w_k t), cos(w_k t)] with w_k log-spaced in [1, max_freq]: resolves t ~ 1e-3 near 0."""

    def __init__(self, dim: int, max_freq: float = 1000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(max_freq), half)), persistent=False)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = t.unsqueeze(-1).float() * self.freqs
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], -1)
        if emb.shape[-1] < self.dim:
            emb = torch.cat([emb, t.unsqueeze(-1).float()], -1)
        return emb
