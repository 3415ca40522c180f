"""Total-variation regularised least squares (Rudin, Osher & Fatemi 1992) solved with the
primal-dual hybrid gradient method (Chambolle & Pock 2011, Alg. 1): a prior-free baseline.

    x_hat = argmin_{x in [-1, 1]^n} 1/2 ||A x - y||^2 + lambda TV(x),
    TV(x) = sum_pixels sqrt((D_h x)^2 + (D_v x)^2)      (isotropic, per channel)

with forward differences ``D`` (zero across the last row/column). PDHG on
``K = [A; D]``, ``F(Kx) = 1/2 ||Ax - y||^2 + lambda ||Dx||_{2,1}``, ``G`` = indicator of the box:

    p <- (p + s (A xbar) - s y) / (1 + s)           prox of s F1*, F1* = 1/2||p||^2 + <p, y>
    q <- proj_{|q_pixel| <= lambda}(q + s D xbar)    prox of s F2*
    x' <- clamp(x - t (A^T p + D^T q), -1, 1)        prox of t G
    xbar <- 2 x' - x

with ``s = t = 0.99 / ||K||``, ``||K||^2 <= ||A||^2 + 8`` (``||A||`` from the singular values of
an ``SVDOperator``, else 30 power iterations started from a generator-drawn image). ``steps``
is the number of PDHG iterations.

Default ``lambda`` (``lam=None``): the MAP rule for a Laplace model of gradient magnitudes with
mean ``0.1`` (a typical mean absolute gradient of [-1, 1] images), ``lambda = sigma_y^2 / 0.1``,
with the noise variance of ``invdiff.noise.noise_variance`` (noiseless ``y``: sigma
floored at 0.01). The prior is ignored.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Gaussian, Noise, Poisson, noise_variance
from invdiff.operators.base import LinearOperator, Operator, operator_norm_sq
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, Solver, Step
from invdiff.solvers.hyper import Hyper

#: mean absolute image gradient assumed by the default lambda
GRADIENT_SCALE = 0.1
#: ||D||^2 <= 8 for 2-D forward differences
GRADIENT_NORM_SQ = 8.0


def gradient(x: Tensor) -> Tensor:
    """Forward differences ``N x 2 x C x H x W`` (horizontal, vertical), zero at the far edge."""
    dh = torch.zeros_like(x)
    dv = torch.zeros_like(x)
    dh[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dv[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.stack([dh, dv], dim=1)


def gradient_adjoint(q: Tensor) -> Tensor:
    """``D^T q`` (minus the divergence) for ``q`` shaped like ``gradient``'s output."""
    qh, qv = q[:, 0], q[:, 1]
    out = torch.zeros_like(qh)
    out[..., :, :-1] -= qh[..., :, :-1]
    out[..., :, 1:] += qh[..., :, :-1]
    out[..., :-1, :] -= qv[..., :-1, :]
    out[..., 1:, :] += qv[..., :-1, :]
    return out


@SOLVERS.register("tv")
class TotalVariation(Solver):
    """TV-regularised least squares by PDHG (Chambolle & Pock 2011); any ``LinearOperator``."""

    requires_operator = LinearOperator
    requires_noise = (Gaussian, Poisson)
    nfe_per_step = 0  # no network
    contract = ContractSetting(steps=20, stochastic=False)
    hypers: ClassVar[dict[str, Hyper]] = {
        "lam": Hyper(
            None, "TV weight (None: from the noise level)", ge=0, optional=True, kind=float
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
        lam = noise_variance(noise) / GRADIENT_SCALE if hp["lam"] is None else float(hp["lam"])
        device = y.device
        shape = (y.shape[0], *operator.in_shape)
        with torch.no_grad():
            norm_sq = operator_norm_sq(operator, operator.in_shape, generator, device)
            step = 0.99 / (norm_sq + GRADIENT_NORM_SQ).sqrt()
            x = torch.zeros(shape, dtype=y.dtype, device=device)
            xbar = x.clone()
            p = torch.zeros_like(y)
            q = torch.zeros((shape[0], 2, *shape[1:]), dtype=y.dtype, device=device)
            for i in range(steps):
                p = (p + step * (operator(xbar) - y)) / (1 + step)
                q = q + step * gradient(xbar)
                q = (
                    q / (q.norm(dim=1, keepdim=True) / lam).clamp_min(1)
                    if lam > 0
                    else torch.zeros_like(q)
                )
                x_new = (x - step * (operator.adjoint(p) + gradient_adjoint(q))).clamp(-1, 1)
                xbar = 2 * x_new - x
                x = x_new
                if callback is not None:
                    callback(Step(i, steps, x, x, None))
        return x
