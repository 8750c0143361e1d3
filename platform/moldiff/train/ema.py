"""Exponential moving average of the weights (what the samplers use by default)."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        # warm-up: early on the average forgets faster, so it does not drag the random initial weights along
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        shadow, current = [], []
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                shadow.append(self.shadow[k])
                current.append(v.detach())
            else:
                self.shadow[k].copy_(v)
        if shadow:                 # one fused update of all floating-point tensors (few kernels on a GPU)
            torch._foreach_lerp_(shadow, current, 1.0 - decay)

    def state_dict(self) -> dict:
        return self.shadow

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}
