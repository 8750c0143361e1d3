"""PaiNN: polarizable atom interaction neural network (Schütt, Unke & Gastegger, ICML 2021).

Each atom i carries invariant scalar features s_i [F] and equivariant vector features v_i [3, F]
(v starts at zero). Edges j -> i join atoms of one molecule closer than the cutoff r_c; with
r_ij = x_j - x_i (source minus target), d_ij = |r_ij| and the unit vector u_ij = r_ij / d_ij, each of
the interaction blocks applies a message and an update step, both residual:

    message:  (ds, dvv, dvs)_ij = phi(s_j) * W(d_ij)          phi: Linear F->F, SiLU, Linear F->3F
                                                                W: Linear n_rbf->3F of rbf(d_ij), times f_c(d_ij)
              s_i += sum_j ds_ij
              v_i += sum_j [ v_j * dvv_ij + u_ij (x) dvs_ij ]  (outer product: [3] x [F] -> [3, F])
    update:   (a_vv, a_sv, a_ss) = MLP([s_i, |V v_i|])        Linear 2F->F, SiLU, Linear F->3F
              v_i += a_vv * (U v_i)
              s_i += a_sv * <U v_i, V v_i> + a_ss             (<.,.>, |.|: over the spatial axis)

U and V are bias-free linear maps on the feature axis, so they commute with rotations; |V v| is taken
as sqrt(sum (V v)^2 + eps) so that its gradient stays finite at v = 0 (the first block's update).

Radial basis: n_rbf Gaussians exp(-(d - mu_k)^2 / (2 sigma^2)), centres mu_k evenly spaced on
[0, r_c], width sigma = the spacing (as in MoreRed's PaiNN), times the cosine cutoff
f_c(d) = 0.5 (cos(pi d / r_c) + 1) for d < r_c, else 0, so messages fade smoothly to zero at r_c.

Symmetry: s is invariant under rotations, reflections, translations and permutations within a
molecule; v (and ``vector_output``) is built from the u_ij, which are polar vectors, so it rotates
with any orthogonal R, the reflections included (v -> v R^T row-wise, no det(R) sign), and is
translation invariant. Optional per-atom diffusion time t_atom [N] (``time_features`` > 0) is
embedded (sinusoidal, then Linear to F) and added to s before the first block.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .embedding import SinusoidalTimeEmbedding
from .graph import molecule_edges


class GaussianRBF(nn.Module):
    """n Gaussians with centres evenly spaced on [0, cutoff] and width equal to their spacing."""

    def __init__(self, n_rbf: int, cutoff: float):
        super().__init__()
        centers = torch.linspace(0.0, cutoff, n_rbf)
        width = float(centers[1] - centers[0]) if n_rbf > 1 else cutoff
        self.register_buffer("centers", centers, persistent=False)
        self.coeff = -0.5 / width ** 2

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.coeff * (d.unsqueeze(-1) - self.centers) ** 2)


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 (cos(pi d / r_c) + 1) inside the cutoff, 0 outside."""
    return torch.where(d < cutoff, 0.5 * (torch.cos(math.pi * d / cutoff) + 1.0), torch.zeros_like(d))


class PaiNNMessage(nn.Module):
    compile_unit = True            # moldiff.nn.compile: fused for sampling and relaxation

    def __init__(self, hidden: int, n_rbf: int):
        super().__init__()
        self.hidden = hidden
        self.phi = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.filter = nn.Linear(n_rbf, 3 * hidden)

    def forward(self, s, v, edges, rbf, fcut, unit):
        src, dst = edges
        # the filter inside the block: compiled, its cutoff product fuses with the message's
        x = self.phi(s)[src] * self.filter(rbf) * fcut.unsqueeze(-1)          # [E, 3F]
        ds, dvv, dvs = torch.split(x, self.hidden, dim=-1)
        dv = v[src] * dvv.unsqueeze(1) + unit.unsqueeze(-1) * dvs.unsqueeze(1)  # [E, 3, F]
        s = s + torch.zeros_like(s).index_add_(0, dst, ds)
        v = v + torch.zeros_like(v).index_add_(0, dst, dv)
        return s, v


