"""Metrics for molecules of one composition (MD17-style trajectories and samples).

Stability (Fu et al. 2022, used by the PSM paper): a sample is unstable if any *bonded* distance
deviates from its equilibrium length by more than ``tolerance`` (0.5 Angstrom). Bonds are found on
a reference structure from covalent radii; equilibrium lengths are their mean over reference frames.
The criterion reads atoms by their labels, so it needs samples whose labels mean something: a
permutation-equivariant model of one molecule swaps same-element atoms freely (set
``model.atom_identity`` to make them distinguishable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import covalent_radii


def bonded_pairs(z: np.ndarray, pos: np.ndarray, scale: float = 1.2) -> np.ndarray:
    """Pairs (i, j), i < j, closer than ``scale`` x the sum of their covalent radii: [P, 2]."""
    z = np.asarray(z)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    limit = scale * (covalent_radii[z][:, None] + covalent_radii[z][None])
    i, j = np.triu_indices(len(z), k=1)
    keep = d[i, j] < limit[i, j]
    return np.stack([i[keep], j[keep]], -1)


def pair_lengths(pos: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """[S, n, 3] -> [S, P] distances of the given pairs."""
    return np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1)


@dataclass
class BondReference:
    pairs: np.ndarray        # [P, 2]
    lengths: np.ndarray      # [P] equilibrium lengths

    @classmethod
    def from_frames(cls, z: np.ndarray, frames: np.ndarray, scale: float = 1.2) -> "BondReference":
        """Bonds: pairs within ``scale`` x the covalent radii in more than half of the reference frames
        (so that one distorted frame decides nothing); equilibrium lengths: their mean over the frames."""
        z = np.asarray(z)
        frames = np.asarray(frames, dtype=np.float64)
        candidates = set()
        for f in frames[:: max(1, len(frames) // 50)]:
            candidates |= {tuple(p) for p in bonded_pairs(z, f, scale)}
        candidates = np.array(sorted(candidates))
        lengths = pair_lengths(frames, candidates)
        limit = scale * (covalent_radii[z][candidates[:, 0]] + covalent_radii[z][candidates[:, 1]])
        keep = (lengths < limit).mean(0) > 0.5
        return cls(candidates[keep], lengths[:, keep].mean(0))


def max_bond_deviation(samples: np.ndarray, ref: BondReference) -> np.ndarray:
    """Largest |d_ij - b_ij| over bonded pairs, per sample: [S]."""
    return np.abs(pair_lengths(np.asarray(samples, dtype=np.float64), ref.pairs) - ref.lengths).max(-1)


def stable_fraction(samples: np.ndarray, ref: BondReference, tolerance: float = 0.5) -> float:
    """Fraction of samples whose bonded distances all stay within ``tolerance`` of equilibrium."""
    return float((max_bond_deviation(samples, ref) <= tolerance).mean())
