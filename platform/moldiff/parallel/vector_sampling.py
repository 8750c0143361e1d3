"""iid sampling and Langevin simulation of state-vector systems in a pool of actors (``parallel.pool``).

Each actor loads the checkpoint (a single model or a mixture of experts) once, for every seed and
both kinds of work. iid samples are cut into chunks seeded by (seed, chunk), so they do not depend
on how many actors drew them.
Simulation splits the chains over the actors; every actor writes its frames to
``<out_dir>/block_<k>.npy`` as they are produced (so a long run shows progress on disk and a
crash loses at most one block) and returns them when it is done.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .pool import ActorPool, ModelWorker, chunk_seed, chunk_sizes


class StateWorker(ModelWorker):
    def __init__(self, checkpoint_dir: str, use_ema: bool, torch_threads: int, use_gpu: bool,
                 plugins: dict | None = None):
        from ..diffusion.schedules import build_schedule

        super().__init__(checkpoint_dir, use_ema, torch_threads, use_gpu, plugins)
        self.schedule = build_schedule(self.cfg.diffusion)

    def sample(self, n: int, dim: int, seed: int, n_steps: int, label: str) -> np.ndarray:
        from ..sampling.vector import reverse_em

        t0 = time.time()
        every = max(1, n_steps // 4)

        def progress(k):
            if k % every == 0:
                print(f"[sample {label}] step {k}/{n_steps} ({time.time() - t0:.0f}s)", flush=True)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        x = reverse_em(self.model, self.schedule, n, dim, n_steps, gen, t_end=self.cfg.diffusion.t_min,
                       dtype=torch.float32, progress=progress)
        return x.double().cpu().numpy() * self.model.state_scale          # back to the data's units

    def simulate(self, starts: np.ndarray, settings: dict, kT: float, t_sim: float, seed: int, out_dir: str,
                 label: str) -> np.ndarray:
        """Langevin in the data's units with F(x) = kT s(x / scale, t_sim) / scale, on this actor's
        device (chains, noise and forces stay there; frames come back block by block)."""
        from ..sampling.langevin import LangevinSettings, langevin
        from ..sampling.vector import learned_forces

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        def write(first, frames):
            tmp = out / f".block_{first:08d}.npy.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, frames)
            os.replace(tmp, out / f"block_{first:08d}.npy")

        s = LangevinSettings(kT=kT, **settings)
        forces = learned_forces(self.model, kT, t_sim, self.model.state_scale)
        starts = torch.as_tensor(starts, dtype=torch.float64, device=self.device)
        return langevin(forces, starts, s, seed, on_frames=write,
                        frames_per_call=max(1, s.n_frames // 10), progress=lambda m: print(m, flush=True), label=label)


def pool_size(cfg) -> int:
    """Actors of the states stage: enough for iid sampling and for the simulation's chains."""
    return max(cfg.ray.num_sampling_actors, cfg.simulation.num_actors if cfg.simulation.enabled else 1)


def sample_states(pool: ActorPool, cfg, dim: int, seed: int, log: Callable[[str], None] = print) -> np.ndarray:
    """``sampling.n_samples`` iid states by reverse diffusion -> [n, dim]."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)

    def submit(actor, k):
        return actor.sample.remote(chunks[k], dim, chunk_seed(seed, k), s.n_steps,
                                   f"seed {seed} chunk {k + 1}/{len(chunks)}")
    return np.concatenate(pool.map_counted(chunks, submit, f"[sample] seed {seed}: states", log))


def simulate_states(pool: ActorPool, cfg, starts: np.ndarray, kT: float, masses, seed: int, out_dir: Path,
                    log: Callable[[str], None] = print) -> np.ndarray:
    """Langevin with the learned forces from ``starts`` [chains, dim] -> frames [n_frames, chains, dim];
    the chains are split over ``simulation.num_actors`` actors of the pool."""
    sim = cfg.simulation
    shares = [a for a in np.array_split(np.arange(len(starts)), min(sim.num_actors, len(starts), len(pool))) if len(a)]
    settings = {"mass": masses, "friction": sim.friction, "dt": sim.dt, "burn_in": sim.burn_in,
                "n_frames": sim.n_frames, "save_every": sim.save_every}
    t0 = time.time()
    log(f"[simulate] seed {seed}: {len(starts)} chains x {sim.burn_in + sim.n_frames * sim.save_every} steps "
        f"(dt {sim.dt:g}, t_sim {sim.t_sim:g}, kT {kT:g}) on {len(shares)} actor(s); frames under {out_dir}")

    def submit(actor, k):
        return actor.simulate.remote(starts[shares[k]], settings, kT, sim.t_sim, chunk_seed(seed, 1000 + k),
                                     str(out_dir / f"actor_{k}"), f"simulate seed {seed} actor {k + 1}/{len(shares)}")
    frames = np.concatenate(pool.map(submit, len(shares), actors=pool.actors[:len(shares)]), axis=1)
    log(f"[simulate] seed {seed}: {frames.shape[0] * frames.shape[1]} frames ({time.time() - t0:.0f}s)")
    return frames
