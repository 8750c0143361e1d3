"""Molecule generation (UniGEM / EDM joint) in a pool of actors (``parallel.pool``). Chunk k of
seed s draws its atom counts and its noise from generators seeded by (s, k), so the molecules do
not depend on how many actors made them."""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch

from .partial import PartialResults
from .pool import ActorPool, ModelWorker, chunk_seed, chunk_sizes


class GeneratorWorker(ModelWorker):
    def generate(self, sizes: np.ndarray, seed: int, label: str = "") -> list[tuple[np.ndarray, np.ndarray]]:
        """Molecules with the given atom counts -> [(z [n], pos [n, 3])]."""
        from ..sampling.ddpm import ancestral_sample, empty_batch

        model, T = self.model, self.model.schedule.n_steps
        gen = torch.Generator(device=self.device).manual_seed(seed)
        graphs = empty_batch(sizes, device=self.device)
        t0 = time.time()

        def progress(i):
            if label and i % max(1, T // 4) == 0:
                print(f"[generate {label}] step {i}/{T} ({time.time() - t0:.0f}s)", flush=True)

        n_types = model.n_types if model.mode == "joint" else 0
        x0, out, h0 = ancestral_sample(model, model.schedule, graphs, gen, n_types, progress)
        z = model.decode_types(out, h0).cpu().numpy()
        pos = x0.cpu().double().numpy()
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [(z[a:b], pos[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def generate_with_pool(pool: ActorPool, cfg, sizes: np.ndarray, probs: np.ndarray, seed: int,
                       log: Callable[[str], None] = print,
                       partial: Optional[PartialResults] = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``cfg.sampling.n_samples`` molecules with atom counts drawn from (sizes, probs) (``partial``:
    as in ``parallel.sampling.sample_with_pool``)."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)
    counts = [np.random.default_rng(chunk_seed(seed, k)).choice(sizes, size=n, p=probs) for k, n in enumerate(chunks)]

    def submit(actor, k):
        return actor.generate.remote(counts[k], chunk_seed(seed, k), f"seed {seed} chunk {k + 1}/{len(chunks)}")
    out = pool.map_counted(chunks, submit, f"[sample] seed {seed}: molecules", log, partial)
    return [mol for chunk in out for mol in chunk]
