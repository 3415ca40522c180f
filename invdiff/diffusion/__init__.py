"""The diffusion layer below the samplers and the solvers: noise-level schedules, the step
primitives (DDPM, DDIM, re-noising, probability-flow Euler) and the step callback.

It imports only torch and ``invdiff.priors.base``; samplers and solvers build on it.
"""

from invdiff.diffusion.schedules import (
    GRIDS,
    LINEAR_SIGMA_MAX,
    grid_sigmas,
    karras_sigmas,
    prior_karras_sigmas,
    vp_indices,
    vp_sigmas_for_steps,
)
from invdiff.diffusion.steps import (
    Callback,
    Step,
    ddim_coefficients,
    ddim_step,
    ddpm_step,
    euler_step,
    fresh_noise_coefficients,
    renoise,
)

__all__ = [
    "GRIDS",
    "LINEAR_SIGMA_MAX",
    "Callback",
    "Step",
    "ddim_coefficients",
    "fresh_noise_coefficients",
    "ddim_step",
    "ddpm_step",
    "euler_step",
    "grid_sigmas",
    "karras_sigmas",
    "prior_karras_sigmas",
    "renoise",
    "vp_indices",
    "vp_sigmas_for_steps",
]
