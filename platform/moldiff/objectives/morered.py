"""MoreRed's losses (Kahouli et al. 2024, Eqs. 4-5 and the joint loss), one interface:
``objective(model, graphs, generator)``.

A time index k ~ U{0..T-1} per molecule (diffusion step s = k + 1), x_k = sqrt(abar_s) x_0 +
sqrt(1 - abar_s) eps with x_0 and eps centred per molecule, and

  noise:  L_DDPM = mean over atoms and components of (eps_hat(x_k, k) - eps)^2
  time:   L_time = mean over atoms of (g_i(x_k) - k / (T - 1))^2   (per-atom target, as the code)
  joint:  eta L_DDPM + (1 - eta) L_time, the noise head on the time head's own prediction.

The time loss is the ``diffusion_time`` head term (``objectives.heads``); ``heads`` adds others on
the same noisy pass (``objective.terms: [property]``: UniGEM's property head, so the network also
predicts a molecule's property from its unrelaxed structure), each with its own weight.

``clean_fraction`` shows that fraction of each batch's molecules as they are (x = x_0, no noise) with
time target 0 (their rows leave the noise loss: there is no noise to predict), so that the time head
learns to read a relaxed structure as step 0; the k draws are the paper's, k = 0 being step s = 1.
``t_max`` restricts training to k < t_max (relaxation inputs sit at small k; the dense t > 850
regime, where the paper's training blew up without clipping, is then never seen).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..data.batch import GraphBatch
from ..diffusion.process import centred_noise, per_atom, remove_mean
from .heads import DiffusionTimeLoss, Head, HeadPass, head_losses


class MoreRedObjective:
    def __init__(self, schedule, kind: str, eta: float = 0.9, t_max: Optional[int] = None,
                 heads: Sequence[Head] = (), clean_fraction: float = 0.0):
        if not 0 < eta < 1 and kind == "joint":
            raise ValueError(f"eta must lie in (0, 1), got {eta}")
        self.schedule, self.kind, self.eta = schedule, kind, eta
        self.t_max = schedule.n_steps if t_max is None else min(int(t_max), schedule.n_steps)
        self.name = f"morered_{kind}"
        if not 0 <= clean_fraction < 1:
            raise ValueError(f"clean_fraction must lie in [0, 1), got {clean_fraction}")
        self.clean_fraction = clean_fraction
        time_weight = 1.0 if kind == "time" else 1 - eta
        self.heads = [Head("diffusion_time", time_weight, DiffusionTimeLoss()), *heads]

    def time_target(self, k: torch.Tensor) -> torch.Tensor:
        return k.float() / (self.schedule.n_steps - 1)

    def __call__(self, model, graphs: GraphBatch, generator: Optional[torch.Generator] = None,
                 k: Optional[torch.Tensor] = None):
        device = graphs.pos.device
        if k is None:
            k = torch.randint(0, self.t_max, (graphs.num_graphs,), generator=generator, device=device)
        abar = self.schedule.alpha2.to(device=device)[k + 1].to(graphs.pos.dtype)
        clean = None
        if self.clean_fraction > 0:
            # molecules shown as they are (the DFT minimum), time target 0: what "relaxed" reads as
            clean = torch.rand(graphs.num_graphs, generator=generator, device=device) < self.clean_fraction
            abar = torch.where(clean, torch.ones_like(abar), abar)
        x0 = remove_mean(graphs.pos, graphs.batch, graphs.n_atoms)
        eps = centred_noise(graphs, generator)
        xk = per_atom(abar.sqrt(), graphs.batch) * x0 + per_atom((1 - abar).sqrt(), graphs.batch) * eps
        out = model(graphs.with_pos(xk), k)
        logs, loss = {}, 0.0
        if "eps" in out:
            err = (out["eps"] - eps) ** 2
            if clean is None:
                ddpm = err.mean()
            else:           # a clean structure carries no noise to predict: its rows leave the noise loss
                noisy = (~clean).to(err.dtype)[graphs.batch].unsqueeze(-1)
                ddpm = (err * noisy).sum() / (noisy.sum() * 3).clamp(min=1)
            logs["ddpm"] = ddpm.detach()
            loss = ddpm if self.kind == "noise" else self.eta * ddpm
        core = model.module if hasattr(model, "module") else model
        target = self.time_target(k)
        if clean is not None:
            target = torch.where(clean, torch.zeros_like(target), target)
        heads, head_logs = head_losses(self.heads, HeadPass(graphs, out, target, core))
        if heads is not None:
            loss = loss + heads
        logs.update(head_logs)
        logs["loss"] = loss.detach()
        return loss, logs
