"""An E(3)-equivariant tensor-product network built with e3nn: our stand-in for the PSM paper's
Equiformer-V2 (NequIP-style interaction blocks, time-conditioned).

Each block: messages are tensor products of the source node's features with the spherical
harmonics (l <= lmax) of the edge vector, weighted per edge by an MLP of the edge length's radial
basis; messages are averaged over neighbours, passed through a gated nonlinearity (scalars: SiLU,
vectors: gated by sigmoid scalars), mixed by an equivariant linear map and added to the input
(residual). Node features are ``scalars x 0e + vectors x 1o``; the diffusion-time embedding is
added to the scalars before every block. The output is one ``1o`` vector per atom, so it rotates,
reflects and permutes with the input and ignores translations, like the EGNN's displacement.
"""
from __future__ import annotations

from typing import Optional

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from torch import nn

from .embedding import AtomEmbedding, SinusoidalTimeEmbedding
from .graph import molecule_edges


class InteractionBlock(nn.Module):
    def __init__(self, irreps_in: o3.Irreps, irreps_sh: o3.Irreps, scalars: int, vectors: int, n_radial: int):
        super().__init__()
        self.gate = Gate(f"{scalars}x0e", [nn.functional.silu], f"{vectors}x0e", [torch.sigmoid], f"{vectors}x1o")
        self.tp = o3.FullyConnectedTensorProduct(irreps_in, irreps_sh, self.gate.irreps_in,
                                                 shared_weights=False, internal_weights=False)
        self.radial = nn.Sequential(nn.Linear(n_radial, 32), nn.SiLU(), nn.Linear(32, self.tp.weight_numel))
        self.linear = o3.Linear(self.gate.irreps_out, irreps_in)

    def forward(self, x, edges, sh, radial, inv_degree):
        src, dst = edges
        messages = self.tp(x[src], sh, self.radial(radial))
        agg = torch.zeros(x.shape[0], messages.shape[1], dtype=x.dtype, device=x.device).index_add_(0, dst, messages)
        return x + self.linear(self.gate(agg * inv_degree))


class E3NN(nn.Module):
    def __init__(self, hidden: int = 32, layers: int = 3, time_dim: int = 32, max_z: int = 100, atom_identity: int = 0,
                 cutoff: Optional[float] = None, lmax: int = 2, radial_max: float = 6.0, n_radial: int = 16,
                 time_max_freq: float = 1000.0):
        super().__init__()
        self.scalars, self.vectors = hidden, max(2, hidden // 2)
        self.cutoff, self.lmax = cutoff, lmax
        self.radial_max = cutoff if cutoff is not None else radial_max
        self.n_radial = n_radial
        self.irreps_node = o3.Irreps(f"{self.scalars}x0e + {self.vectors}x1o")
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.atom_embedding = AtomEmbedding(max_z, self.scalars, atom_identity)
        self.time_embedding = SinusoidalTimeEmbedding(time_dim, time_max_freq)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.time_proj = nn.ModuleList(nn.Linear(hidden, self.scalars) for _ in range(layers))
        self.blocks = nn.ModuleList(InteractionBlock(self.irreps_node, self.irreps_sh, self.scalars, self.vectors,
                                                     n_radial + 1) for _ in range(layers))
        self.readout = o3.Linear(self.irreps_node, "1x1o")

    def forward(self, z, pos, batch, n_atoms, t, fixed_size: Optional[int] = None):
        """Returns (per-atom vector [N, 3], invariant node features [N, scalars])."""
        edges = molecule_edges(pos, n_atoms, self.cutoff, fixed_size)
        vec = pos[edges[1]] - pos[edges[0]]                   # source -> target
        length = vec.norm(dim=-1)
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        basis = soft_one_hot_linspace(length, 0.0, self.radial_max, self.n_radial, basis="smooth_finite", cutoff=True)
        radial = torch.cat([basis * self.n_radial ** 0.5, (1.0 / (1.0 + length)).unsqueeze(-1)], -1)
        degree = torch.zeros(pos.shape[0], 1, dtype=pos.dtype, device=pos.device)
        degree.index_add_(0, edges[1], torch.ones(edges.shape[1], 1, dtype=pos.dtype, device=pos.device))
        inv_degree = 1.0 / degree.clamp(min=1.0)
        temb = self.time_mlp(self.time_embedding(t))[batch]
        scalars = self.atom_embedding(z, n_atoms)
        x = torch.cat([scalars, pos.new_zeros(pos.shape[0], 3 * self.vectors)], -1)
        for proj, block in zip(self.time_proj, self.blocks):
            x = torch.cat([x[:, :self.scalars] + proj(temb), x[:, self.scalars:]], -1)
            x = block(x, edges, sh, radial, inv_degree)
        return self.readout(x), x[:, :self.scalars]
