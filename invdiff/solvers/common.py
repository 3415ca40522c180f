"""Helpers every solver may use: the shape check, noise drawn on the generator's device and the
noise grid declared once (``GRID_HYPERS``, ``with_grid``, ``solver_grid``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from invdiff.diffusion.schedules import GRIDS, grid_sigmas
from invdiff.operators.base import Operator
from invdiff.priors.base import Prior
from invdiff.solvers.hyper import Hyper

#: The noise grid a pixel diffusion solver walks, declared once and merged into the ``hypers``
#: of every solver that walks one (``with_grid``); ``invdiff.diffusion.grid_sigmas`` builds it.
GRID_HYPERS: dict[str, Hyper] = {
    "grid": Hyper(
        "ddpm",
        "noise grid: the prior's strided DDPM levels, sigma linear from sigma_max, or "
        "EDM (Karras, rho = 7)",
        choices=GRIDS,
        search=GRIDS,  # invdiff tune picks the grid per problem and budget too
    ),
    "sigma_max": Hyper(
        None,
        "start level of the grid (None: the prior's largest level for ddpm and karras, 2 for "
        "linear, i.e. 1 on [0, 1] images)",
        gt=0,
        optional=True,
        kind=float,
    ),
}


def with_grid(hypers: dict[str, Hyper], grid: str = "ddpm") -> dict[str, Hyper]:
    """``hypers`` plus ``GRID_HYPERS`` with ``grid`` as the default grid (a solver's measured
    best, see ``benchmarks/results/grids``)."""
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    return {
        **hypers,
        "grid": dataclasses.replace(GRID_HYPERS["grid"], default=grid),
        "sigma_max": GRID_HYPERS["sigma_max"],
    }


def solver_grid(prior: Prior, steps: int, hp: dict[str, Any]) -> list[float]:
    """The ``steps`` descending noise levels of a run with the checked hyperparameters ``hp``
    (``grid_sigmas`` with ``hp["grid"]`` and ``hp["sigma_max"]``), as floats."""
    sigma_max = hp["sigma_max"]
    return grid_sigmas(
        prior, steps, hp["grid"], None if sigma_max is None else float(sigma_max)
    ).tolist()


def normal_like(x: Tensor, generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device.

    ``out`` (a buffer on the generator's device) is refilled in place and reused, so the inner
    loops allocate nothing when the generator lives on ``x``'s device.
    """
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=generator.device)
    out.normal_(generator=generator)
    return out if out.device == x.device else out.to(x.device, non_blocking=True)


def check_shapes(
    prior_shape: tuple[int, ...], operator: Operator, y: Tensor, what: str = "prior"
) -> None:
    """The operator acts on the prior's images; ``y`` is a batch of its measurements."""
    if tuple(operator.in_shape) != tuple(prior_shape):
        raise ValueError(
            f"the operator acts on images of shape {tuple(operator.in_shape)} but the {what} "
            f"models images of shape {tuple(prior_shape)}"
        )
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"y must be a batch of measurements (N x ...), got shape {tuple(y.shape)}")
