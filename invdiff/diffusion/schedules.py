"""Noise-level schedules shared by the samplers and the solvers.

Two kinds, following the two families of solvers:

* ``vp_indices(prior, steps)``: ``steps`` indices into the prior's own discrete grid
  ``prior.sigmas`` (descending, from the top of the grid to its bottom), for the samplers
  defined on the discrete VP chain (DDPM, DDIM) and the solvers' ``"ddpm"`` grid; nothing is
  interpolated.
* ``karras_sigmas(...)``: the continuous schedule of Karras et al. 2022 ("EDM", Eq. 5),
  ``sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``, for the ODE/SDE
  samplers and the solvers written in continuous sigma.

``grid_sigmas(prior, steps, grid, sigma_max)`` is the one place a solver's noise grid is chosen
from a name (``GRIDS``): the strided prior grid (``"ddpm"``), sigma linear from a start level
down to the prior's smallest level (``"linear"``), or the EDM poly-7 spacing (``"karras"``).
The priors take any continuous sigma (a pixel prior interpolates its timestep in ``log
sigma``), and the steps of ``invdiff.diffusion.steps`` go between any two levels (the DDPM
posterior in sigma-space is a Brownian bridge), so every solver that walks a grid walks any of
them.
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


#: the grid names ``grid_sigmas`` takes, the values of the solvers' ``grid`` hyperparameter
GRIDS = ("ddpm", "linear", "karras")

#: the start level of a ``"linear"`` grid when none is given: deepinv's sigma = 1 on [0, 1]
#: images (its DDRM's ``np.linspace(1, 0, steps)``) is sigma = 2 on our [-1, 1] images
LINEAR_SIGMA_MAX = 2.0


def grid_sigmas(
    prior: Prior,
    steps: int,
    grid: str = "ddpm",
    sigma_max: float | None = None,
    rho: float = 7.0,
) -> Tensor:
    """A solver's ``steps`` noise levels, descending, float64 on CPU, without a trailing zero.

    With ``s_min`` / ``s_top`` the prior's smallest / largest trained level and ``S`` the start
    level (``sigma_max``, clipped to ``[s_min, s_top]``):

    * ``"ddpm"``: the prior's own levels at evenly strided indices (``vp_indices``). With
      ``sigma_max = None`` this *is* ``vp_sigmas_for_steps(prior, steps)``; a given
      ``sigma_max`` strides only the levels at or below it. Needs ``steps`` <= that many levels.
    * ``"linear"``: ``sigma_i = S + (s_min - S) i / (steps - 1)``, ``i = 0..steps-1``: equal
      steps from ``S`` down to ``s_min``, and from there the solvers' last step to ``sigma = 0``
      (they end on the denoiser's ``x0``). ``S`` defaults to ``LINEAR_SIGMA_MAX`` = 2: deepinv's
      DDRM grid, ``np.linspace(1, 0, steps)`` on [0, 1] images, whose last network evaluation
      is at ``sigma = 0`` (here at ``s_min``, the smallest level the prior was trained on).
      The grid ends at ``s_min`` rather than one step above 0 because a solver's last step
      keeps the noise of its last level on the coordinates it does not denoise again (DDRM's
      measured ones): ending at ``S / steps`` left 0.1 of noise there at 20 steps, more than a
      measurement at ``sigma_y = 0.01`` carries.
    * ``"karras"``: Karras et al. 2022, Eq. 5 with ``rho`` (``karras_sigmas``) from ``S`` down to
      ``s_min``; ``S`` defaults to ``s_top``.

    An unknown ``grid`` raises a ``ValueError`` before anything is computed.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(map(repr, GRIDS))}, got {grid!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if sigma_max is not None and not sigma_max > 0:
        raise ValueError(f"sigma_max must be > 0, got {sigma_max}")
    lo, top = float(prior.sigma_min), float(prior.sigma_max)
    if grid == "ddpm":
        if sigma_max is None:
            return vp_sigmas_for_steps(prior, steps)
        levels = prior.sigmas.double().cpu()
        # the levels at or below sigma_max (at least the smallest one), strided as vp_indices
        count = max(int((levels <= sigma_max * (1 + 1e-9)).sum()), 1)
        if not 1 <= steps <= count:
            raise ValueError(
                f"steps must be between 1 and the {count} noise levels of the prior at or below "
                f"sigma_max = {sigma_max:g}, got {steps}"
            )
        if steps == 1:
            return levels[[count - 1]]
        return levels[torch.linspace(count - 1, 0, steps, dtype=torch.float64).round().long()]
    default = LINEAR_SIGMA_MAX if grid == "linear" else top
    start = min(max(float(default if sigma_max is None else sigma_max), lo), top)
    if grid == "linear":
        if steps == 1:
            return torch.tensor([start], dtype=torch.float64)
        return torch.linspace(start, lo, steps, dtype=torch.float64)
    if start <= lo:  # a one-level range: karras_sigmas needs sigma_min < sigma_max
        return torch.full((steps,), start, dtype=torch.float64)
    return karras_sigmas(lo, start, steps, rho)


__all__ = [
    "GRIDS",
    "LINEAR_SIGMA_MAX",
    "grid_sigmas",
    "karras_sigmas",
    "prior_karras_sigmas",
    "vp_indices",
    "vp_sigmas_for_steps",
]
