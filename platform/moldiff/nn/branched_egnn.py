"""An EGNN whose deep layers split into two branches chosen per molecule (UniGEM's multi-branch
network): ``shared`` layers run on every molecule, then each molecule continues through either the
nucleation branch (large t) or the growth branch (small t), ``branch_layers`` each. With
``two_branches=False`` it is a plain EGNN of shared + branch layers (the single-branch ablation).

Node inputs are whatever features the caller gives (UniGEM: none, so a learned constant; EDM joint
diffusion: the noisy one-hot types; a property predictor: the clean one-hot types); diffusion time
is added to the node features before every layer. Returns the equivariant displacement and the
final invariant node features that the heads read.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .egnn import EGNNLayer
from .embedding import SinusoidalTimeEmbedding
from .graph import molecule_edges


class LayerStack(nn.Module):
    def __init__(self, hidden: int, layers: int):
        super().__init__()
        self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.layers = nn.ModuleList(EGNNLayer(hidden, update_features=True, coord_range=None) for _ in range(layers))

    def forward(self, h, x, temb, n_atoms, cutoff):
        if len(self.layers) == 0:
            return h, x
        edges = molecule_edges(x, n_atoms, cutoff)
        degree = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
        degree.index_add_(0, edges[1], torch.ones(edges.shape[1], 1, dtype=x.dtype, device=x.device))
        inv_degree = 1.0 / degree.clamp(min=1.0)
        for proj, layer in zip(self.time_proj, self.layers):
            h, x = layer(h + proj(temb), x, edges, inv_degree)
        return h, x


class BranchedEGNN(nn.Module):
    def __init__(self, hidden: int = 64, shared_layers: int = 1, branch_layers: int = 3, node_features: int = 0,
                 time_dim: int = 32, two_branches: bool = True, cutoff: Optional[float] = None):
        super().__init__()
        self.hidden, self.cutoff, self.two_branches = hidden, cutoff, two_branches
        self.node_in = nn.Linear(node_features, hidden) if node_features else None
        self.node_const = nn.Parameter(torch.randn(hidden) * 0.1) if not node_features else None
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.shared = LayerStack(hidden, shared_layers)
        self.nucleation = LayerStack(hidden, branch_layers)
        self.growth = LayerStack(hidden, branch_layers) if two_branches else None

    def forward(self, features: Optional[torch.Tensor], pos: torch.Tensor, batch: torch.Tensor,
                n_atoms: torch.Tensor, t: torch.Tensor, growth: Optional[torch.Tensor] = None):
        """``features`` [N, F] or None; ``t`` [B]; ``growth`` [B] bool: molecules for the growth
        branch (ignored with one branch). Returns (displacement [N, 3], node features [N, hidden])."""
        if self.node_in is not None:
            h = self.node_in(features)
        else:
            h = self.node_const.expand(pos.shape[0], -1)
        temb = self.time_mlp(self.time_embedding(t))[batch]
        h, x = self.shared(h, pos, temb, n_atoms, self.cutoff)
        if self.growth is None:
            h, x = self.nucleation(h, x, temb, n_atoms, self.cutoff)
            return x - pos, h
        if growth is None:
            raise ValueError("a two-branch network needs growth [B]: which molecules take the growth branch")
        if bool(growth.all()) or not bool(growth.any()):     # sampling: the whole batch shares one t
            stack = self.growth if bool(growth.all()) else self.nucleation
            h, x = stack(h, x, temb, n_atoms, self.cutoff)
            return x - pos, h
        # a mixed batch (training): each branch runs on its own molecules only
        atom_growth = growth[batch]
        h_out, x_out = torch.empty_like(h), torch.empty_like(x)
        for stack, mol_mask, atom_mask in ((self.growth, growth, atom_growth), (self.nucleation, ~growth, ~atom_growth)):
            h_out[atom_mask], x_out[atom_mask] = stack(h[atom_mask], x[atom_mask], temb[atom_mask],
                                                       n_atoms[mol_mask], self.cutoff)
        return x_out - pos, h_out
