"""E(n)-equivariant graph network (Satorras et al. 2021) with diffusion-time conditioning.

Invariant node features h and coordinates x are updated together:
    m_ij = phi_e(h_i, h_j, |x_i - x_j|^2)                     messages (invariant)
    x_i <- x_i + mean_j (x_i - x_j) / (|x_i - x_j| + 1) * r tanh(phi_x(m_ij) / r)   (equivariant)
    h_i <- h_i + phi_h(h_i, mean_j m_ij)
The time embedding is added to h before every layer. The coordinate update can be soft-clipped at
r = coord_range / layers (r tanh(w / r)). Off by default: on LJ-13 any bound we tried (EDM's
r tanh(phi_x), or the soft clip at r = 5 per layer) gave visibly worse samples, because pushing
apart one overlapping pair at small noise needs a large update from a single edge of a mean over
twelve. Unbounded, a rare sample can blow up at mid noise levels; the samplers keep such a
molecule from contaminating the rest of its batch and report it as diverged. The network returns the total coordinate
displacement, which is equivariant under rotations and reflections, invariant under translations,
and permutes with the atoms.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .embedding import AtomEmbedding, SinusoidalTimeEmbedding
from .graph import molecule_edges


class EGNNLayer(nn.Module):
    compile_unit = True            # moldiff.nn.compile: fused for sampling and relaxation

    def __init__(self, hidden: int, update_features: bool = True, coord_range: Optional[float] = 5.0):
        super().__init__()
        self.update_features = update_features
        self.coord_range = coord_range
        act = nn.SiLU()
        # phi_e's first linear map on [h_i, h_j, d_ij^2] is split into per-node projections that are
        # gathered onto edges: the same function, without a [E, 2h+1] x [2h+1, h] matmul per layer.
        self.edge_target = nn.Linear(hidden, hidden)
        self.edge_source = nn.Linear(hidden, hidden, bias=False)
        self.edge_dist = nn.Linear(1, hidden, bias=False)
        self.edge_mlp = nn.Sequential(act, nn.Linear(hidden, hidden), act)
        self.gate = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid())
        if update_features:
            self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), act, nn.Linear(hidden, hidden))
            self.norm = nn.LayerNorm(hidden)
        coord_out = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(coord_out.weight, gain=1e-3)   # start close to the identity map
        self.coord_mlp = nn.Sequential(nn.Linear(hidden, hidden), act, coord_out)

    def forward(self, h, x, edges, inv_degree):
        src, dst = edges
        diff = x[dst] - x[src]                                   # x_i - x_j for edge j -> i
        dist2 = (diff ** 2).sum(-1, keepdim=True)
        m = self.edge_mlp(self.edge_target(h)[dst] + self.edge_source(h)[src] + self.edge_dist(dist2))
        m = m * self.gate(m)
        direction = diff / (dist2.sqrt() + 1.0)
        weight = self.coord_mlp(m)
        if self.coord_range is not None:
            # soft clip: the identity for |w| << r (same learning dynamics as unbounded), at most r
            weight = self.coord_range * torch.tanh(weight / self.coord_range)
        dx = torch.zeros_like(x).index_add_(0, dst, direction * weight)
        x = x + dx * inv_degree
        if self.update_features:
            agg = torch.zeros_like(h).index_add_(0, dst, m) * inv_degree
            h = h + self.node_mlp(torch.cat([self.norm(h), agg], -1))
        return h, x


class EGNN(nn.Module):
    def __init__(self, hidden: int = 64, layers: int = 4, time_dim: int = 32, max_z: int = 100, atom_identity: int = 0,
                 cutoff: Optional[float] = None, features_out: bool = False, coord_range: Optional[float] = None,
                 time_max_freq: float = 1000.0):
        """``features_out``: also update h in the last layer (for heads that read node features);
        off by default so that every parameter reaches the output (DDP requires it).
        ``time_max_freq``: the highest frequency of the sinusoidal time features (a model whose
        d/dt is taken by finite differences, as in the Fokker-Planck term, needs it low)."""
        super().__init__()
        self.cutoff = cutoff
        self.atom_embedding = AtomEmbedding(max_z, hidden, atom_identity)
        self.time_embedding = SinusoidalTimeEmbedding(time_dim, time_max_freq)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.time_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.layers = nn.ModuleList(EGNNLayer(hidden, update_features=features_out or i < layers - 1,
                                              coord_range=None if coord_range is None else coord_range / layers)
                                    for i in range(layers))

    def forward(self, z, pos, batch, n_atoms, t, fixed_size: Optional[int] = None):
        """Returns (per-atom displacement [N, 3], final invariant features [N, hidden])."""
        edges = molecule_edges(pos, n_atoms, self.cutoff, fixed_size)
        degree = torch.zeros(pos.shape[0], 1, dtype=pos.dtype, device=pos.device)
        degree.index_add_(0, edges[1], torch.ones(edges.shape[1], 1, dtype=pos.dtype, device=pos.device))
        inv_degree = 1.0 / degree.clamp(min=1.0)
        temb = self.time_mlp(self.time_embedding(t))[batch]
        h = self.atom_embedding(z, n_atoms)
        x = pos
        for proj, layer in zip(self.time_proj, self.layers):
            h, x = layer(h + proj(temb), x, edges, inv_degree)
        return x - pos, h
