"""iid sampling and Langevin simulation of state-vector systems in Ray actors.

Each actor loads the checkpoint (a single model or a mixture of experts) once. iid samples are
cut into chunks seeded by (seed, chunk), so they do not depend on how many actors drew them.
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
import ray
import torch

from ..config import ExperimentConfig
from .pool import chunk_sizes, map_chunks
from .sampling import ModelWorker, chunk_seed, start_workers


class StateWorker(ModelWorker):
    def __init__(self, checkpoint_dir: str, use_ema: bool, torch_threads: int, use_gpu: bool):
        from ..diffusion.schedules import build_schedule

        super().__init__(checkpoint_dir, use_ema, torch_threads, use_gpu)
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


def sample_states(cfg: ExperimentConfig, checkpoint_dir: str, dim: int, seed: int,
                  log: Callable[[str], None] = print) -> np.ndarray:
    """``sampling.n_samples`` iid states by reverse diffusion -> [n, dim]."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)
    actors = start_workers(cfg, StateWorker, checkpoint_dir, min(cfg.ray.num_sampling_actors, len(chunks)))
    t0, done = time.time(), [0]

    def landed(k):
        done[0] += chunks[k]
        log(f"[sample] seed {seed}: {done[0]}/{s.n_samples} states ({time.time() - t0:.0f}s)")

    out = map_chunks(actors, lambda a, k: a.sample.remote(chunks[k], dim, chunk_seed(seed, k), s.n_steps,
                                                          f"seed {seed} chunk {k + 1}/{len(chunks)}"),
                     len(chunks), landed)
    for a in actors:
        ray.kill(a)
    return np.concatenate(out)


def simulate_states(cfg: ExperimentConfig, checkpoint_dir: str, starts: np.ndarray, kT: float, masses, seed: int,
                    out_dir: Path, log: Callable[[str], None] = print) -> np.ndarray:
    """Langevin with the learned forces from ``starts`` [chains, dim] -> frames [n_frames, chains, dim]."""
    sim = cfg.simulation
    shares = [a for a in np.array_split(np.arange(len(starts)), min(sim.num_actors, len(starts))) if len(a)]
    actors = start_workers(cfg, StateWorker, checkpoint_dir, len(shares), stage="simulate")
    settings = {"mass": masses, "friction": sim.friction, "dt": sim.dt, "burn_in": sim.burn_in,
                "n_frames": sim.n_frames, "save_every": sim.save_every}
    t0 = time.time()
    log(f"[simulate] seed {seed}: {len(starts)} chains x {sim.burn_in + sim.n_frames * sim.save_every} steps "
        f"(dt {sim.dt:g}, t_sim {sim.t_sim:g}, kT {kT:g}) on {len(actors)} actor(s); frames under {out_dir}")
    refs = [a.simulate.remote(starts[idx], settings, kT, sim.t_sim, chunk_seed(seed, 1000 + k),
                              str(out_dir / f"actor_{k}"), f"simulate seed {seed} actor {k + 1}/{len(actors)}")
            for k, (a, idx) in enumerate(zip(actors, shares))]
    frames = np.concatenate(ray.get(refs), axis=1)
    for a in actors:
        ray.kill(a)
    log(f"[simulate] seed {seed}: {frames.shape[0] * frames.shape[1]} frames ({time.time() - t0:.0f}s)")
    return frames
