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
        arg = t.unsqueeze(-1).to(self.freqs.dtype) * self.freqs      # the model's precision (float64 models too)
        emb = torch.cat([torch.sin(arg), torch.cos(arg)], -1)
        if emb.shape[-1] < self.dim:
            emb = torch.cat([emb, t.unsqueeze(-1).to(emb.dtype)], -1)
        return emb


class AtomEmbedding(nn.Module):
    """Element embedding, plus (``identities`` > 0) an embedding of each atom's index within its
    molecule. The index makes the atoms of a single-molecule dataset (MD17) distinguishable: without
    it an equivariant network learns the distribution symmetrised over same-element atoms, and its
    samples carry random labels among them (hydrogens swapped between carbons), which is right for
    h(r) but breaks any per-atom criterion such as the bonded-distance stability. Breaking
    permutation equivariance is the point; rotations and translations are untouched."""

    def __init__(self, max_z: int, dim: int, identities: int = 0):
        super().__init__()
        self.element = nn.Embedding(max_z + 1, dim)
        self.identities = identities
        self.identity = nn.Embedding(identities, dim) if identities else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints from before the identity embedding hold the element table as "<prefix>weight"
        if prefix + "weight" in state_dict:
            state_dict[prefix + "element.weight"] = state_dict.pop(prefix + "weight")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z: torch.Tensor, n_atoms: torch.Tensor) -> torch.Tensor:
        h = self.element(z)
        if self.identity is None:
            return h
        if int(n_atoms.max()) > self.identities:
            raise ValueError(f"a molecule has {int(n_atoms.max())} atoms but model.atom_identity is "
                             f"{self.identities}: set it to at least the largest molecule's atom count")
        start = torch.cumsum(n_atoms, 0) - n_atoms
        index = torch.arange(z.shape[0], device=z.device) - torch.repeat_interleave(start.to(z.device), n_atoms.to(z.device))
        return h + self.identity(index)
