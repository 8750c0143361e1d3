"""Molecular graphs in plain torch (PyG 2.8's radius_graph needs pyg-lib, which PyPI lacks).

Edges are directed pairs (source j, target i), i != j, within one molecule: the PyG convention
``edge_index[0] = source``, ``edge_index[1] = target``. Construction costs sum_m n_m^2, not (sum_m n_m)^2.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch


def fully_connected_edges(n_atoms: torch.Tensor) -> torch.Tensor:
    """All ordered pairs i != j inside each molecule; ``n_atoms`` [B] -> edge_index [2, E]."""
    n_atoms = n_atoms.long()
    device = n_atoms.device
    offsets = torch.cat([n_atoms.new_zeros(1), n_atoms.cumsum(0)[:-1]])
    squares = n_atoms * n_atoms
    mol = torch.repeat_interleave(torch.arange(len(n_atoms), device=device), squares)
    k = torch.arange(int(squares.sum()), device=device) - torch.cat([squares.new_zeros(1), squares.cumsum(0)[:-1]])[mol]
    n = n_atoms[mol]
    target, source = k // n, k % n
    keep = target != source
    base = offsets[mol]
    return torch.stack([(base + source)[keep], (base + target)[keep]])


@lru_cache(maxsize=16)
def _fixed_template(n: int, n_graphs: int, device: str) -> torch.Tensor:
    return fully_connected_edges(torch.full((n_graphs,), n, dtype=torch.long, device=device))


def molecule_edges(pos: torch.Tensor, n_atoms: torch.Tensor, cutoff: Optional[float] = None,
                   fixed_size: Optional[int] = None) -> torch.Tensor:
    """Fully connected edges, optionally kept only within ``cutoff`` (a radius graph)."""
    if fixed_size is not None:
        edges = _fixed_template(int(fixed_size), int(n_atoms.shape[0]), str(pos.device))
    else:
        edges = fully_connected_edges(n_atoms.to(pos.device))
    if cutoff is not None:
        dist = (pos[edges[0]] - pos[edges[1]]).norm(dim=-1)
        edges = edges[:, dist <= cutoff]
    return edges


def radius_graph(pos: torch.Tensor, cutoff: float, batch: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PyG-compatible signature: edges between atoms of the same molecule closer than ``cutoff``."""
    if batch is None:
        batch = pos.new_zeros(pos.shape[0], dtype=torch.long)
    n_atoms = torch.bincount(batch)
    if not bool((batch[1:] >= batch[:-1]).all()):
        raise ValueError("radius_graph expects atoms sorted by molecule (the batch index must be non-decreasing)")
    return molecule_edges(pos, n_atoms, cutoff)
