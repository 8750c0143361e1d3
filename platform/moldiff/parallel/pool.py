"""Spread chunks of work over a fixed set of Ray actors, one chunk per actor at a time."""
from __future__ import annotations

from typing import Any, Callable

import ray


def chunk_sizes(n: int, batch: int) -> list[int]:
    """``n`` items cut into chunks of at most ``batch``."""
    return [min(batch, n - i) for i in range(0, n, batch)]


def map_chunks(actors: list, submit: Callable[[Any, int], Any], n_chunks: int,
               on_done: Callable[[int], None] = lambda k: None) -> list:
    """``submit(actor, k)`` starts chunk k on ``actor`` and returns its object ref; the results
    come back in chunk order, whichever actor made them. ``on_done(k)`` runs as each chunk lands."""
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
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            on_done(pending.pop(ref)[1])
    return ray.get(refs)
