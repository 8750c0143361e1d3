"""Training logs that stay on the device until they are reported.

An objective returns ``logs``: detached 0-d tensors (a mean over the batch) or :class:`Masked`
pairs (a sum and a count over the part of the batch a value is defined on: a diffusion-time bin,
the molecules past the nucleation step). :class:`EpochLogs` adds them up on the device, step by
step, without moving anything to the host; ``means`` sums every rank's totals in one collective
and brings them to the host once, so a GPU never waits for the host inside an epoch.

Means are over samples: a binned value is the mean over all molecules that fell in its bin this
epoch, on every rank (not a mean of per-batch means).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..accelerator import all_reduce


class Masked(NamedTuple):
    total: torch.Tensor      # sum of the value over the samples it is defined on
    count: torch.Tensor      # how many samples that is (may be 0 in a batch)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> Masked:
    mask = mask.to(values.dtype)
    return Masked((values.detach() * mask).sum(), mask.sum())


def as_float(value) -> float:
    """A log value as a number on the host (for tests and one-off use; this syncs a GPU)."""
    if isinstance(value, Masked):
        return float(value.total) / max(float(value.count), 1.0)
    return float(value)


class EpochLogs:
    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, logs: dict) -> None:
        for key, value in logs.items():
            if isinstance(value, Masked):
                total, count = value.total, value.count
            else:
                total, count = value, None
            total = torch.as_tensor(total, device=self.device).detach().double()
            count = torch.ones((), device=self.device, dtype=torch.float64) if count is None else \
                torch.as_tensor(count, device=self.device).double()
            if key in self.totals:
                self.totals[key] = self.totals[key] + total
                self.counts[key] = self.counts[key] + count
            else:
                self.totals[key], self.counts[key] = total, count

    def means(self, world: int = 1) -> dict[str, float]:
        """Per key, the sum over ranks and steps divided by the count (keys never defined this
        epoch on any rank are left out). One collective and one host copy for all keys; every rank
        must log the same keys (objectives always emit every key, with count 0 where undefined)."""
        keys = sorted(self.totals)
        if not keys:
            return {}
        stacked = torch.stack([torch.stack([self.totals[k] for k in keys]), torch.stack([self.counts[k] for k in keys])])
        if world > 1:
            stacked = all_reduce(stacked, self.device)
        totals, counts = stacked.tolist()
        return {k: t / c for k, t, c in zip(keys, totals, counts) if c > 0}


class StepValues:
    """One logged scalar per step (the loss for TensorBoard's per-step curve), kept on the device
    and handed over once per epoch."""

    def __init__(self, every: int = 10):
        self.every = every
        self.steps: list[int] = []
        self.values: list[torch.Tensor] = []

    def add(self, step: int, value: torch.Tensor) -> None:
        if step % self.every == 0:
            self.steps.append(step)
            self.values.append(value.detach())

    def drain(self) -> list[tuple[int, float]]:
        values: Optional[list[float]] = torch.stack(self.values).tolist() if self.values else []
        out = list(zip(self.steps, values))
        self.steps, self.values = [], []
        return out
