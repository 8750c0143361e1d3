"""PC / EM sampling of fixed-composition molecules in a pool of actors (``parallel.pool``).

Work is cut into chunks of ``sampling.batch_size`` molecules; chunk k of seed s always uses the
generator seeded by (s, k), so the samples do not depend on how many actors drew them.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .pool import ActorPool, ModelWorker, chunk_seed, chunk_sizes


class SamplerWorker(ModelWorker):
    """Holds one model; ``sample`` draws a chunk of fixed-composition molecules; ``simulate``
    (``ModelWorker``) runs Langevin chains of them as flat 3n-vectors."""

    def flat_model(self, z=None):
        from ..models.flat import FlatMolecules
        return FlatMolecules(self.model, z), 1.0

    def sample(self, z: np.ndarray, n: int, seed: int, sampling: dict, label: str = "") -> np.ndarray:
        """``sampling``: the run's current sampling section (not the one saved with the checkpoint)."""
        from ..config import SamplingConfig
        from ..sampling.sde import sample_positions, template_batch

        s = SamplingConfig.model_validate(sampling)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        report_every = max(1, s.n_steps // 4)
        t0 = time.time()

        def progress(i, total):
            if i % report_every == 0 and label:
                print(f"[sample {label}] step {i}/{total} ({time.time() - t0:.0f}s)", flush=True)

        x = sample_positions(self.model, self.model.schedule, template_batch(z, n).to(self.device),
                             sampler=s.sampler, n_steps=s.n_steps, n_corrector=s.n_corrector, snr=s.snr,
                             final_denoise=s.final_denoise, generator=gen, progress=progress)
        return x.cpu().double().numpy().reshape(n, len(z), 3)


def sample_with_pool(pool: ActorPool, cfg, z: np.ndarray, seed: int, log: Callable[[str], None] = print) -> np.ndarray:
    """``cfg.sampling.n_samples`` molecules of composition ``z`` -> [n, len(z), 3]."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)
    sampling = s.model_dump(mode="json")

    def submit(actor, k):
        return actor.sample.remote(z, chunks[k], chunk_seed(seed, k), sampling,
                                   f"seed {seed} chunk {k + 1}/{len(chunks)}")
    return np.concatenate(pool.map_counted(chunks, submit, f"[sample] seed {seed}: molecules", log))
