"""Moved to ``invdiff.diffusion.schedules``; this name stays for existing imports."""

from invdiff.diffusion.schedules import (  # noqa: F401
    karras_sigmas,
    prior_karras_sigmas,
    vp_indices,
    vp_sigmas_for_steps,
)
