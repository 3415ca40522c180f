"""Posterior-sampling solvers behind one API.

xhat = invdiff.solve("dps", prior=prior, operator=op, y=y, noise=noise, steps=100,
                     generator=torch.Generator().manual_seed(0))
invdiff.solvers.names()
"""

from __future__ import annotations

import contextlib
import importlib
import math
import pkgutil
from typing import Any

import torch
from torch import Tensor

from invdiff.noise import Noise
from invdiff.operators.base import Operator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import (
    Callback,
    ContractSetting,
    Progress,
    Solver,
    SolverMismatchError,
    Step,
)
from invdiff.solvers.costs import Budget
from invdiff.solvers.hyper import Hyper, HyperparameterError

# One file per solver; each registers itself on import. Every module of this package is
# imported, so a new solver is one new file here and nothing else.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
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
    steps: int | None = None,
    generator: torch.Generator | int,
    nfe: int | None = None,
    samples: int | None = None,
    callback: Callback | None = None,
    progress: bool = False,
    **hyper: Any,
) -> Tensor:
    """Draw one posterior sample per measurement in ``y`` with the solver ``name``.

    The budget is either ``steps`` (the solver's own unit) or ``nfe``, network evaluations,
    the unit that compares solvers: the solver runs the most steps that fit in it
    (``Solver.steps_for_nfe``). Give one of the two.

    ``samples=K`` draws K posterior samples per measurement in one batch (``y`` repeated, each
    copy its own draw) and returns ``N x K x C x H x W``; ``invdiff.metrics.posterior`` scores
    them (posterior mean, best of K, coverage of credible intervals).

    ``generator`` is a ``torch.Generator`` (or an int seed turned into one on the prior's
    device). The hyperparameters (against their declared ranges), the pairing of solver,
    prior, operator and noise, the shape and values of ``y`` and ``steps`` are checked before
    any work is done; ``Solver.check`` is that pairing check, and this is its only caller.
    ``progress=True`` shows a bar on stderr with the network evaluations done out of the run's
    budget (``budget(name, steps, ...)``), the step and the current noise level sigma.
    Returns ``N x C x H x W`` in [-1, 1].
    """
    solver = get(name)
    if not isinstance(operator, Operator):
        raise TypeError(
            "operator must be an invdiff Operator (invdiff.operators.get(NAME, ...) or a "
            f"problem's .operator()), got {type(operator).__name__}"
        )
    if not isinstance(prior, Prior):
        raise TypeError(
            "prior must be an invdiff Prior (invdiff.priors.load(NAME_OR_FOLDER)), "
            f"got {type(prior).__name__}"
        )
    if not isinstance(noise, Noise):
        raise TypeError(
            f"noise must be an invdiff noise model (invdiff.noise.Gaussian(sigma=...) or "
            f"Poisson(rate=...)), got {type(noise).__name__}"
        )
    solver.hyperparameters(hyper)
    if (steps is None) == (nfe is None):
        raise ValueError(
            "give the budget as steps=... (the solver's own unit) or nfe=... (network "
            f"evaluations), exactly one of them; got steps={steps!r}, nfe={nfe!r}"
        )
    if nfe is not None:
        steps = solver.steps_for_nfe(nfe, prior=prior, **hyper)
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise ValueError(
            f"samples must be a positive integer (draws per measurement), got {samples!r}"
        )
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
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if getattr(prior, "data_range", None) == (-1.0, 1.0):
        check_measurement_range(y, operator, noise)
    if isinstance(generator, bool):
        raise TypeError("generator must be a torch.Generator or an int seed, got a bool")
    if isinstance(generator, int):
        if generator < 0:
            raise ValueError(f"generator seed must be >= 0, got {generator}")
        generator = torch.Generator(device=y.device).manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator or an int seed "
            "(invdiff never uses global randomness), "
            f"got {type(generator).__name__}"
        )
    if samples is not None:
        # each measurement repeated K times, next to each other: the sample k of measurement i
        # is row i K + k, so the batch reshapes to N x K
        n = y.shape[0]
        draws = solve(
            name,
            prior=prior,
            operator=operator,
            y=y.repeat_interleave(samples, 0),
            noise=noise,
            steps=steps,
            generator=generator,
            callback=callback,
            progress=progress,
            **hyper,
        )
        return draws.view(n, samples, *draws.shape[1:])
    bar = None
    if progress:
        budget = solver.budget(steps, prior=prior, **hyper)
        bar = Progress(name, budget, steps, per_call=prior.evaluations_per_call)

    def report(step: Step) -> None:
        bar.callback(step)
        if callback is not None:
            callback(step)

    with contextlib.ExitStack() as stack:
        stack.enter_context(operator.trusted())
        if bar is not None:
            stack.callback(bar.close)
            stack.enter_context(prior.observe(bar.network))
        return solver(
            prior,
            operator,
            y,
            noise,
            steps=steps,
            generator=generator,
            callback=report if bar is not None else callback,
            **hyper,
        )


def budget(name: str, steps: int, *, prior: Prior | None = None, **hyper: Any) -> Budget:
    """What solver ``name`` costs for ``steps`` steps in network evaluations (and, for DAPS,
    Langevin steps), computed without running the network; ``prior`` makes it exact."""
    return get(name).budget(steps, prior=prior, **hyper)


def steps_for_nfe(name: str, nfe: int, *, prior: Prior | None = None, **hyper: Any) -> int:
    """The most steps of solver ``name`` that fit in ``nfe`` network evaluations."""
    return get(name).steps_for_nfe(nfe, prior=prior, **hyper)


def measurement_limit(operator: Operator, noise: Noise) -> float:
    """The largest ``|y|`` that ``operator`` and ``noise`` can give for images in [-1, 1],
    with a margin: 1.5 x the operator's ``measurement_bound`` plus 8 noise standard deviations
    (Gaussian) or a Poisson tail of 8 deviations."""
    from invdiff.noise import Gaussian, Poisson

    clean = 1.5 * operator.measurement_bound() + 1e-3
    if isinstance(noise, Gaussian):
        return clean + 8 * noise.sigma
    if isinstance(noise, Poisson):
        lam = noise.rate * (clean + 1) / 2
        return 2 * (lam + 8 * math.sqrt(lam) + 8) / noise.rate + 1
    return math.inf


def check_measurement_range(y: Tensor, operator: Operator, noise: Noise) -> None:
    """Refuse a ``y`` no image in [-1, 1] can produce (e.g. measured from a [0, 255] image)."""
    limit = measurement_limit(operator, noise)
    peak = float(y.detach().abs().max()) if y.numel() else 0.0
    if peak > limit:
        lo, hi = float(y.min()), float(y.max())
        raise ValueError(
            f"y has values in [{lo:.4g}, {hi:.4g}], but {type(operator).__name__} with "
            f"{noise!r} gives |y| <= {limit:.3g} for images in [-1, 1]: measure images in "
            "[-1, 1] (convert uint8 images with invdiff.images.from_uint8, [0, 1] images with "
            "invdiff.images.from_unit)"
        )


__all__ = [
    "Budget",
    "Callback",
    "ContractSetting",
    "Hyper",
    "HyperparameterError",
    "Progress",
    "Solver",
    "SolverMismatchError",
    "Step",
    "budget",
    "steps_for_nfe",
    "check_measurement_range",
    "get",
    "measurement_limit",
    "names",
    "solve",
]
