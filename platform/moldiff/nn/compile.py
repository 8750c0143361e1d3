"""``torch.compile`` of a model's message-passing blocks for sampling and relaxation.

The blocks are where the time goes and where eager PyTorch wastes it: a PaiNN message or an EGNN
layer is a chain of gathers, elementwise products and a scatter-add over [E, F] or [E, 3, F] edge
tensors, each of which makes one pass over memory in eager mode. Inductor fuses each block's chain
into one loop (on CPUs as vectorised C++). Measured on this machine (one thread, float32;
``benchmarks/throughput.py``): a QM9 PaiNN forward 3-4 x faster, an LJ-13 EGNN forward 2 x.

Only blocks whose class sets ``compile_unit = True`` are compiled, each on its own with dynamic
shapes (molecule and edge counts change every step of continuous batching, so one graph serves
every batch). Edge building stays eager: it reads tensor values (cutoffs), which would break the
graph. Inference and first-order gradients only (sampling, relaxation, simulation): torch.compile
has no double backward, so training never compiles.

A block that fails to compile (no C++ compiler, an unsupported op) falls back to eager mode with
one warning naming the block and the error; the results are the same, only slower.

Compiling costs each process some seconds (10-30 s on this machine's cores for a PaiNN or EGNN,
less once Inductor's on-disk cache holds the kernels), so ``compile: auto`` (the default of
``sampling.compile`` and ``relaxation.compile``) compiles only where an actor has enough work for
it to pay: :data:`AUTO_MIN_CALLS` molecule network calls (a molecule in one forward pass).
"""
from __future__ import annotations

import warnings

from torch import nn


# eager, a molecule network call costs ~0.1-2 ms here and compiling saves half or more of it, so
# 200k calls (a few hundred molecules through a few hundred steps) repay ~30 s of compilation
AUTO_MIN_CALLS = 200_000


def compile_wanted(setting, molecule_calls_per_actor: float | None) -> bool:
    """``setting``: true, false or "auto" (compile when an actor makes at least
    :data:`AUTO_MIN_CALLS` molecule network calls; an unknown amount of work: no)."""
    if setting == "auto":
        return molecule_calls_per_actor is not None and molecule_calls_per_actor >= AUTO_MIN_CALLS
    return bool(setting)


class _Guarded:
    """``forward`` of one block: the compiled function until it fails once, then eager."""

    def __init__(self, module: nn.Module):
        import torch

        self.eager = module.forward
        self.compiled = torch.compile(module.forward, dynamic=True)
        self.name = type(module).__name__

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:     # compilation errors come from several torch modules
                warnings.warn(f"torch.compile of {self.name} failed ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); running it eagerly",
                              RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_blocks(model: nn.Module) -> int:
    """Compile every ``compile_unit`` block of ``model`` in place; returns how many. Idempotent."""
    count = 0
    for module in model.modules():
        if getattr(type(module), "compile_unit", False) and not isinstance(module.forward, _Guarded):
            module.forward = _Guarded(module)
            count += 1
    return count


def uncompiled(model: nn.Module) -> nn.Module:
    """Undo :func:`compile_blocks` (e.g. before training or saving a model again)."""
    for module in model.modules():
        if isinstance(module.__dict__.get("forward"), _Guarded):
            del module.forward
    return model
