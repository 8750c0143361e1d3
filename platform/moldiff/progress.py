"""Progress of long driver-side stages (sampling, generation, simulation): one updating bar (tqdm)
on a terminal, plain log lines elsewhere (CI, Ray job logs, a file), where a bar's carriage
returns would only be noise. ``MOLDIFF_PROGRESS=lines`` asks for lines on a terminal too."""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional


def interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("MOLDIFF_PROGRESS", "auto") != "lines"


class Progress:
    """``what``: the stage's label (``[sample] seed 0: molecules``); ``total``: how many items."""

    def __init__(self, what: str, total: int, log: Callable[[str], None], bar: Optional[bool] = None,
                 stream=None):
        self.what, self.total, self.log, self.done = what, total, log, 0
        self.started = time.time()
        self.bar = None
        if interactive() if bar is None else bar:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=what, file=stream or sys.stderr, leave=True, dynamic_ncols=True)

    def update(self, done: int) -> None:
        """``done`` items so far (a count, not an increment: pollers recount what is on disk)."""
        if done == self.done:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
        else:
            self.log(f"{self.what}: {done}/{self.total} ({time.time() - self.started:.0f}s)")
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.log(f"{self.what}: {self.done}/{self.total} ({time.time() - self.started:.0f}s)")   # kept in the log
