"""The Tweedie correction that turns a likelihood gradient into a diffusion step.

For the noisy iterate ``x_a = x0 + s_a eps``, Tweedie's formula applied to the posterior gives
``E[x0 | x_a, y] = E[x0 | x_a] + s_a^2 grad_{x_a} log p(y | x_a)`` (Efron 2011; Chung et al.
2023, Eq. 7-10). A solver that takes a DDPM or DDIM step from ``s_a`` to ``s_b`` with the
posterior mean in place of the denoiser's ``x0_hat`` moves its iterate by
``(1 - c / s_a) s_a^2 grad log p(y | x_a)``, with ``c / s_a`` the weight that step keeps on
``x_a - x0_hat`` (``(s_b / s_a)^2`` for DDPM). That weight falls to 0 as the steps get finer,
so the total guidance does not grow with the number of steps.

``grad log p(y | x_a) = J^T u`` with ``J = d x0_hat / d x_a`` and ``u`` the likelihood's
gradient at ``x0_hat``, so ``s_a^2 J^T u = Cov(x0 | x_a) u`` (second-order Tweedie). On a
trained network that covariance is only meaningful where the network's Jacobian is: at large
``s_a`` the product ``s_a^2 J`` of an epsilon-predicting UNet grows like ``s_a^1.5`` (measured on
the Fashion-MNIST prior: 726 at sigma = 157, against a data variance of 0.25), which is no
covariance. ``Cov(x0 | x_a)`` cannot exceed the prior's spread, so the correction is capped per
sample at ``bound * sigma_data^2 * ||u||``; on a prior whose Jacobian is exact (the
Gaussian-mixture test bed) the cap does not bind at the default ``bound``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: how many times the data variance the covariance ``s^2 J`` may reach along ``u``
COVARIANCE_BOUND = 4.0


def posterior_mean_shift(
    vjp: Tensor, u: Tensor, sigma: float, sigma_data: float, bound: float = COVARIANCE_BOUND
) -> Tensor:
    """``s^2 J^T u`` (``vjp = J^T u``), scaled down per sample where its norm exceeds
    ``bound * sigma_data^2 * ||u||`` (the module docstring)."""
    shift = vjp * sigma**2
    norm = shift.flatten(1).norm(dim=1)
    limit = (bound * sigma_data**2) * u.flatten(1).norm(dim=1)
    factor = (limit / norm.clamp_min(1e-30)).clamp(max=1.0)
    return shift * factor.view(-1, *([1] * (shift.ndim - 1)))


def last_step_spread(sigma: float, sigma_data: float) -> float:
    """Standard deviation of ``x0`` given the last iterate ``x_sigma`` (``sigma`` the smallest
    level a chain visits), for data of standard deviation ``sigma_data``.

    A DDPM/DDIM chain returns ``E[x0 | x_sigma]`` at its last step and so drops ``Var(x0 |
    x_sigma) ~= sigma^2``: negligible beside the posterior's spread, except on coordinates the
    measurement pins down to about ``sigma_y``. With ``sigma_y`` near the prior's smallest
    level (0.01 on a 1000-step DDPM grid) the observed pixels would come out ``sigma_y``
    too tight; adding this spread makes the last step a sample of ``p(x0 | x_sigma)``.
    """
    return math.sqrt(sigma**2 * sigma_data**2 / (sigma**2 + sigma_data**2))


def measured_spread(spread: float, level: Tensor) -> Tensor:
    """The last-step spread on coordinates measured with noise ``level`` (``inf`` where
    unmeasured): ``(1 / spread^2 + 1 / level^2)^{-1/2}``, the spread of the product of the two
    Gaussians. A noiselessly measured coordinate (``level = 0``) stays exactly on ``y``."""
    finite = torch.isfinite(level)
    level = torch.where(finite, level, torch.ones_like(level))
    combined = spread * level / (spread**2 + level**2).sqrt().clamp_min(1e-30)
    return torch.where(finite, combined, torch.full_like(level, spread))


def exchange_measurement(
    x0_hat: Tensor,
    x_a: Tensor,
    sigma_a: float,
    ybar: Tensor,
    level: Tensor,
    sigma_data: float,
    kappa: Tensor | float = 1.0,
) -> tuple[Tensor, Tensor]:
    """``E[x0 | x_a, ybar]`` and its standard deviation per coordinate, from the denoiser's
    ``x0_hat = E[x0 | x_a]`` and a measurement ``ybar = x0 + n`` (``n`` of std ``level``) whose
    noise the iterate already carries: ``x_a = x0 + kappa n + w``, ``w`` fresh noise of variance
    ``sigma_a^2 - kappa^2 level^2``. ``kappa = 1`` is an iterate built as ``ybar`` plus noise
    (DDRM's hard branch), which knows nothing of ``x0`` that ``ybar`` does not; ``kappa = 0``
    an iterate independent of ``n``.

    In the Gaussian view of the last-step spread (``Var(x0 | x_a) = v``, ``1 / v = 1 /
    sigma_data^2 + 1 / sigma_a^2``), ``x0_hat / v = p + x_a / sigma_a^2`` with ``p`` the prior's
    term. ``ybar`` and ``(x_a - kappa ybar) / (1 - kappa)`` are independent measurements of
    ``x0``, so with ``f = sigma_a^2 - kappa^2 level^2``

        P    = 1 / sigma_data^2 + 1 / level^2 + (1 - kappa)^2 / f
        mean = (p + ybar / level^2 + (1 - kappa) (x_a - kappa ybar) / f) / P,   std = P^(-1/2);

    for ``kappa = 1``: ``mean = x0_hat + v' ((x0_hat - x_a) / sigma_a^2 + (ybar - x0_hat) /
    level^2)``, ``1 / v' = 1 / sigma_data^2 + 1 / level^2``; ``ybar`` for a noiseless coordinate.
    A chain whose grid steps from ``sigma_a`` straight past ``level`` (a coarse grid, or the
    last step to 0) would otherwise keep the denoiser's estimate at ``sigma_a`` and miss ``y``
    by up to ``sigma_a / level`` times the posterior's spread.
    """
    level = level.clamp_min(1e-30)
    kappa = torch.as_tensor(kappa, dtype=level.dtype, device=level.device)
    prior_term = x0_hat * (1.0 / sigma_data**2 + 1.0 / sigma_a**2) - x_a / sigma_a**2
    fresh = (sigma_a**2 - kappa**2 * level**2).clamp_min(1e-30)
    coherent = torch.where(kappa < 1, (1 - kappa) / fresh, torch.zeros_like(fresh))
    precision = 1.0 / sigma_data**2 + 1.0 / level**2 + (1 - kappa) * coherent
    numerator = prior_term + ybar / level**2 + coherent * (x_a - kappa * ybar)
    return numerator / precision, precision.rsqrt()


def crossing_steps(level: Tensor, steps: list[tuple[float, float]]) -> list[bool]:
    """For each step ``(s_a, s_b)`` of a grid, whether some finite positive ``level`` lies in
    ``(s_b, s_a]`` (a coordinate whose noise level the step passes). Read once before the loop,
    so that steps with nothing to exchange skip ``exchange_measurement`` without a host sync."""
    known = level[torch.isfinite(level) & (level > 0)].double().cpu()
    return [bool(((known <= sa) & (known > sb)).any()) for sa, sb in steps]
