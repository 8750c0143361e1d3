"""Relaxation by reverse diffusion from a predicted time step (MoreRed, Kahouli et al. 2024), with
the printed algorithms' sign errors corrected (Ho et al.'s update, as the authors' code does):

    x <- (x - beta_s / sqrt(1 - abar_s) eps_hat(x, s)) / sqrt(alpha_s) + sigma_s z,
    alpha_s = abar_s / abar_{s-1},  beta_s = 1 - alpha_s,  sigma_s^2 = beta_s (1 - abar_{s-1}) / (1 - abar_s),

with z centred per molecule and sigma = 0 at the last step. Steps s = k + 1 for the time index
k in {0..T-1} that the time predictor estimates as round(mean over atoms of clamp(g, 0, 1) (T - 1)).

Samplers:
  itp   predict k once, then run the fixed schedule k, k - 1, ..., 0;
  as    re-predict k with the separate time network before every step (it may go back up);
  jt    the same with the joint network's own time head;
  ddpm  the fixed schedule from k = T - 1 (generation baseline).
A molecule stops when the step it took had k <= k_min (converged), when it reaches max_steps
(not converged), or when its positions become NaN/inf (failed, kept in place, never dropped).

``ContinuousRelaxer`` keeps a batch of ``slots`` molecules full: after every step it takes out the
molecules that stopped and pulls new ones from the queue, so one slow molecule never holds a
whole batch. Each molecule's reverse noise comes from its own generator (seeded by the run seed
and its position in the input), so results do not depend on batch composition or slot count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Protocol

import numpy as np
import torch

from ..data.batch import GraphBatch, from_arrays
from ..diffusion.process import remove_mean
from ..diffusion.schedules import PolynomialSchedule

SAMPLERS = ("itp", "as", "jt", "ddpm")


class RelaxationModel(Protocol):
    schedule: PolynomialSchedule

    def predict_index(self, graphs: GraphBatch) -> torch.Tensor:
        """[B] long: the estimated time index k of each molecule."""

    def noise(self, graphs: GraphBatch, k: torch.Tensor) -> torch.Tensor:
        """[N, 3]: eps_hat at time index k [B]."""

    def index_and_noise(self, graphs: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """jt only: (k [B], eps_hat [N, 3]) from one pass of the joint network."""


@dataclass(frozen=True)
class RelaxSettings:
    sampler: str = "itp"
    max_steps: int = 1000
    k_min: int = 0
    noise_scale: float = 1.0         # 0 = deterministic denoising steps

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.max_steps < 1 or self.k_min < 0:
            raise ValueError("max_steps must be >= 1 and k_min >= 0")


def step_coefficients(schedule: PolynomialSchedule, k: torch.Tensor):
    """Per-molecule (1 / sqrt(alpha_s), beta_s / sqrt(1 - abar_s), sigma_s) for s = k + 1, float64."""
    abar = schedule.alpha2.to(k.device)
    s = (k + 1).clamp(1, schedule.n_steps)
    # the last step (k = 0) goes to clean data: abar before it is 1, not the schedule's precision-
    # floored abar_0, so beta_1 = 1 - abar_1 (1.2e-5, as in MoreRed's code) and the step is Tweedie's x_0
    abar_s = abar[s]
    abar_p = torch.where(s == 1, torch.ones_like(abar_s), abar[s - 1])
    alpha = abar_s / abar_p
    beta = 1.0 - alpha
    sigma = torch.sqrt(beta * (1.0 - abar_p) / (1.0 - abar_s))
    sigma = torch.where(k == 0, torch.zeros_like(sigma), sigma)
    return 1.0 / torch.sqrt(alpha), beta / torch.sqrt(1.0 - abar_s), sigma


def reverse_step(x: torch.Tensor, eps: torch.Tensor, k: torch.Tensor, schedule: PolynomialSchedule,
                 graphs: GraphBatch, noise: torch.Tensor) -> torch.Tensor:
    """One corrected MoreRed / DDPM step for every molecule at its own index k [B]; ``noise`` [N, 3]."""
    inv_sqrt_alpha, eps_coef, sigma = (c.to(x.dtype)[graphs.batch].unsqueeze(-1) for c in step_coefficients(schedule, k))
    eps = remove_mean(eps, graphs.batch, graphs.n_atoms)
    noise = remove_mean(noise, graphs.batch, graphs.n_atoms)
    return (x - eps_coef * eps) * inv_sqrt_alpha + sigma * noise


@dataclass
class RelaxResult:
    index: int                       # position in the input stream
    z: np.ndarray
    pos: np.ndarray                  # final positions (the last finite ones for a failed molecule)
    n_steps: int
    converged: bool                  # stopped by the k <= k_min rule
    failed: str = ""                 # "" | "nonfinite" | "step_cap"
    first_index: int = -1            # the first predicted k (itp's start; -1 for ddpm)
    k_trace: list[int] = field(default_factory=list)


@dataclass
class _Slot:
    index: int
    z: np.ndarray
    pos: torch.Tensor
    generator: torch.Generator
    steps: int = 0
    k0: int = -1
    trace: list[int] = field(default_factory=list)


def molecule_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index, 11]).generate_state(1)[0]))


class ContinuousRelaxer:
    def __init__(self, model: RelaxationModel, settings: RelaxSettings, slots: int = 128, seed: int = 0,
                 keep_trace: bool = False):
        self.model, self.settings, self.slots, self.seed, self.keep_trace = model, settings, slots, seed, keep_trace
        self.model_steps = 0          # network calls, for throughput accounting

    def _batch(self, active: list[_Slot]) -> GraphBatch:
        z = np.concatenate([s.z for s in active])
        pos = torch.cat([s.pos for s in active])
        return from_arrays(z, pos.numpy(), np.array([len(s.z) for s in active]), dtype=pos.dtype)

    def _step_inputs(self, graphs: GraphBatch, active: list[_Slot]) -> tuple[torch.Tensor, torch.Tensor]:
        """(k [B], eps_hat [N, 3]) for this step, by the sampler's rule."""
        T, sampler, model = self.model.schedule.n_steps, self.settings.sampler, self.model
        if sampler == "jt":
            return model.index_and_noise(graphs)
        if sampler == "ddpm":
            k = torch.tensor([T - 1 - s.steps for s in active])
        elif sampler == "itp":
            need = [i for i, s in enumerate(active) if s.k0 < 0]
            if need:
                predicted = model.predict_index(graphs.select(torch.tensor(need)))
                for i, kk in zip(need, predicted.tolist()):
                    active[i].k0 = int(kk)
            k = torch.tensor([max(s.k0 - s.steps, 0) for s in active])
        else:
            k = model.predict_index(graphs).long()
        return k, model.noise(graphs, k)

    def relax(self, molecules: Iterable[tuple[np.ndarray, np.ndarray]],
              keys: Optional[Iterable[int]] = None) -> Iterator[RelaxResult]:
        """``molecules``: (z [n], pos [n, 3]) each, centred or not (they are centred here). Yields one
        result per input, in the order the molecules finish. ``keys`` (one int per molecule) seed the
        molecules' noise instead of their positions in the stream (stable across batches and runs)."""
        stream = iter(enumerate(molecules))
        keys = iter(keys) if keys is not None else None
        active: list[_Slot] = []
        exhausted = False
        s = self.settings
        while True:
            while not exhausted and len(active) < self.slots:
                try:
                    i, (z, pos) = next(stream)
                except StopIteration:
                    exhausted = True
                    break
                p = torch.as_tensor(np.array(pos, dtype=np.float64))
                key = next(keys) if keys is not None else i
                active.append(_Slot(i, np.asarray(z), p - p.mean(0), molecule_generator(self.seed, key)))
            if not active:
                return
            graphs = self._batch(active)
            with torch.no_grad():
                k, eps = self._step_inputs(graphs, active)
                for slot, kk in zip(active, k.tolist()):
                    if slot.k0 < 0:
                        slot.k0 = int(kk)
                self.model_steps += 1
                noise = torch.cat([torch.randn(len(slot.z), 3, generator=slot.generator, dtype=graphs.pos.dtype)
                                   for slot in active]) * s.noise_scale
                x = reverse_step(graphs.pos, eps, k, self.model.schedule, graphs, noise)
            bounds = np.concatenate([[0], np.cumsum([len(slot.z) for slot in active])])
            still = []
            for j, slot in enumerate(active):
                new = x[bounds[j]:bounds[j + 1]]
                slot.steps += 1
                kj = int(k[j])
                if self.keep_trace:
                    slot.trace.append(kj)
                finite = bool(torch.isfinite(new).all())
                if finite:
                    slot.pos = new
                done = (not finite) or kj <= s.k_min or slot.steps >= s.max_steps
                if not done:
                    still.append(slot)
                    continue
                converged = finite and kj <= s.k_min
                failed = "nonfinite" if not finite else ("" if converged else "step_cap")
                yield RelaxResult(slot.index, slot.z, slot.pos.numpy(), slot.steps, converged, failed,
                                  -1 if s.sampler == "ddpm" else slot.k0, slot.trace)
            active = still
