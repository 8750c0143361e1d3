"""The one actor pattern of sampling, simulation and generation: a pool of actors that each load a
checkpoint's model once, kept for every seed of a stage, with chunks of work handed to whichever
actor is free and progress reported as chunks land. (Relaxation streams through Ray Data instead:
``moldiff.relaxation.pipeline``.)

Chunk k of seed s always uses the generator seeded by (s, k) (:func:`chunk_seed`), so results do
not depend on how many actors made them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import numpy as np

from ..accelerator import actor_options, describe, device_record, local_device, record_stage_devices


def chunk_sizes(n: int, batch: int) -> list[int]:
    """``n`` items cut into chunks of at most ``batch``."""
    return [min(batch, n - i) for i in range(0, n, batch)]


def chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, chunk, 7]).generate_state(1)[0])


class ModelWorker:
    """An actor that loads a checkpoint's model once, onto its GPU with ``ray.use_gpu`` (an error
    if it sees none), else the CPU. Subclasses add the methods a stage calls."""

    def __init__(self, checkpoint_dir: str, use_ema: bool, torch_threads: int, use_gpu: bool,
                 plugins: dict | None = None, compile: bool = False):
        import torch

        from ..plugins import install
        from ..train.checkpoint import load_model

        install(plugins)                  # objectives registered outside the package, before the config is read
        torch.set_num_threads(torch_threads)
        self.device = local_device(use_gpu)
        self.model, self.cfg, _ = load_model(checkpoint_dir, use_ema=use_ema)
        self.model.to(self.device)
        compiled = ""
        if compile:
            from ..nn.compile import compile_blocks
            compiled = f", {compile_blocks(self.model)} blocks compiled"
        print(f"[{type(self).__name__}] model on {describe(device_record(self.device))}{compiled}", flush=True)

    def device_record(self) -> dict:
        return device_record(self.device)

    def flat_model(self, z=None):
        """(model on flat states x [B, D], scale): what Langevin differentiates. The model's states
        are the data's divided by ``scale``. Workers of molecule models override it."""
        raise NotImplementedError(f"{type(self).__name__} does not simulate")

    def simulate(self, starts, settings: dict, kT: float, t_sim: float, seed: int, out_dir: str, label: str,
                 z=None):
        """Langevin in the data's units with F(x) = kT s(x / scale, t_sim) / scale from ``starts``
        [chains, D], on this actor's device (chains, noise and forces stay there; frames are
        written to ``out_dir`` block by block as they are made, and returned [n_frames, chains, D])."""
        from pathlib import Path

        import torch

        from ..atomic import write_file
        from ..sampling.langevin import LangevinSettings, langevin
        from ..sampling.vector import learned_forces

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        def save(frames):
            def to(tmp):
                with open(tmp, "wb") as fh:          # a handle: np.save would append .npy to the temp name
                    np.save(fh, frames)
            return to

        def write(first, frames):
            write_file(out / f"block_{first:08d}.npy", save(frames))

        model, scale = self.flat_model(z)
        s = LangevinSettings(kT=kT, **settings)
        forces = learned_forces(model, kT, t_sim, scale)
        starts = torch.as_tensor(starts, dtype=torch.float64, device=self.device)
        return langevin(forces, starts, s, seed, on_frames=write,
                        frames_per_call=max(1, s.n_frames // 10), progress=lambda m: print(m, flush=True), label=label)


class ActorPool:
    """Actors holding one model each; :meth:`map` spreads chunks over them, one chunk per actor at
    a time, and returns the results in chunk order."""

    def __init__(self, actors: list):
        self.actors = actors

    def __len__(self) -> int:
        return len(self.actors)

    def map(self, submit: Callable[[Any, int], Any], n_chunks: int, on_done: Callable[[int], None] = lambda k: None,
            actors: list | None = None, poll: Optional[Callable[[], None]] = None, poll_every_s: float = 2.0) -> list:
        """``submit(actor, k)`` starts chunk k on ``actor`` and returns its object ref;
        ``on_done(k)`` runs as each chunk lands. ``actors``: a subset of the pool to use.
        ``poll()`` runs every ``poll_every_s`` while chunks are out (progress of long chunks)."""
        import ray

        actors = self.actors if actors is None else actors
        pending: dict = {}                      # ref -> (actor, chunk)
        refs: list = [None] * n_chunks
        next_chunk = 0
        while next_chunk < n_chunks or pending:
            busy = {actor for actor, _ in pending.values()}
            for actor in actors:
                if next_chunk < n_chunks and actor not in busy:
                    ref = submit(actor, next_chunk)
                    pending[ref], refs[next_chunk] = (actor, next_chunk), ref
                    busy.add(actor)
                    next_chunk += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if poll is None else poll_every_s)
            if poll is not None:
                poll()
            for ref in ready:
                on_done(pending.pop(ref)[1])
        return ray.get(refs)

    def map_counted(self, sizes: list[int], submit: Callable[[Any, int], Any], what: str,
                    log: Callable[[str], None]) -> list:
        """:meth:`map` over chunks of the given sizes, showing ``done/total what`` as they land
        (a bar on a terminal, log lines elsewhere: ``moldiff.progress``)."""
        from ..progress import Progress

        progress, done = Progress(what, sum(sizes), log), [0]

        def landed(k):
            done[0] += sizes[k]
            progress.update(done[0])
        try:
            return self.map(submit, len(sizes), landed)
        finally:
            progress.close()


def start_workers(cfg, worker: type, checkpoint_dir: str, n_actors: int, stage: str = "sample",
                  molecule_calls: float | None = None) -> list:
    """``n_actors`` ``worker`` actors, each asking for ``ray.gpus_per_actor`` of a GPU with
    ``ray.use_gpu``; the devices they hold are recorded in ``<run_dir>/devices.json`` under ``stage``.
    ``molecule_calls``: the stage's network calls times molecules, all actors together (for
    ``sampling.compile: auto``)."""
    import ray

    from ..nn.compile import compile_wanted

    r = cfg.ray
    compile = compile_wanted(cfg.sampling.compile, None if molecule_calls is None else molecule_calls / n_actors)
    Actor = ray.remote(**actor_options(r))(worker)
    from ..plugins import registered
    plugins = registered()
    actors = [Actor.remote(str(checkpoint_dir), cfg.sampling.use_ema, r.torch_threads, r.use_gpu, plugins,
                           compile) for _ in range(n_actors)]
    record_stage_devices(cfg.run_dir, stage, ray.get([a.device_record.remote() for a in actors]))
    return actors


@contextmanager
def model_pool(cfg, worker: type, checkpoint_dir: str, n_actors: int, stage: str = "sample",
               molecule_calls: float | None = None) -> Iterator[ActorPool]:
    """A pool of ``n_actors`` ``worker`` actors for one stage (every seed), killed when it ends."""
    import ray

    actors = start_workers(cfg, worker, checkpoint_dir, max(1, n_actors), stage, molecule_calls)
    try:
        yield ActorPool(actors)
    finally:
        for actor in actors:
            ray.kill(actor)
