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
With a threshold k_min > 0 a converged molecule has just taken a stochastic step and still carries
noise of the level it reached; ``final_denoise`` then maps it to its Tweedie estimate
x0 = (x - sqrt(1 - abar_s) eps_hat(x, k)) / sqrt(abar_s) at the index k the sampler's own rule
gives next (s = k + 1; one more network call, counted in its steps). ``noise_scale`` 0 makes every
step noise-free (the posterior mean: deterministic relaxation).

``ContinuousRelaxer`` keeps a batch of ``slots`` molecules full: after every step it takes out the
molecules that stopped and pulls new ones from the queue, so one slow molecule never holds a
whole batch. Each molecule's reverse noise comes from its own generator (seeded by the run seed
and its position in the input), so results do not depend on batch composition or slot count.

The batch lives on the model's device in the model's dtype (float32 by default in the pipeline,
float64 as an option). Per step the host sees one small tensor (each molecule's index, finiteness
and stop flag) and, when some stop, their positions; there is no per-molecule wait for the device.
The noise is drawn on the host in float64 from the per-molecule generators and copied over once
per step, so a molecule gets the same noise on any device and in either precision.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Protocol

import numpy as np
import torch

from ..data.batch import GraphBatch, atom_selection, from_arrays
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
    final_denoise: bool = False      # Tweedie estimate of x0 for molecules that stop at k > 0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.max_steps < 1 or self.k_min < 0:
            raise ValueError("max_steps must be >= 1 and k_min >= 0")
        if self.noise_scale < 0:
            raise ValueError(f"noise_scale must be >= 0, got {self.noise_scale}")


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


class StepTable:
    """``step_coefficients`` for every index k, worked out once (float64) and kept on the device."""

    def __init__(self, schedule: PolynomialSchedule, dtype: torch.dtype, device):
        k = torch.arange(schedule.n_steps)
        self.table = torch.stack(step_coefficients(schedule, k)).to(device=device, dtype=dtype)   # [3, T]

    def __call__(self, k: torch.Tensor):
        return tuple(self.table[:, k.clamp(0, self.table.shape[1] - 1)])


def tweedie(x: torch.Tensor, eps: torch.Tensor, k: torch.Tensor, schedule: PolynomialSchedule,
            graphs: GraphBatch) -> torch.Tensor:
    """x0 = (x - sqrt(1 - abar_s) eps) / sqrt(abar_s), s = k + 1, per molecule."""
    abar = schedule.alpha2.to(device=x.device, dtype=torch.float64)[(k + 1).clamp(1, schedule.n_steps)]
    a = abar.sqrt().to(x.dtype)[graphs.batch].unsqueeze(-1)
    b = (1.0 - abar).sqrt().to(x.dtype)[graphs.batch].unsqueeze(-1)
    return (x - b * remove_mean(eps, graphs.batch, graphs.n_atoms)) / a


def reverse_step(x: torch.Tensor, eps: torch.Tensor, k: torch.Tensor, schedule: PolynomialSchedule,
                 graphs: GraphBatch, noise: torch.Tensor, table: Optional[StepTable] = None) -> torch.Tensor:
    """One corrected MoreRed / DDPM step for every molecule at its own index k [B]; ``noise`` [N, 3]."""
    coefficients = table(k) if table is not None else step_coefficients(schedule, k)
    inv_sqrt_alpha, eps_coef, sigma = (c.to(x.dtype)[graphs.batch].unsqueeze(-1) for c in coefficients)
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
class _Slot:                         # what the host keeps of a molecule in flight
    index: int
    z: np.ndarray
    generator: torch.Generator
    trace: list[int] = field(default_factory=list)


def molecule_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, index, 11]).generate_state(1)[0]))


def model_dtype_device(model, default_dtype=torch.float64) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of a model's weights (stubs without weights: float64 on the CPU)."""
    params = model.parameters() if hasattr(model, "parameters") else iter(())
    p = next(iter(params), None)
    return (p.dtype, p.device) if p is not None else (default_dtype, torch.device("cpu"))


