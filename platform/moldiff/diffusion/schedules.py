"""Noise schedules x_t = alpha_t x_0 + sigma_t eps, and the forward SDE dx = f(t) x dt + g(t) dW.

VE: alpha = 1, sigma = s_min (s_max/s_min)^t, g^2 = d sigma^2/dt = 2 sigma^2 ln(s_max/s_min), f = 0.
VP: beta = b_min + (b_max - b_min) t, B = int_0^t beta, alpha = exp(-B/2), sigma = sqrt(1 - exp(-B)),
    f = -beta/2, g^2 = beta.
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


def build_schedule(diffusion) -> NoiseSchedule:
    """From the ``diffusion`` config section."""
    if diffusion.process == "ve":
        return VESchedule(diffusion.sigma_min, diffusion.sigma_max, diffusion.t_min)
    if diffusion.process == "vp":
        return VPSchedule(diffusion.beta_min, diffusion.beta_max, diffusion.t_min)
    raise ValueError(f"unknown diffusion.process {diffusion.process!r}")
