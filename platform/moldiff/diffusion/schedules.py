"""Noise schedules x_t = alpha_t x_0 + sigma_t eps, and the forward SDE dx = f(t) x dt + g(t) dW.

VE: alpha = 1, sigma = s_min (s_max/s_min)^t, g^2 = d sigma^2/dt = 2 sigma^2 ln(s_max/s_min), f = 0.
VP: beta = b_min + (b_max - b_min) t, B = int_0^t beta, alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)),
    f = -beta/2, g^2 = beta.
Polynomial (EDM's "polynomial_2", UniGEM and MoreRed): a discrete DDPM schedule on steps 0..T,
    alpha~_s^2 = (1 - (s/T)^2)^2 with each step's ratio alpha~_s^2 / alpha~_{s-1}^2 clipped at >= 0.001,
    alpha_s^2 = (1 - 2p) alpha~_s^2 + p (precision p = 1e-5), sigma_s^2 = 1 - alpha_s^2;
    continuous t in [0, 1] is read at step round(t T).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


class NoiseSchedule(ABC):
    t_min: float

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def drift_coeff(self, t: torch.Tensor) -> torch.Tensor:
        """f(t) with f(x, t) = f(t) x."""

    @abstractmethod
    def g2(self, t: torch.Tensor) -> torch.Tensor:
        """Squared diffusion coefficient g(t)^2."""

    @property
    @abstractmethod
    def prior_std(self) -> float:
        """Per-coordinate std of x_1, the prior the reverse process starts from."""

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alpha(t), self.sigma(t)


class VESchedule(NoiseSchedule):
    def __init__(self, sigma_min: float, sigma_max: float, t_min: float = 1e-5):
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(t_min)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def drift_coeff(self, t):
        return torch.zeros_like(t)

    def g2(self, t):
        return 2.0 * self.sigma(t) ** 2 * self._log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_max


class VPSchedule(NoiseSchedule):
    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-5):
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(t_min)

    def beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def alpha(self, t):
        return torch.exp(-0.5 * self.integral(t))

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(-self.integral(t)))

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0


class PolynomialSchedule(NoiseSchedule):
    """Discrete: only the ancestral (DDPM) sampler uses it; it has no SDE drift / diffusion."""

    def __init__(self, n_steps: int = 1000, power: float = 2.0, precision: float = 1e-5, clip: float = 1e-3):
        self.n_steps, self.t_min = int(n_steps), 0.0
        steps = torch.arange(self.n_steps + 1, dtype=torch.float64) / self.n_steps
        tilde = (1.0 - steps ** power) ** 2
        ratios = (tilde[1:] / tilde[:-1]).clamp(min=clip, max=1.0)  # keeps the last steps from collapsing to 0
        tilde = torch.cat([tilde.new_ones(1), torch.cumprod(ratios, 0)])
        self.alpha2 = (1.0 - 2.0 * precision) * tilde + precision              # [T + 1]

    def step_index(self, t: torch.Tensor) -> torch.Tensor:
        return torch.round(t.double() * self.n_steps).long().clamp(0, self.n_steps)

    def alpha(self, t):
        return self.alpha2.to(t.device)[self.step_index(t)].sqrt().to(t.dtype)

    def sigma(self, t):
        return (1.0 - self.alpha2.to(t.device)[self.step_index(t)]).sqrt().to(t.dtype)

    def drift_coeff(self, t):
        raise NotImplementedError("the polynomial schedule is discrete (DDPM): use the ancestral sampler")

    def g2(self, t):
        raise NotImplementedError("the polynomial schedule is discrete (DDPM): use the ancestral sampler")

    @property
    def prior_std(self) -> float:
        return 1.0


def build_schedule(diffusion) -> NoiseSchedule:
    """From the ``diffusion`` config section."""
    if diffusion.process == "ve":
        return VESchedule(diffusion.sigma_min, diffusion.sigma_max, diffusion.t_min)
    if diffusion.process == "vp":
        return VPSchedule(diffusion.beta_min, diffusion.beta_max, diffusion.t_min)
    if diffusion.process == "polynomial":
        return PolynomialSchedule(diffusion.n_steps, diffusion.power, diffusion.precision)
    raise ValueError(f"unknown diffusion.process {diffusion.process!r}")