def concat_batches(a: Optional[GraphBatch], b: GraphBatch) -> GraphBatch:
    """Molecules of ``a`` then ``b`` (positions and atoms only: what relaxation needs)."""
    if a is None or a.num_graphs == 0:
        return b
    fixed = a.fixed_size if a.fixed_size is not None and a.fixed_size == b.fixed_size else None
    return GraphBatch(z=torch.cat([a.z, b.z]), pos=torch.cat([a.pos, b.pos]),
                      batch=torch.cat([a.batch, b.batch + a.num_graphs]), n_atoms=torch.cat([a.n_atoms, b.n_atoms]),
                      fixed_size=fixed)


class ContinuousRelaxer:
    def __init__(self, model: RelaxationModel, settings: RelaxSettings, slots: int = 128, seed: int = 0,
                 keep_trace: bool = False):
        self.model, self.settings, self.slots, self.seed, self.keep_trace = model, settings, slots, seed, keep_trace
        self.dtype, self.device = model_dtype_device(model)
        self.table = StepTable(model.schedule, self.dtype, self.device)
        self.model_steps = 0          # network calls, for throughput accounting

    def _step_inputs(self, graphs: GraphBatch, k0: torch.Tensor, steps: torch.Tensor):
        """(k [B], eps_hat [N, 3]) for this step, by the sampler's rule (all on the device)."""
        T, sampler, model = self.model.schedule.n_steps, self.settings.sampler, self.model
        if sampler == "jt":
            k, eps = model.index_and_noise(graphs)
            return k.to(self.device).long(), eps
        if sampler == "ddpm":
            k = T - 1 - steps
        elif sampler == "itp":
            k = (k0 - steps).clamp(min=0)
        else:
            k = model.predict_index(graphs).to(self.device).long()
        return k, model.noise(graphs, k)

    def _denoised(self, graphs: GraphBatch, k0: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Positions [N, 3]: each molecule's Tweedie estimate at the index the sampler would use
        next (one network call)."""
        with torch.no_grad():
            k, eps = self._step_inputs(graphs, k0, steps)
            self.model_steps += 1
            return tweedie(graphs.pos, eps, k, self.model.schedule, graphs)

    def _enter(self, new: list[tuple[int, np.ndarray, np.ndarray, int]]):
        """A batch of new molecules on the device, their host slots and their first k (itp
        predicts it once, now; the others learn it at their first step: -1)."""
        z = np.concatenate([m[1] for m in new])
        centred = [torch.from_numpy(m[2]) - torch.from_numpy(m[2]).mean(0) for m in new]
        graphs = from_arrays(z, torch.cat(centred).numpy(), np.array([len(m[1]) for m in new]),
                             dtype=self.dtype).to(self.device)
        slots = [_Slot(i, z_i, molecule_generator(self.seed, key)) for i, z_i, _, key in new]
        if self.settings.sampler == "itp":
            k0 = self.model.predict_index(graphs).to(self.device).long()
        else:
            k0 = torch.full((len(new),), -1, dtype=torch.long, device=self.device)
        return graphs, slots, k0

    def relax(self, molecules: Iterable[tuple[np.ndarray, np.ndarray]],
              keys: Optional[Iterable[int]] = None) -> Iterator[RelaxResult]:
        """``molecules``: (z [n], pos [n, 3]) each, centred or not (they are centred here). Yields one
        result per input, in the order the molecules finish. ``keys`` (one int per molecule) seed the
        molecules' noise instead of their positions in the stream (stable across batches and runs)."""
        stream = iter(enumerate(molecules))
        keys = iter(keys) if keys is not None else None
        s, dev = self.settings, self.device
        graphs: Optional[GraphBatch] = None
        slots: list[_Slot] = []
        k0 = torch.zeros(0, dtype=torch.long, device=dev)
        steps = torch.zeros(0, dtype=torch.long, device=dev)
        exhausted = False
        while True:
            new = []
            while not exhausted and len(slots) + len(new) < self.slots:
                try:
                    i, (z, pos) = next(stream)
                except StopIteration:
                    exhausted = True
                    break
                key = next(keys) if keys is not None else i
                new.append((i, np.asarray(z), np.array(pos, dtype=np.float64), key))
            if new:
                with torch.no_grad():
                    entering, entering_slots, entering_k0 = self._enter(new)
                graphs, slots = concat_batches(graphs, entering), slots + entering_slots
                k0 = torch.cat([k0, entering_k0])
                steps = torch.cat([steps, torch.zeros(len(new), dtype=torch.long, device=dev)])
            if not slots:
                return
            with torch.no_grad():
                k, eps = self._step_inputs(graphs, k0, steps)
                k0 = torch.where(k0 < 0, k, k0)
                self.model_steps += 1
                noise = torch.cat([torch.randn(len(slot.z), 3, generator=slot.generator, dtype=torch.float64)
                                   for slot in slots]).to(device=dev, dtype=self.dtype) * s.noise_scale
                x = reverse_step(graphs.pos, eps, k, self.model.schedule, graphs, noise, self.table)
                bad_atoms = (~torch.isfinite(x)).any(-1).to(torch.long)
                finite = torch.zeros(graphs.num_graphs, dtype=torch.long, device=dev).index_add_(
                    0, graphs.batch, bad_atoms) == 0
                graphs = graphs.with_pos(torch.where(finite[graphs.batch].unsqueeze(-1), x, graphs.pos))
                steps = steps + 1
                done = ~finite | (k <= s.k_min) | (steps >= s.max_steps)
                # the step's one wait for the device: a few numbers per molecule
                k_h, finite_h, done_h, steps_h, k0_h = torch.stack(
                    [k, finite.long(), done.long(), steps, k0]).cpu().numpy()
            if self.keep_trace:
                for slot, kj in zip(slots, k_h):
                    slot.trace.append(int(kj))
            if not done_h.any():
                continue
            stopped = np.flatnonzero(done_h)
            sizes = np.array([len(slot.z) for slot in slots])
            converged_h = finite_h.astype(bool) & (k_h <= s.k_min)
            out_pos = graphs.select(torch.as_tensor(stopped), host_n_atoms=sizes).pos
            # with a threshold above 0: the stopped molecules' Tweedie estimates (one more call)
            denoised = s.final_denoise & converged_h & (k_h > 0) & done_h.astype(bool)
            if denoised.any():
                chosen = np.flatnonzero(denoised)
                on_dev = torch.as_tensor(chosen).to(dev)
                clean = self._denoised(graphs.select(torch.as_tensor(chosen), host_n_atoms=sizes),
                                       k0[on_dev], steps[on_dev])
                where = atom_selection(np.flatnonzero(denoised[stopped]), sizes[stopped])[0]
                out_pos = out_pos.index_copy(0, torch.as_tensor(where).to(dev), clean)
            out_pos = out_pos.cpu().numpy()
            first = 0
            for j in stopped:
                slot, n = slots[j], sizes[j]
                converged = bool(converged_h[j])
                failed = "nonfinite" if not finite_h[j] else ("" if converged else "step_cap")
                yield RelaxResult(slot.index, slot.z, out_pos[first:first + n], int(steps_h[j]) + int(denoised[j]),
                                  converged, failed, -1 if s.sampler == "ddpm" else int(k0_h[j]), slot.trace)
                first += n
            keep = np.flatnonzero(~done_h.astype(bool))
            slots = [slots[j] for j in keep]
            if keep.size:
                keep_t = torch.as_tensor(keep)
                graphs = graphs.select(keep_t, host_n_atoms=sizes)
                keep_d = keep_t.to(dev)
                k0, steps = k0[keep_d], steps[keep_d]
            else:
                graphs, k0, steps = None, k0[:0], steps[:0]
