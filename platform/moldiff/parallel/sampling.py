"""Sampling in parallel Ray actors that each load the checkpoint once.

Work is cut into chunks of ``sampling.batch_size`` molecules; chunk k of seed s always uses the
generator seeded by (s, k), so the samples do not depend on how many actors drew them.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import ray
import torch

from ..accelerator import actor_options, describe, device_record, local_device, record_stage_devices
from ..config import ExperimentConfig
from .pool import chunk_sizes, map_chunks


def chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, chunk, 7]).generate_state(1)[0])


class ModelWorker:
    """An actor that loads a checkpoint's model once, onto its GPU with ``ray.use_gpu`` (an error
    if it sees none), else the CPU."""

    def __init__(self, checkpoint_dir: str, use_ema: bool, torch_threads: int, use_gpu: bool):
        from ..train.checkpoint import load_model

        torch.set_num_threads(torch_threads)
        self.device = local_device(use_gpu)
        self.model, self.cfg, _ = load_model(checkpoint_dir, use_ema=use_ema)
        self.model.to(self.device)
        print(f"[{type(self).__name__}] model on {describe(device_record(self.device))}", flush=True)

    def device_record(self) -> dict:
        return device_record(self.device)


def start_workers(cfg: ExperimentConfig, worker: type, checkpoint_dir: str, n_actors: int,
                  stage: str = "sample") -> list:
    """``n_actors`` ``worker`` actors, each asking for
    ``ray.gpus_per_actor`` of a GPU with ``ray.use_gpu``; the devices they hold are recorded in
    ``<run_dir>/devices.json`` under ``stage``."""
    r = cfg.ray
    Actor = ray.remote(**actor_options(r))(worker)
    actors = [Actor.remote(str(checkpoint_dir), cfg.sampling.use_ema, r.torch_threads, r.use_gpu)
              for _ in range(n_actors)]
    record_stage_devices(cfg.run_dir, stage, ray.get([a.device_record.remote() for a in actors]))
    return actors


class SamplerWorker(ModelWorker):
    """Holds one model; ``sample`` draws a chunk of fixed-composition molecules."""

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


def sample_with_actors(cfg: ExperimentConfig, checkpoint_dir: str, z: np.ndarray, seed: int,
                       log: Callable[[str], None] = print) -> np.ndarray:
    """``cfg.sampling.n_samples`` molecules of composition ``z`` -> [n, len(z), 3]."""
    s = cfg.sampling
    chunks = chunk_sizes(s.n_samples, s.batch_size)
    actors = start_workers(cfg, SamplerWorker, checkpoint_dir, min(cfg.ray.num_sampling_actors, len(chunks)))
    sampling = s.model_dump(mode="json")
    t0 = time.time()
    done = [0]

    def submit(actor, k):
        return actor.sample.remote(z, chunks[k], chunk_seed(seed, k), sampling, f"seed {seed} chunk {k + 1}/{len(chunks)}")

    def landed(k):
        done[0] += chunks[k]
        log(f"[sample] seed {seed}: {done[0]}/{s.n_samples} molecules ({time.time() - t0:.0f}s)")

    out = map_chunks(actors, submit, len(chunks), landed)
    for actor in actors:
        ray.kill(actor)
    return np.concatenate(out)
