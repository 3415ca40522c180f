"""Tikhonov-regularised least squares (Tikhonov 1963; a prior-free baseline).

    x_hat = argmin_x 1/2 ||A x - y||^2 + lambda/2 ||x||^2   <=>   (A^T A + lambda I) x = A^T y

solved by conjugate gradients (Hestenes & Stiefel 1952) started at zero, ``steps`` iterations
with per-sample step sizes and no early exit (so nothing waits on the host inside the loop).

Default ``lambda`` (``lam=None``): the MAP rule for a white Gaussian image model
``x ~ N(0, 0.5^2 I)`` (0.5 is the standard deviation of a [-1, 1] image, about that of natural
and Fashion-MNIST images) under the noise model, ``lambda = sigma_y^2 / 0.5^2``, with
``sigma_y`` floored at 0.01 for a noiseless ``y`` and, for Poisson noise, the variance of a
mid-grey pixel ``2 / rate`` (see ``invdiff.noise.Poisson``). The prior is ignored; no clamping.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Gaussian, Noise, Poisson, noise_variance
from invdiff.operators.base import LinearOperator, Operator
from invdiff.operators.cg import conjugate_gradient
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, Solver, Step
from invdiff.solvers.hyper import Hyper

#: standard deviation of the white Gaussian image model behind the default lambda
IMAGE_STD = 0.5


@SOLVERS.register("tikhonov")
class Tikhonov(Solver):
    """Tikhonov least squares by CG; ``steps`` CG iterations; any ``LinearOperator``."""

    requires_operator = LinearOperator
    requires_noise = (Gaussian, Poisson)
    nfe_per_step = 0  # no network
    contract = ContractSetting(steps=10, stochastic=False)
    hypers: ClassVar[dict[str, Hyper]] = {
        "lam": Hyper(
            None,
            "regularisation weight (None: from the noise level)",
            ge=0,
            optional=True,
            kind=float,
        ),
    }

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
        hp = self.hyperparameters(hyper)
        lam = noise_variance(noise) / IMAGE_STD**2 if hp["lam"] is None else float(hp["lam"])

        def report(i: int, x: Tensor) -> None:
            if callback is not None:
                callback(Step(i, steps, x, x, None))

        with torch.no_grad():
            return conjugate_gradient(
                lambda v: operator.adjoint(operator(v)) + lam * v,
                operator.adjoint(y),
                iterations=steps,
                tol=1e-5,
                on_iteration=report,
            )
