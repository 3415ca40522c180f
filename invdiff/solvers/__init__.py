"""Posterior-sampling solvers behind one API.

xhat = invdiff.solve("dps", prior=prior, operator=op, y=y, noise=noise, steps=100,
                     generator=torch.Generator().manual_seed(0))
invdiff.solvers.names()
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from invdiff.noise import Noise
from invdiff.operators.base import Operator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, Progress, Solver, SolverMismatchError, Step
from invdiff.solvers.costs import Budget

# One file per solver; each registers itself on import.
_SOLVER_MODULES: tuple[str, ...] = (
    "dps",
    "repaint",
    "ddrm",
    "ddnm",
    "pigdm",
    "pinv",
    "tikhonov",
    "tv",
    "diffpir",
    "daps",
    "red_diff",
    "sr3",
    "latent_dps",
    "psld",
    "latent_daps",
)

for _module in _SOLVER_MODULES:
    importlib.import_module(f"invdiff.solvers.{_module}")


def get(name: str) -> Solver:
    """The solver registered as ``name``."""
    return SOLVERS.get(name)


def names() -> list[str]:
    return SOLVERS.names()


def solve(
    name: str,
    *,
    prior: Prior,
    operator: Operator,
    y: Tensor,
    noise: Noise,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    progress: bool = False,
    **hyper: Any,
) -> Tensor:
    """Draw one posterior sample per measurement in ``y`` with the solver ``name``.

    ``generator`` is a ``torch.Generator`` (or an int seed turned into one on the prior's
    device). The pairing of solver, prior, operator and noise, the shape and values of ``y``
    and ``steps`` are checked before any work is done. ``progress=True`` shows a bar on stderr
    with the network evaluations done out of the run's budget (``budget(name, steps, ...)``),
    the step and the current noise level sigma. Returns ``N x C x H x W`` in [-1, 1].
    """
    solver = get(name)
    solver.check(prior, operator, noise)
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if not y.is_floating_point():
        raise TypeError(f"y must be a float tensor, got dtype {y.dtype}")
    if not torch.isfinite(y).all():
        raise ValueError("y contains NaN or Inf values")
    expected = operator.out_shape()
    if y.ndim != len(expected) + 1 or tuple(y.shape[1:]) != tuple(expected):
        raise ValueError(
            f"y has shape {tuple(y.shape)} but {type(operator).__name__} produces measurements "
            f"of shape N x {' x '.join(map(str, expected))}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(generator, int):
        generator = torch.Generator(device=y.device).manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator or an int seed "
            "(invdiff never uses global randomness), "
            f"got {type(generator).__name__}"
        )
    if not progress:
        with operator.trusted():
            return solver(
                prior,
                operator,
                y,
                noise,
                steps=steps,
                generator=generator,
                callback=callback,
                **hyper,
            )
    bar = Progress(name, solver.budget(steps, prior=prior, **hyper), steps)

    def report(step: Step) -> None:
        bar.callback(step)
        if callback is not None:
            callback(step)

    try:
        with operator.trusted(), prior.observe(bar.network):
            return solver(
                prior,
                operator,
                y,
                noise,
                steps=steps,
                generator=generator,
                callback=report,
                **hyper,
            )
    finally:
        bar.close()


def budget(name: str, steps: int, *, prior: Prior | None = None, **hyper: Any) -> Budget:
    """What solver ``name`` costs for ``steps`` steps in network evaluations (and, for DAPS,
    Langevin steps), computed without running the network; ``prior`` makes it exact."""
    return get(name).budget(steps, prior=prior, **hyper)


__all__ = [
    "Budget",
    "Callback",
    "Progress",
    "Solver",
    "SolverMismatchError",
    "Step",
    "budget",
    "get",
    "names",
    "solve",
]
