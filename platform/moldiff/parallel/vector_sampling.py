"""iid sampling of state-vector systems in a pool of actors (``parallel.pool``); their Langevin
simulation is ``parallel.simulation``'s.

Each actor loads the checkpoint (a single model or a mixture of experts) once, for every seed and
both kinds of work. iid samples are cut into chunks seeded by (seed, chunk), so they do not depend
on how many actors drew them.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch

from .partial import PartialResults
from .pool import ActorPool, ModelWorker, chunk_seed, chunk_sizes


class StateWorker(ModelWorker):
    def __init__(self, checkpoint_dir: str, use_ema: bool, torch_threads: int, use_gpu: bool,
                 plugins: dict | None = None, compile: bool = False):
        from ..diffusion.schedules import build_schedule

        super().__init__(checkpoint_dir, use_ema, torch_threads, use_gpu, plugins, compile)
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

    def flat_model(self, z=None):
        return self.model, self.model.state_scale


def sample_states(pool: ActorPool, cfg, dim: int, seed: int, log: Callable[[str], None] = print,
                  partial: Optional[PartialResults] = None) -> np.ndarray:
    """``sampling.n_samples`` iid states by reverse diffusion -> [n, dim] (``partial``: as in
    ``parallel.sampling.sample_with_pool``)."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)

    def submit(actor, k):
        return actor.sample.remote(chunks[k], dim, chunk_seed(seed, k), s.n_steps,
                                   f"seed {seed} chunk {k + 1}/{len(chunks)}")
    return np.concatenate(pool.map_counted(chunks, submit, f"[sample] seed {seed}: states", log, partial))
