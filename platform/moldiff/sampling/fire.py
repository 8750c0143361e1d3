"""Batched FIRE geometry optimisation (Bitzek et al., PRL 97, 170201, 2006) of many molecules at once.

FIRE (Fast Inertial Relaxation Engine) is damped molecular dynamics with unit masses whose
velocity is steered towards the force and whose time step adapts: while the motion goes downhill
the step grows and the steering weakens; as soon as it goes uphill the motion stops and restarts
carefully. One step of one molecule, with F and v its atoms' forces and velocities:

    P = sum_i F_i . v_i                                         (power, over the molecule's atoms)
    P > 0:   v <- (1 - alpha) v + alpha |v| F / |F|             (|.|: norm of the full 3n-vector)
             if more than n_min steps in a row had P > 0:  dt <- min(f_inc dt, dt_max),  alpha <- f_alpha alpha
    P <= 0:  v <- 0,  dt <- f_dec dt,  alpha <- alpha_start,  counter <- 0
    v <- v + dt F;   dx = dt v,  scaled down (as a whole) so that no atom moves more than max_move;
    x <- x + dx.

The first step of a molecule starts from v = 0 and skips the P test (as ASE does), so it does not
count as uphill. A molecule is converged when the largest force norm over its atoms is below
``fmax``; convergence is checked on the forces at the current positions before every step, so a
molecule converged at the start takes no step.

Atoms of all molecules are concatenated (``pos`` [N, 3], ``batch`` [N] the molecule of each atom,
``n_atoms`` [B]) and every reduction is per molecule, so the molecules are independent: each has
its own velocities, dt, alpha and counter, and its trajectory is the same alone or in any batch.
A molecule stops (is frozen: positions and step count no longer change) when it converges, when
it has taken ``max_steps`` steps, or when its forces or its next positions are not finite; in the
last case it keeps its last finite positions, is reported not converged with fmax NaN if its
forces were the problem, and no NaN reaches the other molecules.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

ForceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FireSettings:
    fmax: float = 0.005          # convergence: max per-atom force norm (force unit) per molecule
    max_steps: int = 1000        # steps (position updates) per molecule at most
    dt: float = 0.1              # initial time step
    dt_max: float = 1.0
    max_move: float = 0.2        # max displacement of any atom per step (length unit)
    n_min: int = 5               # steps with P > 0 before dt grows
    f_inc: float = 1.1
    f_dec: float = 0.5
    alpha_start: float = 0.1
    f_alpha: float = 0.99


@dataclass
class FireResult:
    pos: torch.Tensor        # [N, 3] final positions
    n_steps: torch.Tensor    # [B] long: steps taken until convergence (or max_steps, or failure)
    converged: torch.Tensor  # [B] bool
    fmax: torch.Tensor       # [B] max force norm at the final positions (NaN if non-finite)


def _mol_sum(x: torch.Tensor, batch: torch.Tensor, n_mol: int) -> torch.Tensor:
    return x.new_zeros(n_mol).index_add_(0, batch, x)


def _mol_max(x: torch.Tensor, batch: torch.Tensor, n_mol: int) -> torch.Tensor:
    """Per-molecule maximum of non-negative per-atom values (0 for a molecule without atoms)."""
    return x.new_zeros(n_mol).scatter_reduce_(0, batch, x, reduce="amax", include_self=True)


def fire_relax(force_fn: ForceFn, pos: torch.Tensor, batch: torch.Tensor, n_atoms: torch.Tensor,
               settings: FireSettings = FireSettings()) -> FireResult:
    """Relax every molecule of the batch with FIRE.

    ``force_fn(pos, active_atoms)`` returns forces [N, 3] for positions [N, 3]; ``active_atoms``
    [N] bool marks the atoms of molecules still being relaxed (forces of the other atoms are
    ignored, so a model may skip them and return anything there, NaN included).
    """
    s = settings
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must be [N, 3], got {tuple(pos.shape)}")
    if not pos.is_floating_point():
        raise TypeError("pos must be a floating-point tensor")
    device, dtype = pos.device, pos.dtype
    pos = pos.detach().clone()
    batch = batch.to(device=device, dtype=torch.long)
    n_atoms = n_atoms.to(device=device, dtype=torch.long)
    if batch.shape != (pos.shape[0],):
        raise ValueError(f"batch must be [N] = [{pos.shape[0]}], got {tuple(batch.shape)}")
    n_mol = int(n_atoms.shape[0])

    v = torch.zeros_like(pos)
    dt = torch.full((n_mol,), float(s.dt), dtype=dtype, device=device)
    alpha = torch.full((n_mol,), float(s.alpha_start), dtype=dtype, device=device)
    count = torch.zeros(n_mol, dtype=torch.long, device=device)     # consecutive steps with P > 0
    started = torch.zeros(n_mol, dtype=torch.bool, device=device)   # has taken a step
    n_steps = torch.zeros(n_mol, dtype=torch.long, device=device)
    converged = torch.zeros(n_mol, dtype=torch.bool, device=device)
    fmax = torch.full((n_mol,), float("nan"), dtype=dtype, device=device)
    active = torch.ones(n_mol, dtype=torch.bool, device=device)
    zero = pos.new_zeros(())

    while bool(active.any()):
        atom_active = active[batch]
        f = force_fn(pos, atom_active)
        if f.shape != pos.shape:
            raise ValueError(f"force_fn returned {tuple(f.shape)}, expected {tuple(pos.shape)}")
        f = f.detach().to(dtype)

        # non-finite forces stop their molecule; masked forces never mix into others' sums
        atom_bad = atom_active & ~torch.isfinite(f).all(dim=1)
        bad = active & (_mol_sum(atom_bad.to(dtype), batch, n_mol) > 0)
        f = torch.where((atom_active & ~atom_bad)[:, None], f, zero)
        f_now = _mol_max(f.norm(dim=1), batch, n_mol)
        fmax = torch.where(active, f_now, fmax)
        fmax = torch.where(bad, torch.full_like(fmax, float("nan")), fmax)
        active = active & ~bad

        newly = active & (f_now < s.fmax)
        converged = converged | newly
        active = active & ~newly & (n_steps < s.max_steps)
        if not bool(active.any()):
            break
        atom_active = active[batch]

        # FIRE velocity mixing and dt/alpha adaptation, per molecule
        power = _mol_sum((f * v).sum(dim=1), batch, n_mol)
        v_norm = _mol_sum((v * v).sum(dim=1), batch, n_mol).sqrt()
        f_norm = _mol_sum((f * f).sum(dim=1), batch, n_mol).sqrt()
        downhill = active & started & (power > 0)
        uphill = active & started & (power <= 0)
        steer = torch.where(f_norm > 0, alpha * v_norm / f_norm.clamp_min(torch.finfo(dtype).tiny), zero)
        v_mix = (1 - alpha)[batch, None] * v + steer[batch, None] * f
        v = torch.where(downhill[batch][:, None], v_mix, v)
        v = torch.where(uphill[batch][:, None], zero, v)

        grow = downhill & (count > s.n_min)
        dt = torch.where(grow, (dt * s.f_inc).clamp_max(s.dt_max), dt)
        alpha = torch.where(grow, alpha * s.f_alpha, alpha)
        count = torch.where(downhill, count + 1, count)
        dt = torch.where(uphill, dt * s.f_dec, dt)
        alpha = torch.where(uphill, torch.full_like(alpha, float(s.alpha_start)), alpha)
        count = torch.where(uphill, torch.zeros_like(count), count)
        started = started | active

        # Euler step, displacement capped per molecule by its fastest atom
        v_new = v + dt[batch, None] * f
        dx = dt[batch, None] * v_new
        dx_max = _mol_max(dx.norm(dim=1), batch, n_mol)
        scale = torch.where(dx_max > s.max_move, s.max_move / dx_max, torch.ones_like(dx_max))
        pos_new = pos + dx * scale[batch, None]

        atom_fail = atom_active & ~(torch.isfinite(pos_new).all(dim=1) & torch.isfinite(v_new).all(dim=1))
        fail = active & (_mol_sum(atom_fail.to(dtype), batch, n_mol) > 0)
        move = (active & ~fail)[batch][:, None]
        pos = torch.where(move, pos_new, pos)
        v = torch.where(move, v_new, v)
        n_steps = n_steps + (active & ~fail).long()
        active = active & ~fail

    return FireResult(pos=pos, n_steps=n_steps, converged=converged, fmax=fmax)
