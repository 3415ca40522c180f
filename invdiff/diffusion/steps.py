"""The diffusion step primitives, written once, in sigma-space (``x_sigma = x0 + sigma eps``).

Every sampler and solver moves between noise levels with these; the formulas appear nowhere
else in the package.

* ``ddpm_step``: the DDPM posterior ``q(x_b | x_a, x0)`` (Ho et al. 2020, Eq. 6-7), which in
  sigma-space is the Brownian bridge
  ``x_b = x0 + r (x_a - x0) + s_b sqrt(1 - r) z`` with ``r = (s_b / s_a)^2``;
* ``ddim_coefficients`` / ``ddim_step``: DDIM with stochasticity ``eta`` (Song et al. 2021,
  Eq. 12 and 16): ``x_b = x0 + c eps + std z`` with ``eps = (x_a - x0) / s_a``,
  ``std = eta s_b sqrt(1 - s_b^2 / s_a^2)`` and ``c = sqrt(s_b^2 - std^2)``; ``eta = 1`` is the
  DDPM posterior, ``eta = 0`` the deterministic DDIM;
* ``fresh_noise_coefficients``: the same step family parameterised as DDRM (Kawar et al. 2022,
  Eq. 7-8) and DDNM's code do it, by the fraction of ``s_b`` that is fresh noise:
  ``std = eta s_b``, ``c = sqrt(1 - eta^2) s_b``. On a strided grid this is far more
  stochastic than DDIM's ``eta`` (``eta = 1`` replaces the whole noise at every step, where
  the DDPM posterior keeps ``(s_b / s_a)^2`` of it), and the two only agree as the steps shrink;
* ``renoise``: the forward process from ``s_a`` up to ``s_b > s_a``,
  ``x_b = x_a + sqrt(s_b^2 - s_a^2) z`` (RePaint's and DDNM's time travel);
* ``euler_step``: one Euler step of the probability-flow ODE
  ``dx / dsigma = (x - D(x, sigma)) / sigma`` (Karras et al. 2022, Eq. 4).

``Step`` and ``Callback`` are what a sampler or solver reports after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass
class Step:
    """What a callback sees after every solver step."""

    index: int  # 0-based step number
    total: int  # number of steps
    x: Tensor  # current iterate (image space, or latent space for a latent solver)
    x0: Tensor | None  # current estimate of the clean image, when the solver has one
    sigma: float | None  # current noise level, when the solver has one


Callback = Callable[[Step], None]


def ddpm_step(
    x: Tensor, x0: Tensor, sigma: float, sigma_next: float, noise: Tensor | None
) -> Tensor:
    """The DDPM posterior step from ``sigma`` to ``sigma_next`` given ``x0`` (module docstring).

    ``noise`` is ``z`` (None: the posterior mean, e.g. for ``sigma_next = 0``, where the step
    gives ``x0``).
    """
    ratio = (sigma_next / sigma) ** 2
    out = x0 + ratio * (x - x0)
    if noise is not None:
        out = out + sigma_next * math.sqrt(1 - ratio) * noise
    return out


def ddim_coefficients(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """``(c, std)`` of the DDIM step: ``x_next = x0 + c eps + std z`` (module docstring)."""
    std = eta * sigma_next * math.sqrt(1 - (sigma_next / sigma) ** 2)
    return math.sqrt(max(sigma_next**2 - std**2, 0.0)), std


def fresh_noise_coefficients(sigma_next: float, eta: float) -> tuple[float, float]:
    """``(c, std)`` with ``std = eta sigma_next`` fresh noise and ``c = sqrt(1 - eta^2)
    sigma_next`` on the current noise direction (DDRM's and DDNM's ``eta``; module docstring)."""
    return math.sqrt(max(1 - eta**2, 0.0)) * sigma_next, eta * sigma_next


def ddim_step(
    x: Tensor, x0: Tensor, sigma: float, sigma_next: float, eta: float, noise: Tensor | float
) -> Tensor:
    """One DDIM step from ``sigma`` to ``sigma_next < sigma`` (Song et al. 2021, Eq. 12).

    ``c`` and ``std`` from ``ddim_coefficients``; ``std`` is DDIM's ``sigma_t(eta)`` (their
    Eq. 16) divided by ``sqrt(abar_next)``. ``sigma_next = 0`` returns ``x0``.
    """
    if sigma_next == 0:
        return x0
    eps = (x - x0) / sigma
    c, std = ddim_coefficients(sigma, sigma_next, eta)
    return x0 + c * eps + std * noise


def renoise(x: Tensor, sigma: float, sigma_next: float, noise: Tensor) -> Tensor:
    """The forward process from ``sigma`` up to ``sigma_next >= sigma``."""
    return x + math.sqrt(sigma_next**2 - sigma**2) * noise


def euler_step(x: Tensor, x0: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """One Euler step of the probability-flow ODE from ``sigma`` to ``sigma_next``."""
    return x + (sigma_next - sigma) / sigma * (x - x0)
