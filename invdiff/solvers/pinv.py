"""The pseudo-inverse ``x_hat = A^+ y`` (Moore 1920; Penrose 1955): a prior-free baseline.

For an ``SVDOperator`` it is exact, ``V diag(s)^+ U^T y`` (``steps`` is ignored); for any other
``LinearOperator`` it is ``steps`` iterations of conjugate gradients on ``A^T A x = A^T y``
started at zero, which converge to the minimum-norm least-squares solution. No clamping: the
missing part of the image is zero (mid-grey), the observed part carries the noise of ``y``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import LinearOperator, Operator, SVDOperator
from invdiff.operators.cg import conjugate_gradient
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, Solver, Step
from invdiff.solvers.hyper import Hyper


@SOLVERS.register("pinv")
class PseudoInverse(Solver):
    """``A^+ y``: exact by SVD, else CG on the normal equations (``steps`` iterations)."""

    requires_operator = LinearOperator
    requires_noise = (Gaussian, Poisson)
    nfe_per_step = 0  # no network
    contract = ContractSetting(steps=5, stochastic=False)
    hypers: ClassVar[dict[str, Hyper]] = {}

    def __call__(
        self,
        prior: Prior,
        operator: Operator,
        y: Tensor,
        noise: Noise,
        *,
        steps: int,
        generator: torch.Generator,
        callback: Callback | None = None,
        **hyper: Any,
    ) -> Tensor:
        self.hyperparameters(hyper)
        with torch.no_grad():
            if isinstance(operator, SVDOperator):
                x = operator.pinv(y)
                if callback is not None:
                    callback(Step(0, 1, x, x, None))
                return x

            def report(i: int, x: Tensor) -> None:
                if callback is not None:
                    callback(Step(i, steps, x, x, None))

            return conjugate_gradient(
                lambda v: operator.adjoint(operator(v)),
                operator.adjoint(y),
                iterations=steps,
                tol=1e-5,
                on_iteration=report,
            )