class PaiNNUpdate(nn.Module):
    compile_unit = True

    def __init__(self, hidden: int, eps: float = 1e-8):
        super().__init__()
        self.hidden = hidden
        self.eps = eps
        self.U = nn.Linear(hidden, hidden, bias=False)
        self.V = nn.Linear(hidden, hidden, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))

    def forward(self, s, v):
        uv, vv = self.U(v), self.V(v)                                          # [N, 3, F]
        vv_norm = torch.sqrt((vv ** 2).sum(1) + self.eps)                      # [N, F]
        a_vv, a_sv, a_ss = torch.split(self.mlp(torch.cat([s, vv_norm], -1)), self.hidden, dim=-1)
        v = v + a_vv.unsqueeze(1) * uv
        s = s + a_sv * (uv * vv).sum(1) + a_ss
        return s, v


class PaiNN(nn.Module):
    """PaiNN backbone: ``forward(z, pos, batch, n_atoms, t_atom=None) -> (s [N, F], v [N, 3, F])``;
    ``vector_output(v) -> [N, 3]`` (needs ``vector_out=True``) is a bias-free Linear(F -> 1) over the
    feature axis of v: an equivariant per-atom vector such as predicted noise."""

    def __init__(self, hidden: int = 128, layers: int = 3, n_rbf: int = 20, cutoff: float = 5.0,
                 max_z: int = 100, time_features: int = 0, vector_out: bool = True):
        super().__init__()
        if cutoff is None or cutoff <= 0:
            raise ValueError("PaiNN needs a positive cutoff (radial basis and cosine cutoff live on [0, cutoff])")
        self.hidden = hidden
        self.cutoff = float(cutoff)
        self.time_features = time_features
        self.embedding = nn.Embedding(max_z + 1, hidden)
        if time_features > 0:
            self.time_embedding = SinusoidalTimeEmbedding(time_features)
            self.time_proj = nn.Linear(time_features, hidden)
        else:
            self.time_embedding = None
            self.time_proj = None
        self.rbf = GaussianRBF(n_rbf, self.cutoff)
        self.messages = nn.ModuleList(PaiNNMessage(hidden, n_rbf) for _ in range(layers))
        self.updates = nn.ModuleList(PaiNNUpdate(hidden) for _ in range(layers))
        self.vector_head = nn.Linear(hidden, 1, bias=False) if vector_out else None

    def forward(self, z: torch.Tensor, pos: torch.Tensor, batch: torch.Tensor, n_atoms: torch.Tensor,
                t_atom: Optional[torch.Tensor] = None, *, fixed_size: Optional[int] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """z [N] atomic numbers, pos [N, 3], batch [N] molecule index (atoms sorted by molecule; the
        graph itself is built from ``n_atoms`` [B]), t_atom [N] per-atom time (used only when
        ``time_features`` > 0, then required). ``fixed_size``: all molecules have that many atoms
        (reuses a cached edge template, see ``molecule_edges``)."""
        s = self.embedding(z)
        if self.time_proj is not None:
            if t_atom is None:
                raise ValueError("this PaiNN was built with time_features > 0: pass t_atom [N]")
            s = s + self.time_proj(self.time_embedding(t_atom).to(s.dtype))
        v = s.new_zeros(s.shape[0], 3, self.hidden)

        edges = molecule_edges(pos, n_atoms, self.cutoff, fixed_size)
        r = pos[edges[0]] - pos[edges[1]]                                      # x_j - x_i for edge j -> i
        # clamp before the sqrt: finite gradients even for coincident atoms
        d = torch.sqrt((r ** 2).sum(-1).clamp_min(1e-12))
        unit = r / d.unsqueeze(-1)
        rbf, fcut = self.rbf(d), cosine_cutoff(d, self.cutoff)
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, edges, rbf, fcut, unit)
            s, v = update(s, v)
        return s, v

    def vector_output(self, v: torch.Tensor) -> torch.Tensor:
        """[N, 3, F] -> [N, 3]: bias-free linear combination of the vector features."""
        if self.vector_head is None:
            raise RuntimeError("this PaiNN was built with vector_out=False")
        return self.vector_head(v).squeeze(-1)
