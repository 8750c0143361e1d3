"""The UniGEM objective (Feng et al. 2025, Eqs. 2-5, as the authors' code computes it) and its two
baselines on the same model, one loss interface: ``objective(model, graphs, generator)``.

unigem: integer steps s in {0..T}; with oversampling rho, a fraction rho of each batch draws s from
    the growth phase {0..t_n} and the rest from the nucleation phase {t_n+1..T} (otherwise s is
    uniform on {0..T}). Per molecule:
        0.5 mean (eps_hat - eps)^2                          every step
      + w_h mean |type_out - onehot / 4|   (or cross-entropy)   growth phase only (or all steps)
      + w_c |prop_hat - (c - mean) / MAD|  (or squared)          growth phase only (or all steps)
joint (EDM): coordinates and onehot / 4 diffused together, s uniform, 0.5 mean squared error of
    both noises over all 3 + n_types dimensions per atom.
predictor: |prop_hat - (c - mean) / MAD| at s = 0 on clean coordinates with the types as input.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..data.batch import GraphBatch
from ..data.normalization import PropertyNormalizer
from ..diffusion.process import centred_noise, per_atom, remove_mean
from .heads import AtomTypesLoss, Head, HeadPass, PropertyLoss, head_losses, per_molecule_mean


@dataclass(frozen=True)
class UniGEMSettings:
    nucleation_step: int = 10              # t_n in steps of T
    n_steps: int = 1000                    # T
    oversample: Optional[float] = 0.5      # fraction of each batch from the growth phase; None = uniform s
    type_weight: float = 1.0
    prop_weight: float = 1.0
    predictive_at: str = "growth"          # "growth": type/property losses at s <= t_n only; "all": every s
    type_loss: str = "l1"                  # "l1" on onehot / 4 (the code), "ce" (cross-entropy)
    prop_loss: str = "l1"                  # "l1" (the code), "l2" (the paper's Eq. 4)

    def __post_init__(self):
        if not 0 <= self.nucleation_step < self.n_steps:
            raise ValueError(f"nucleation_step must lie in [0, {self.n_steps}), got {self.nucleation_step}")
        if self.oversample is not None and not 0 < self.oversample < 1:
            raise ValueError(f"oversample must be in (0, 1) or null, got {self.oversample}")
        for name, value, allowed in (("predictive_at", self.predictive_at, ("growth", "all")),
                                     ("type_loss", self.type_loss, ("l1", "ce")),
                                     ("prop_loss", self.prop_loss, ("l1", "l2"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def sample_steps(batch: int, s: UniGEMSettings, generator=None, device=None) -> torch.Tensor:
    """Integer diffusion steps [B]: oversampled (growth rows first) or uniform on {0..T}."""
    if s.oversample is None:
        return torch.randint(0, s.n_steps + 1, (batch,), generator=generator, device=device)
    n_growth = int(round(s.oversample * batch))
    growth = torch.randint(0, s.nucleation_step + 1, (n_growth,), generator=generator, device=device)
    nucleation = torch.randint(s.nucleation_step + 1, s.n_steps + 1, (batch - n_growth,), generator=generator,
                               device=device)
    return torch.cat([growth, nucleation])


def predictive_mask(steps: torch.Tensor, s: UniGEMSettings) -> torch.Tensor:
    """[B] float: 1 where the type and property losses are active."""
    if s.predictive_at == "all":
        return torch.ones_like(steps, dtype=torch.float32)
    return (steps <= s.nucleation_step).float()


class UniGEMObjective:
    """Denoising on the coordinates plus UniGEM's heads (``objectives.heads``: atom types and the
    property, weighted by type_weight / prop_weight, in the growth phase unless predictive_at all)."""

    def __init__(self, schedule, settings: UniGEMSettings, mode: str = "unigem",
                 normalizer: Optional[PropertyNormalizer] = None):
        self.schedule, self.settings, self.mode, self.normalizer = schedule, settings, mode, normalizer
        self.name = mode
        # a head the model lacks (predict_types false, no property) writes no output and adds nothing
        self.heads = [Head("atom_types", settings.type_weight, AtomTypesLoss(settings.type_loss)),
                      Head("property", settings.prop_weight, PropertyLoss(normalizer, settings.prop_loss))]

    def __call__(self, model, graphs: GraphBatch, generator: Optional[torch.Generator] = None,
                 steps: Optional[torch.Tensor] = None):
        """``steps`` [B] fixes the diffusion steps (tests, validation at chosen steps); otherwise drawn."""
        core = model.module if hasattr(model, "module") else model
        if self.mode == "predictor":
            t = torch.zeros(graphs.num_graphs, dtype=graphs.pos.dtype, device=graphs.pos.device)
            clean = graphs.with_pos(remove_mean(graphs.pos, graphs.batch, graphs.n_atoms))
            loss = self.heads[1].loss(HeadPass(graphs, model(clean, t), t, core)).mean()
            return loss, {"loss": loss.detach(), "prop": loss.detach()}
        s = self.settings
        if steps is None:
            steps = sample_steps(graphs.num_graphs, s, generator, graphs.pos.device) if self.mode == "unigem" else \
                torch.randint(0, s.n_steps + 1, (graphs.num_graphs,), generator=generator, device=graphs.pos.device)
        t = steps.to(graphs.pos.dtype) / s.n_steps
        alpha, sigma = self.schedule.alpha_sigma(t)
        x0 = remove_mean(graphs.pos, graphs.batch, graphs.n_atoms)
        eps = centred_noise(graphs, generator)
        xt = per_atom(alpha, graphs.batch) * x0 + per_atom(sigma, graphs.batch) * eps
        noisy = graphs.with_pos(xt)
        if self.mode == "joint":
            h0 = core.clean_type_features(graphs)
            eps_h = torch.randn(h0.shape, generator=generator, dtype=h0.dtype, device=h0.device)
            out = model(noisy, t, per_atom(alpha, graphs.batch) * h0 + per_atom(sigma, graphs.batch) * eps_h)
            both = torch.cat([(out["eps"] - eps) ** 2, (out["eps_types"] - eps_h) ** 2], -1)
            loss = 0.5 * per_molecule_mean(both, graphs).mean()
            return loss, {"loss": loss.detach()}
        out = model(noisy, t)
        coord = 0.5 * per_molecule_mean((out["eps"] - eps) ** 2, graphs)
        loss, logs = coord.mean(), {"coord": coord.mean().detach()}
        heads, head_logs = head_losses(self.heads, HeadPass(graphs, out, t, core), predictive_mask(steps, s))
        if heads is not None:
            loss = loss + heads
        logs.update(head_logs)
        logs["loss"] = loss.detach()
        return loss, logs
