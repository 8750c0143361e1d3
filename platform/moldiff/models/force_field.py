"""A machine-learned force field on PaiNN (MoreRed's baseline): per-atom energies from an
atom-wise MLP, summed per molecule, plus fixed per-element reference energies; forces are minus the
gradient of the total energy (autograd), so they are conservative and rotate with the molecule.

The element references (a least-squares fit of the training energies on element counts, made
before training and stored with the model) take out the large atomic part of total GFN2-xTB
energies, so the network only learns the small binding and strain part.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from ..data.batch import GraphBatch
from ..nn.painn import PaiNN


def element_reference_energies(z_lists: list[np.ndarray], energies: np.ndarray, max_z: int = 100) -> np.ndarray:
    """[max_z + 1] per-element energies fitted by least squares to E ~ sum_i e(z_i)."""
    elements = sorted({int(v) for z in z_lists for v in z})
    counts = np.zeros((len(z_lists), len(elements)))
    column = {e: i for i, e in enumerate(elements)}
    for row, z in enumerate(z_lists):
        for v in z:
            counts[row, column[int(v)]] += 1
    fit, *_ = np.linalg.lstsq(counts, np.asarray(energies, dtype=np.float64), rcond=None)
    table = np.zeros(max_z + 1)
    table[elements] = fit
    return table


class ForceField(nn.Module):
    conservative = True

    def __init__(self, hidden: int = 64, layers: int = 3, n_rbf: int = 20, cutoff: float = 5.0, max_z: int = 100,
                 reference: Optional[np.ndarray] = None):
        super().__init__()
        self.representation = PaiNN(hidden, layers, n_rbf, cutoff, max_z, time_features=0, vector_out=False)
        half = max(hidden // 2, 1)
        self.atom_energy = nn.Sequential(nn.Linear(hidden, half), nn.SiLU(), nn.Linear(half, 1))
        table = torch.zeros(max_z + 1, dtype=torch.float64) if reference is None else torch.as_tensor(reference)
        self.register_buffer("reference", table.to(torch.float64))

    def energy(self, graphs: GraphBatch) -> torch.Tensor:
        """[B] total energies in the training labels' unit."""
        s, _ = self.representation(graphs.z, graphs.pos, graphs.batch, graphs.n_atoms)
        per_atom = self.atom_energy(s).squeeze(-1) + self.reference[graphs.z].to(s.dtype)
        total = torch.zeros(graphs.num_graphs, dtype=s.dtype, device=s.device)
        return total.index_add_(0, graphs.batch, per_atom)

    def energy_and_forces(self, graphs: GraphBatch, create_graph: bool = False):
        with torch.enable_grad():
            pos = graphs.pos.detach().requires_grad_(True)
            energy = self.energy(graphs.with_pos(pos))
            (grad,) = torch.autograd.grad(energy.sum(), pos, create_graph=create_graph)
        return energy, -grad
