"""A graph transformer on the particles of a state vector (the Fokker-Planck paper's molecular
network, after Shi et al. 2021): every particle attends to every other, with an embedding of the
difference vector x_i - x_j added to keys and values.

    n_i^0 = [onehot(i), time features]  ->  L x (pre-norm attention + gated residual,
                                               pre-norm feed-forward + gated residual)
    energy model:  log p_t(x) = -sum_i psi(n_i^L)       score model: Dense(n * hidden -> n * 3)

Difference vectors make it translation invariant; rotation invariance is learned from random-rotation
augmentation (``training.augment_rotations``), as in the paper. Smooth activations (GELU, SiLU) so
that the Fokker-Planck term's second derivatives exist.
"""
from __future__ import annotations

import torch
from torch import nn

from .mlp import N_TIME_FEATURES, time_features


class GatedResidual(nn.Module):
    """x * g + r * (1 - g), g = sigmoid(W [x, r, x - r])."""

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(3 * dim, 1)

    def forward(self, x, r):
        g = torch.sigmoid(self.gate(torch.cat([x, r, x - r], -1)))
        return x * g + r * (1 - g)


class EdgeAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.edge = nn.Sequential(nn.Linear(3, dim), nn.SiLU(), nn.Linear(dim, inner))
        self.out = nn.Linear(inner, dim)

    def forward(self, h, diff):
        b, n, _ = h.shape
        split = lambda t: t.view(*t.shape[:-1], self.heads, self.head_dim)          # noqa: E731
        e = split(self.edge(diff))                                                   # [b, n, n, H, d]
        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))               # [b, n, H, d]
        keys, values = k.unsqueeze(1) + e, v.unsqueeze(1) + e                        # j-th key of i: k_j + e_ij
        logits = (q.unsqueeze(2) * keys).sum(-1) / self.head_dim ** 0.5              # [b, n, n, H]
        attn = torch.softmax(logits, dim=2)
        out = (attn.unsqueeze(-1) * values).sum(2)                                   # [b, n, H, d]
        return self.out(out.reshape(b, n, -1))


class GraphTransformer(nn.Module):
    """(x [B, 3n], t [B]) -> [B, out] (out = 1: energy; out = 3n: score)."""

    def __init__(self, n_particles: int, hidden: int, layers: int, heads: int = 8, head_dim: int = 64,
                 out: int = 1, t_mid: float = 0.5):
        super().__init__()
        self.n, self.t_mid, self.out_dim = n_particles, t_mid, out
        self.embed = nn.Linear(n_particles + N_TIME_FEATURES, hidden)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict({
                "norm1": nn.LayerNorm(hidden), "attn": EdgeAttention(hidden, heads, head_dim), "res1": GatedResidual(hidden),
                "norm2": nn.LayerNorm(hidden), "ff": nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                                                  nn.Linear(4 * hidden, hidden)),
                "res2": GatedResidual(hidden)}))
        self.head = nn.Linear(hidden, 1) if out == 1 else nn.Linear(n_particles * hidden, out)

    def forward(self, x, t):
        b = x.shape[0]
        pos = x.view(b, self.n, 3)
        diff = pos.unsqueeze(2) - pos.unsqueeze(1)                                   # x_i - x_j
        onehot = torch.eye(self.n, dtype=x.dtype, device=x.device).expand(b, -1, -1)
        tf = time_features(t.to(x.dtype), self.t_mid).unsqueeze(1).expand(-1, self.n, -1)
        h = self.embed(torch.cat([onehot, tf], -1))
        for blk in self.blocks:
            h = blk["res1"](h, blk["attn"](blk["norm1"](h), diff))
            h = blk["res2"](h, blk["ff"](blk["norm2"](h)))
        if self.out_dim == 1:
            return -self.head(h).sum(1)                                              # log p = -sum_i psi_i
        return self.head(h.reshape(b, -1))
