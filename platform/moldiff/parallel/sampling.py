"""PC / EM sampling of fixed-composition molecules in a pool of actors (``parallel.pool``).

Work is cut into chunks of ``sampling.batch_size`` molecules; chunk k of seed s always uses the
generator seeded by (s, k), so the samples do not depend on how many actors drew them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .partial import PartialResults
from .pool import ActorPool, ModelWorker, chunk_seed, chunk_sizes


class SamplerWorker(ModelWorker):
    """Holds one model; ``sample`` draws a chunk of fixed-composition molecules; ``simulate``
    (``ModelWorker``) runs Langevin chains of them as flat 3n-vectors."""

    def flat_model(self, z=None):
        from ..models.flat import FlatMolecules
        return FlatMolecules(self.model, z), 1.0

    def sample(self, z: np.ndarray, n: int, seed: int, sampling: dict, label: str = "",
               oracle: Optional["ExactScore"] = None) -> np.ndarray:
        """``sampling``: the run's current sampling section (not the one saved with the checkpoint);
        ``oracle``: the exact score used inside the window with ``sampling.window.oracle``."""
        from ..config import SamplingConfig
        from ..sampling.sde import WindowRefinement, sample_positions, template_batch

        s = SamplingConfig.model_validate(sampling)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        report_every = max(1, s.n_steps // 4)
        t0 = time.time()

        def progress(i, total):
            if i % report_every == 0 and label:
                print(f"[sample {label}] step {i}/{total} ({time.time() - t0:.0f}s)", flush=True)

        w = s.window
        window = WindowRefinement(w.t_window, w.correctors, w.langevin_steps, w.langevin_dt,
                                  oracle if w.oracle else None)
        if w.oracle and oracle is None:
            raise ValueError("sampling.window.oracle needs the data's exact score (an analytic potential)")
        x = sample_positions(self.model, self.model.schedule, template_batch(z, n).to(self.device),
                             sampler=s.sampler, n_steps=s.n_steps, n_corrector=s.n_corrector, snr=s.snr,
                             final_denoise=s.final_denoise, generator=gen, progress=progress,
                             grid=s.time_grid, grid_rho=s.grid_rho, window=window)
        return x.cpu().double().numpy().reshape(n, len(z), 3)


@dataclass(frozen=True)
class ExactScore:
    """A potential's exact score F(x) / kT on a batch of molecules of one composition (positions
    [B n, 3] -> [B n, 3]): the sampler's oracle inside the force window. Picklable, so it travels
    to the actors."""
    potential: Any                       # energy_and_forces(pos [..., n, 3]) -> (energy, forces)
    kT: float
    n_atoms: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        pos = x.reshape(-1, self.n_atoms, 3).to(torch.float64)
        _, forces = self.potential.energy_and_forces(pos)
        return (forces / self.kT).reshape(x.shape).to(x.dtype)


def sample_with_pool(pool: ActorPool, cfg, z: np.ndarray, seed: int, log: Callable[[str], None] = print,
                     oracle: Optional[ExactScore] = None, partial: Optional[PartialResults] = None) -> np.ndarray:
    """``cfg.sampling.n_samples`` molecules of composition ``z`` -> [n, len(z), 3]; ``partial``:
    where chunks are kept as they land (and found again after a run cut short)."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)
    sampling = s.model_dump(mode="json")

    def submit(actor, k):
        return actor.sample.remote(z, chunks[k], chunk_seed(seed, k), sampling,
                                   f"seed {seed} chunk {k + 1}/{len(chunks)}", oracle)
    return np.concatenate(pool.map_counted(chunks, submit, f"[sample] seed {seed}: molecules", log, partial))
