"""Noise-level schedules shared by the samplers and the solvers.

Two kinds, following the two families of solvers:

* ``vp_indices(prior, steps)``: ``steps`` indices into the prior's own discrete grid
  ``prior.sigmas`` (descending, from the top of the grid to its bottom), for the solvers defined
  on the discrete VP chain (DDPM, DDIM, RePaint, DDRM, DDNM, PiGDM); nothing is interpolated.
* ``karras_sigmas(...)``: the continuous schedule of Karras et al. 2022 ("EDM", Eq. 5),
  ``sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, for the ODE/SDE
  samplers and the solvers written in continuous sigma.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.priors.base import Prior


def vp_indices(prior: Prior, steps: int) -> Tensor:
    """``steps`` distinct grid indices, descending from ``len(sigmas) - 1`` to ``0``.

    Evenly spaced over the grid (the DDIM "linspace" spacing that includes both ends), so the
    first step starts at the largest trained noise level and the last one ends at the smallest.
    """
    total = len(prior.sigmas)
    if not 1 <= steps <= total:
        raise ValueError(
            f"steps must be between 1 and the prior's {total} noise levels, got {steps}"
        )
    if steps == 1:
        return torch.tensor([total - 1], dtype=torch.long)
    return torch.linspace(total - 1, 0, steps, dtype=torch.float64).round().long()


def vp_sigmas_for_steps(prior: Prior, steps: int) -> Tensor:
    """The prior's own sigmas at ``vp_indices(prior, steps)`` (descending), float64 on CPU."""
    return prior.sigmas.double().cpu()[vp_indices(prior, steps)]


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, Eq. 5: ``steps`` sigmas descending from ``sigma_max`` to ``sigma_min``.

    No trailing zero: a sampler that ends at ``sigma = 0`` appends it itself.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if steps == 1:
        return torch.tensor([float(sigma_max)], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def prior_karras_sigmas(prior: Prior, steps: int, rho: float = 7.0) -> Tensor:
    """``karras_sigmas`` between the prior's smallest and largest trained noise levels."""
    return karras_sigmas(prior.sigma_min, prior.sigma_max, steps, rho)


__all__ = ["karras_sigmas", "prior_karras_sigmas", "vp_indices", "vp_sigmas_for_steps"]
