"""Langevin simulation with a trained model's forces F(x) = kT s(x, t_sim), for state vectors and
for molecules of one composition (flat 3n-vectors), in the stage's actor pool (``parallel.pool``):
the chains are split over ``simulation.num_actors`` actors; each writes its frames to
``<out_dir>/actor_<k>/block_<i>.npy`` as they are produced (a long run shows progress on disk and a
crash loses at most one block) and returns them when it is done.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .pool import ActorPool, chunk_seed


def pool_size(cfg) -> int:
    """Actors of a stage that samples and may simulate: enough for both."""
    return max(cfg.ray.num_sampling_actors, cfg.simulation.num_actors if cfg.simulation.enabled else 1)


def frames_written(out_dir: Path) -> int:
    """Frames x chains in the complete blocks under ``out_dir`` (headers only: no frame is read)."""
    total = 0
    for block in Path(out_dir).glob("actor_*/block_*.npy"):
        try:
            shape = np.load(block, mmap_mode="r").shape
        except (OSError, ValueError):        # renamed into place while we looked
            continue
        total += shape[0] * shape[1]
    return total


def simulate_with_pool(pool: ActorPool, cfg, starts: np.ndarray, kT: float, masses, seed: int, out_dir: Path,
                       log: Callable[[str], None] = print, z: Optional[np.ndarray] = None) -> np.ndarray:
    """Langevin from ``starts`` [chains, D] -> frames [n_frames, chains, D]; ``z``: the composition
    when the states are molecules (flat 3n-vectors)."""
    sim = cfg.simulation
    shares = [a for a in np.array_split(np.arange(len(starts)), min(sim.num_actors, len(starts), len(pool))) if len(a)]
    settings = {"mass": masses, "friction": sim.friction, "dt": sim.dt, "burn_in": sim.burn_in,
                "n_frames": sim.n_frames, "save_every": sim.save_every}
    t0 = time.time()
    log(f"[simulate] seed {seed}: {len(starts)} chains x {sim.burn_in + sim.n_frames * sim.save_every} steps "
        f"(dt {sim.dt:g}, t_sim {sim.t_sim:g}, kT {kT:g}) on {len(shares)} actor(s); frames under {out_dir}")

    def submit(actor, k):
        return actor.simulate.remote(starts[shares[k]], settings, kT, sim.t_sim, chunk_seed(seed, 1000 + k),
                                     str(out_dir / f"actor_{k}"), f"simulate seed {seed} actor {k + 1}/{len(shares)}", z)
    from ..progress import Progress

    progress = Progress(f"[simulate] seed {seed}: frames", len(starts) * sim.n_frames, log)
    try:                  # the actors write their frames block by block: count them on disk while waiting
        frames = np.concatenate(pool.map(submit, len(shares), actors=pool.actors[:len(shares)],
                                         poll=lambda: progress.update(frames_written(out_dir)), poll_every_s=10.0),
                                axis=1)
        progress.update(frames.shape[0] * frames.shape[1])
    finally:
        progress.close()
    log(f"[simulate] seed {seed}: {frames.shape[0] * frames.shape[1]} frames ({time.time() - t0:.0f}s)")
    return frames
