"""Langevin dynamics, OpenMM's LangevinIntegrator scheme, on many independent chains at once.

    v <- a v + (1 - a)/gamma * F(x)/m + sqrt(kT (1 - a^2) / m) xi,   a = exp(-gamma dt)
    x <- x + dt v

The force is any callable on positions [chains, ...] (a reference potential, or kT times a
learned score), so data generation and simulation with a trained model share one integrator.
Velocities start from Maxwell-Boltzmann. Frames are handed to ``on_frames`` as they are produced,
so long runs can write and report progress without holding everything in memory.

Starting positions as a numpy array run the chains in numpy (reference potentials); as a torch
tensor they run on that tensor's device, in float64, with the noise from a generator there (a
learned force field on a GPU): state, noise and forces stay on the device, and frames come to the
host once per block of ``frames_per_call``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Forces = Callable[[np.ndarray], np.ndarray]


class _NumpyChains:
    def __init__(self, x0, seed: int):
        self.rng = np.random.default_rng(seed)
        self.x = np.array(x0, dtype=np.float64)

    def per_dof(self, values) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=np.float64), self.x.shape[1:])

    def normal(self, shape):
        return self.rng.standard_normal(shape)

    sqrt = staticmethod(np.sqrt)

    def to_host(self, frames: list) -> np.ndarray:
        return np.stack(frames)

    def n_diverged(self, x) -> int:
        return int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum())

    def rng_state(self) -> np.ndarray:
        return np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), dtype=np.uint8).copy()

    def restore(self, state: "LangevinState"):
        self.rng.bit_generator.state = json.loads(state.rng.tobytes().decode())
        return np.array(state.x, dtype=np.float64), np.array(state.v, dtype=np.float64)

    def to_numpy(self, x) -> np.ndarray:
        return np.array(x)


class _TorchChains:
    def __init__(self, x0, seed: int):
        import torch
        self.torch = torch
        self.x = x0.detach().to(torch.float64)
        self.generator = torch.Generator(device=self.x.device).manual_seed(int(seed))

    def per_dof(self, values):
        values = self.torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.x.device)
        return values.broadcast_to(self.x.shape[1:])

    def normal(self, shape):
        return self.torch.randn(shape, generator=self.generator, dtype=self.x.dtype, device=self.x.device)

    def sqrt(self, x):
        return self.torch.sqrt(x)

    def to_host(self, frames: list) -> np.ndarray:
        return self.torch.stack(frames).cpu().numpy()

    def n_diverged(self, x) -> int:
        return int((~self.torch.isfinite(x)).flatten(1).any(1).sum())

    def rng_state(self) -> np.ndarray:
        return self.generator.get_state().numpy().copy()

    def restore(self, state: "LangevinState"):
        self.generator.set_state(self.torch.from_numpy(np.array(state.rng, dtype=np.uint8)))
        return tuple(self.torch.as_tensor(a, dtype=self.torch.float64, device=self.x.device) for a in (state.x, state.v))

    def to_numpy(self, x) -> np.ndarray:
        return x.detach().cpu().numpy()


@dataclass(frozen=True)
class LangevinSettings:
    kT: float
    mass: float | np.ndarray = 1.0
    friction: float = 1.0          # gamma, per time unit
    dt: float = 0.005
    burn_in: int = 0               # steps discarded per chain
    n_frames: int = 1000           # frames saved per chain
    save_every: int = 50           # steps between saved frames

    def __post_init__(self):
        if not (self.kT > 0 and self.friction > 0 and self.dt > 0):
            raise ValueError(f"Langevin needs kT, friction and dt > 0, got {self.kT}, {self.friction}, {self.dt}")
        if np.any(np.asarray(self.mass) <= 0):
            raise ValueError(f"Langevin masses must be positive, got {self.mass}")


@dataclass(frozen=True)
class LangevinState:
    """Where a run stands after a block of frames: enough to continue it exactly (the same frames
    as a run never stopped). ``frames``: every frame saved so far."""
    step: int
    x: np.ndarray
    v: np.ndarray
    rng: np.ndarray                # the noise generator's state, as bytes
    frames: np.ndarray             # [n_saved, chains, ...]


def langevin(forces: Forces, x0: np.ndarray, settings: LangevinSettings, seed: int,
             on_frames: Optional[Callable[[int, np.ndarray], None]] = None, frames_per_call: int = 100,
             progress: Optional[Callable[[str], None]] = None, label: str = "langevin",
             on_state: Optional[Callable[[LangevinState], None]] = None,
             resume: Optional[LangevinState] = None) -> np.ndarray:
    """Run every chain of ``x0`` [chains, ...] and return the saved frames [n_frames, chains, ...].

    ``on_frames(first_index, frames)`` receives blocks of ``frames_per_call`` frames as they are made,
    and then ``on_state`` the run's state (its ``frames`` empty: the caller has them); ``resume``: a
    state so recorded (with its frames), from which the run continues as if never stopped.
    A chain that blows up stays non-finite in the output and is counted in the progress lines, so
    callers report it rather than drop it silently.
    """
    s = settings
    chains = _NumpyChains(x0, seed) if isinstance(x0, np.ndarray) else _TorchChains(x0, seed)
    x = chains.x
    m = chains.per_dof(s.mass)
    a = math.exp(-s.friction * s.dt)
    kick = (1.0 - a) / s.friction
    noise = chains.sqrt(s.kT * (1.0 - a * a) / m)
    v = chains.normal(x.shape) * chains.sqrt(s.kT / m)
    out = np.empty((s.n_frames,) + tuple(x.shape))
    block, block_start, start, last_report = [], 0, time.time(), time.time()
    total = s.burn_in + s.n_frames * s.save_every
    first_step = 1
    if resume is not None:
        n_saved = len(resume.frames)
        if resume.step != s.burn_in + n_saved * s.save_every or resume.x.shape != tuple(x.shape):
            raise ValueError(f"[{label}] cannot resume: a state at step {resume.step} with {n_saved} frames of "
                             f"shape {resume.x.shape} does not belong to this run")
        x, v = chains.restore(resume)
        out[:n_saved] = resume.frames
        block_start, first_step = n_saved, resume.step + 1
    flush_every = frames_per_call if on_frames is not None else s.n_frames
    for step in range(first_step, total + 1):
        v = a * v + kick * forces(x) / m + noise * chains.normal(x.shape)
        x = x + s.dt * v
        if step > s.burn_in and (step - s.burn_in) % s.save_every == 0:
            k = (step - s.burn_in) // s.save_every - 1
            block.append(x)
            if k + 1 - block_start == flush_every or k + 1 == s.n_frames:
                out[block_start:k + 1] = chains.to_host(block)
                if on_frames is not None:
                    on_frames(block_start, out[block_start:k + 1])
                if on_state is not None:
                    on_state(LangevinState(step, chains.to_numpy(x), chains.to_numpy(v), chains.rng_state(),
                                           out[:0]))
                block, block_start = [], k + 1
        if progress is not None and (time.time() - last_report > 10 or step == total):
            last_report = time.time()
            bad = chains.n_diverged(x)
            progress(f"[{label}] step {step}/{total} ({time.time() - start:.0f}s)"
                     + (f", {bad} chain(s) diverged" if bad else ""))
    return out
