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
from .partial import PartialResults, decode_chunk, encode_chunk


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
        from ..train.checkpoint import checkpoint_digest

        self.model, self.cfg, _ = load_model(checkpoint_dir, use_ema=use_ema)
        self.checkpoint = checkpoint_digest(checkpoint_dir)
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
        written to ``out_dir`` block by block as they are made, and returned [n_frames, chains, D]).
        After each block the chains' state is saved beside it (``state.npz``): a run cut short
        continues from its last block, exactly as if never stopped."""
        import torch

        from .partial import PartialResults, digest
        from ..sampling.langevin import LangevinSettings, LangevinState, langevin
        from ..sampling.vector import learned_forces

        starts = np.asarray(starts, dtype=np.float64)
        out = PartialResults(out_dir, {"checkpoint": self.checkpoint, "settings": settings, "kT": kT, "t_sim": t_sim,
                                       "seed": seed, "starts": digest(starts)}, log=lambda m: print(m, flush=True))
        s = LangevinSettings(kT=kT, **settings)
        resume = _stored_langevin(out, s)
        if resume is not None:
            print(f"[{label}] [resume] continuing from frame {len(resume.frames)}/{s.n_frames} in {out.dir}", flush=True)

        def write(first, frames):
            def to(tmp):
                with open(tmp, "wb") as fh:          # a handle: np.save would append .npy to the temp name
                    np.save(fh, frames)
            out.write(f"block_{first:08d}.npy", to)

        def keep(state: LangevinState):
            out.save_arrays(LANGEVIN_STATE, step=np.array(state.step), x=state.x, v=state.v, rng=state.rng)

        model, scale = self.flat_model(z)
        forces = learned_forces(model, kT, t_sim, scale)
        return langevin(forces, torch.as_tensor(starts, device=self.device), s, seed, on_frames=write,
                        frames_per_call=max(1, s.n_frames // 10), progress=lambda m: print(m, flush=True), label=label,
                        on_state=keep, resume=resume)


LANGEVIN_STATE = "state.npz"


def _stored_langevin(out: PartialResults, settings) -> Optional["LangevinState"]:
    """The state and frames a simulation cut short left in ``out``, or None to start afresh. The
    state is written after its block, so blocks past it (written, then killed) are made again."""
    from ..sampling.langevin import LangevinState

    if LANGEVIN_STATE not in out.names():
        return None
    state = out.load_arrays(LANGEVIN_STATE)
    step = int(state["step"])
    n_saved = (step - settings.burn_in) // settings.save_every
    blocks, have = [], 0
    for name in out.names("block_*.npy"):
        if int(name[len("block_"):-len(".npy")]) != have or have >= n_saved:
            break
        blocks.append(np.load(out.path(name), allow_pickle=False))
        have += len(blocks[-1])
    if have != n_saved:            # blocks missing: the state cannot be continued
        return None
    return LangevinState(step, state["x"], state["v"], state["rng"], np.concatenate(blocks))


class ActorPool:
    """Actors holding one model each; :meth:`map` spreads chunks over them, one chunk per actor at
    a time, and returns the results in chunk order."""

    def __init__(self, actors: list, checkpoint: str = ""):
        self.actors = actors
        self.checkpoint = checkpoint      # the model's digest: what its partial results are valid for

    def __len__(self) -> int:
        return len(self.actors)

    def map(self, submit: Callable[[Any, int], Any], n_chunks: int,
            on_done: Callable[[int, Any], None] = lambda k, result: None, actors: list | None = None,
            poll: Optional[Callable[[], None]] = None, poll_every_s: float = 2.0) -> list:
        """``submit(actor, k)`` starts chunk k on ``actor`` and returns its object ref;
        ``on_done(k, result)`` runs as each chunk lands. ``actors``: a subset of the pool to use.
        ``poll()`` runs every ``poll_every_s`` while chunks are out (progress of long chunks)."""
        import ray

        actors = self.actors if actors is None else actors
        pending: dict = {}                      # ref -> (actor, chunk)
        results: list = [None] * n_chunks
        next_chunk = 0
        while next_chunk < n_chunks or pending:
            busy = {actor for actor, _ in pending.values()}
            for actor in actors:
                if next_chunk < n_chunks and actor not in busy:
                    ref = submit(actor, next_chunk)
                    pending[ref] = (actor, next_chunk)
                    busy.add(actor)
                    next_chunk += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if poll is None else poll_every_s)
            if poll is not None:
                poll()
            for ref in ready:
                k = pending.pop(ref)[1]
                results[k] = ray.get(ref)
                on_done(k, results[k])
        return results

    def map_counted(self, sizes: list[int], submit: Callable[[Any, int], Any], what: str,
                    log: Callable[[str], None], partial: Optional[PartialResults] = None) -> list:
        """:meth:`map` over chunks of the given sizes, showing ``done/total what`` as they land
        (a bar on a terminal, log lines elsewhere: ``moldiff.progress``). ``partial``: each chunk
        is stored there as it lands, and chunks already there (a run cut short) are not redone."""
        from ..progress import Progress

        results = [None] * len(sizes)
        stored = set(partial.names("chunk_*.npz")) if partial is not None else set()
        for k in range(len(sizes)):
            if _chunk_name(k) in stored:
                results[k] = decode_chunk(partial.load_arrays(_chunk_name(k)))
        todo = [k for k in range(len(sizes)) if results[k] is None]
        done = [sum(sizes) - sum(sizes[k] for k in todo)]
        if done[0]:
            log(f"[resume] {what}: {done[0]}/{sum(sizes)} from {partial.dir} (a run cut short); "
                f"{len(todo)} of {len(sizes)} chunk(s) to go")
        progress = Progress(what, sum(sizes), log)
        progress.update(done[0])

        def landed(i, result):
            k = todo[i]
            results[k] = result
            if partial is not None:
                partial.save_arrays(_chunk_name(k), **encode_chunk(result))
            done[0] += sizes[k]
            progress.update(done[0])
        try:
            self.map(lambda actor, i: submit(actor, todo[i]), len(todo), landed)
        finally:
            progress.close()
        return results


def _chunk_name(k: int) -> str:
    return f"chunk_{k:06d}.npz"


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

    from ..train.checkpoint import checkpoint_digest

    actors = start_workers(cfg, worker, checkpoint_dir, max(1, n_actors), stage, molecule_calls)
    try:
        yield ActorPool(actors, checkpoint_digest(checkpoint_dir))
    finally:
        for actor in actors:
            ray.kill(actor)
