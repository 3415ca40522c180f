"""Measurement noise models ``y = A(x) + n``.

``sigma`` is quoted in the library's [-1, 1] image range: the common literature setting
``sigma_y = 0.05`` on [-1, 1] images is 0.025 on [0, 1] images. Papers differ on this; check
which range a number was quoted in before comparing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor


class Noise(ABC):
    """A measurement noise model: draws ``y`` from clean ``A(x)``, scores ``y`` given ``A(x)``."""

    @abstractmethod
    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy measurement drawn from ``p(y | A(x) = clean)``."""

    @abstractmethod
    def negative_log_likelihood(self, y: Tensor, clean: Tensor) -> Tensor:
        """``-log p(y | A(x) = clean)`` per sample (up to a constant), shape ``N``."""

    def __call__(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.sample(clean, generator)


class Gaussian(Noise):
    """Additive white Gaussian noise ``n ~ N(0, sigma^2 I)``; ``sigma = 0`` is noiseless."""

    def __init__(self, sigma: float = 0.0):
        sigma = float(sigma)
        if not sigma >= 0 or sigma != sigma or sigma == float("inf"):
            raise ValueError(f"Gaussian noise sigma must be a finite number >= 0, got {sigma}")
        self.sigma = sigma

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.sigma == 0:
            return clean.clone()
        n = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return clean + self.sigma * n

    def negative_log_likelihood(self, y: Tensor, clean: Tensor) -> Tensor:
        sq = (y - clean).pow(2).flatten(1).sum(1)
        return sq / (2 * max(self.sigma, 1e-12) ** 2)

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma})"


class Poisson(Noise):
    """Shot noise on the [0, 1] intensity ``u = (A(x) + 1) / 2``.

    ``y01 = Poisson(rate * u) / rate``, returned in [-1, 1] as ``2 y01 - 1``; a larger ``rate``
    (photons per unit intensity) means less noise. The negative log-likelihood is the
    Poisson deviance, which the DPS paper (Chung et al. 2023, Sec. 3.2) approximates by a
    weighted least squares.
    """

    def __init__(self, rate: float = 255.0):
        rate = float(rate)
        if not rate > 0 or rate == float("inf"):
            raise ValueError(f"Poisson noise rate must be a finite number > 0, got {rate}")
        self.rate = rate

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        intensity = ((clean + 1) / 2).clamp_min(0) * self.rate
        counts = torch.poisson(intensity, generator=generator)
        return counts / self.rate * 2 - 1

    def negative_log_likelihood(self, y: Tensor, clean: Tensor) -> Tensor:
        lam = ((clean + 1) / 2).clamp_min(1e-6) * self.rate
        k = ((y + 1) / 2).clamp_min(0) * self.rate
        return (lam - k * torch.log(lam)).flatten(1).sum(1)

    def __repr__(self) -> str:
        return f"Poisson(rate={self.rate})"


def gaussian_sigma(noise: Noise) -> float:
    """The Gaussian sigma of ``noise``; a clear error for solvers that need Gaussian noise."""
    if not isinstance(noise, Gaussian):
        raise TypeError(f"this solver needs Gaussian measurement noise, got {noise!r}")
    return noise.sigma


#: noise floor of ``noise_variance`` for a noiseless measurement (the prior-free baselines'
#: default regularisation weight would otherwise be zero)
SIGMA_FLOOR = 0.01


def noise_variance(noise: Noise) -> float:
    """Per-pixel measurement variance in the [-1, 1] range.

    Gaussian: ``max(sigma, SIGMA_FLOOR)^2``. Poisson: the variance at mid-grey, ``2 / rate``
    (``y = 2 y01 - 1`` with ``Var(y01) = u / rate`` at ``u = 1/2``).
    """
    if isinstance(noise, Poisson):
        return 2.0 / noise.rate
    return max(noise.sigma, SIGMA_FLOOR) ** 2  # type: ignore[attr-defined]
