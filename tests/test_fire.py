"""Batched FIRE: convergence on analytic potentials (harmonic springs, a Lennard-Jones dimer),
independence of the molecules of a batch, the max_move cap, and the stopping rules (already
converged, max_steps, non-finite forces)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moldiff.sampling.fire import FireResult, FireSettings, fire_relax

DTYPE = torch.float64
R0, K = 1.5, 1.0


def _pairs(n):
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def spring_system(shapes, seed=0, noise=0.3):
    """Molecules of 2, 3, 4 atoms with every pair bonded at rest length R0 (a dimer, an equilateral
    triangle, a regular tetrahedron: all pairs can be at R0 at once), randomly distorted."""
    ideal = {
        2: [[0, 0, 0], [R0, 0, 0]],
        3: [[0, 0, 0], [R0, 0, 0], [R0 / 2, R0 * math.sqrt(3) / 2, 0]],
        4: (R0 / math.sqrt(8)) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]),
    }
    rng = np.random.default_rng(seed)
    pos, pairs, offset = [], [], 0
    for n in shapes:
        x = np.asarray(ideal[n], dtype=float) + noise * rng.standard_normal((n, 3))
        pos.append(x)
        pairs += [(offset + i, offset + j) for i, j in _pairs(n)]
        offset += n
    n_atoms = torch.tensor(shapes)
    return (torch.tensor(np.concatenate(pos), dtype=DTYPE),
            torch.repeat_interleave(torch.arange(len(shapes)), n_atoms), n_atoms,
            torch.tensor(pairs, dtype=torch.long))


def spring_forces(pairs, k=K, r0=R0):
    """Forces of E = sum_pairs k (|x_i - x_j| - r0)^2 by autograd."""
    def force_fn(pos, active):
        x = pos.detach().requires_grad_(True)
        r = (x[pairs[:, 0]] - x[pairs[:, 1]]).norm(dim=1)
        energy = (k * (r - r0) ** 2).sum()
        (grad,) = torch.autograd.grad(energy, x)
        return -grad
    return force_fn


def distances(pos, pairs):
    return (pos[pairs[:, 0]] - pos[pairs[:, 1]]).norm(dim=1)


def max_force(force_fn, pos, batch, n_mol):
    f = force_fn(pos, torch.ones(len(pos), dtype=torch.bool)).norm(dim=1)
    return torch.zeros(n_mol, dtype=DTYPE).scatter_reduce_(0, batch, f, "amax")


def test_springs_converge_to_rest_length():
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=1)
    force_fn = spring_forces(pairs)
    deviation = (distances(pos, pairs) - R0).abs()
    for bonds in (slice(0, 1), slice(1, 4), slice(4, 10)):  # every molecule really distorted
        assert deviation[bonds].max() > 0.2
    settings = FireSettings(fmax=1e-4)
    res = fire_relax(force_fn, pos, batch, n_atoms, settings)
    assert isinstance(res, FireResult)
    assert res.converged.tolist() == [True, True, True]
    assert res.n_steps.dtype == torch.long and (res.n_steps > 0).all()
    assert (res.n_steps < settings.max_steps).all()
    assert (res.fmax < settings.fmax).all()
    # reported fmax is the force at the returned positions
    torch.testing.assert_close(res.fmax, max_force(force_fn, res.pos, batch, 3), rtol=0, atol=1e-15)
    assert (distances(res.pos, pairs) - R0).abs().max() < 1e-3


def _single(pos, batch, n_atoms, pairs, m):
    """Molecule m of a spring system as a batch of its own."""
    atoms = (batch == m).nonzero().flatten()
    first = int(atoms[0])
    mine = pairs[(batch[pairs[:, 0]] == m)] - first
    return pos[atoms], torch.zeros(len(atoms), dtype=torch.long), n_atoms[m:m + 1], mine


@pytest.mark.parametrize("m", [0, 1, 2])
def test_molecules_are_independent(m):
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=1)
    settings = FireSettings(fmax=1e-4)
    together = fire_relax(spring_forces(pairs), pos, batch, n_atoms, settings)
    p1, b1, n1, pairs1 = _single(pos, batch, n_atoms, pairs, m)
    alone = fire_relax(spring_forces(pairs1), p1, b1, n1, settings)
    assert alone.n_steps.item() == together.n_steps[m].item()
    assert alone.converged.item() == together.converged[m].item()
    # molecules have different step counts, so the lone run ends at a different loop iteration
    assert len(set(together.n_steps.tolist())) > 1
    # per-molecule reductions only: bit-for-bit the same trajectory
    assert torch.equal(alone.pos, together.pos[batch == m])


def test_max_move_caps_every_atom_displacement():
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=2, noise=0.5)
    inner = spring_forces(pairs, k=1e6)
    seen = []

    def force_fn(p, active):
        seen.append(p.clone())
        return inner(p, active)

    settings = FireSettings(fmax=1e-3, max_move=0.05, max_steps=60)
    fire_relax(force_fn, pos, batch, n_atoms, settings)
    steps = torch.stack([(b - a).norm(dim=1) for a, b in zip(seen[:-1], seen[1:])])
    assert len(seen) > 10
    assert steps.max() <= settings.max_move * (1 + 1e-12)
    assert steps.max() > 0.9 * settings.max_move  # the cap was actually binding


def test_already_converged_molecule_takes_no_step():
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=3)
    pos[0], pos[1] = torch.zeros(3, dtype=DTYPE), torch.tensor([R0, 0, 0], dtype=DTYPE)  # exact rest
    inner = spring_forces(pairs)
    masks = []

    def force_fn(p, active):
        masks.append(active.clone())
        return inner(p, active)

    res = fire_relax(force_fn, pos, batch, n_atoms, FireSettings(fmax=1e-4))
    assert res.n_steps[0].item() == 0 and res.converged[0].item()
    assert torch.equal(res.pos[:2], pos[:2])
    assert res.converged.all() and (res.n_steps[1:] > 0).all()
    assert masks[0].all() and not masks[1][:2].any() and masks[1][2:].all()


def test_impossible_fmax_stops_at_max_steps():
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=4)
    res = fire_relax(spring_forces(pairs), pos, batch, n_atoms, FireSettings(fmax=0.0, max_steps=7))
    assert res.n_steps.tolist() == [7, 7, 7]
    assert not res.converged.any()
    assert torch.isfinite(res.pos).all() and torch.isfinite(res.fmax).all()


def test_nan_forces_stop_only_their_molecule():
    pos, batch, n_atoms, pairs = spring_system([2, 3, 4], seed=5)
    inner = spring_forces(pairs)
    seen, good_calls = [], 3

    def force_fn(p, active):
        seen.append(p.clone())
        f = inner(p, active)
        if len(seen) > good_calls:
            f[batch == 1] = float("nan")
        return f

    settings = FireSettings(fmax=1e-4)
    res = fire_relax(force_fn, pos, batch, n_atoms, settings)
    clean = fire_relax(inner, pos, batch, n_atoms, settings)
    assert res.converged.tolist() == [True, False, True]
    assert res.n_steps[1].item() == good_calls
    assert math.isnan(res.fmax[1].item())
    assert torch.isfinite(res.pos).all()
    # molecule 1 keeps the positions at which its forces went bad (its last finite ones)
    assert torch.equal(res.pos[batch == 1], seen[good_calls][batch == 1])
    # the others are exactly as in a run without the failure
    for m in (0, 2):
        assert res.n_steps[m] == clean.n_steps[m]
        assert torch.equal(res.pos[batch == m], clean.pos[batch == m])


def test_lennard_jones_dimers_reach_the_minimum():
    sigma, eps = 1.2, 0.7
    r_start = torch.tensor([0.95, 1.3, 1.8]) * sigma  # repulsive, attractive, far out
    pos = torch.zeros(6, 3, dtype=DTYPE)
    pos[1::2, 0] = r_start.to(DTYPE)
    pos[1::2, 1] = 0.1  # not along an axis
    n_atoms = torch.tensor([2, 2, 2])
    batch = torch.repeat_interleave(torch.arange(3), n_atoms)

    def force_fn(p, active):
        x = p.detach().requires_grad_(True)
        r = (x[0::2] - x[1::2]).norm(dim=1)
        energy = (4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6)).sum()
        return -torch.autograd.grad(energy, x)[0]

    res = fire_relax(force_fn, pos, batch, n_atoms, FireSettings(fmax=1e-6, max_steps=3000))
    assert res.converged.all()
    r = (res.pos[0::2] - res.pos[1::2]).norm(dim=1)
    torch.testing.assert_close(r, torch.full_like(r, 2 ** (1 / 6) * sigma), rtol=0, atol=1e-5)
