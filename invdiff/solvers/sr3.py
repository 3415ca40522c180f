"""SR3: image super-resolution via iterative refinement (Saharia et al. 2022, IEEE TPAMI,
Algorithm 2).

SR3 needs no guidance: its prior is a *conditional* denoiser ``D(x, sigma; c)`` trained on
pairs, with ``c = prior.condition(y)`` (the bicubic-upsampled low-resolution image concatenated
to the network input). Sampling ``p(x | y)`` is plain ancestral sampling of that conditional
model (Algorithm 2, ``x_{t-1} = (x_t - (1 - alpha_t) / sqrt(1 - abar_t) f(c, x_t)) / sqrt(alpha_t)
+ sqrt(1 - alpha_t) z``), which in sigma-space on the prior's own grid is the DDPM posterior
step of ``invdiff.samplers.ddpm`` (strided when ``steps`` is below the grid size).

The operator and noise model are not used by the sampler (the network learned them); the
operator only fixes the image shape, which must match the prior's, and a prior that names its
training degradation refuses any other operator (``ConditionalPrior.mismatch``).

The sampler serves any ``ConditionalPrior``: a ControlNet prior
(``invdiff.priors.controlnet``, conditioned on ``A^+ y``) is sampled the same way,
``invdiff solve --solver sr3 --prior runs/cn-sr4/prior --problem fmnist-sr4``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Noise
from invdiff.operators.base import LinearOperator, Operator
from invdiff.priors.base import ConditionalPrior, Prior
from invdiff.priors.sr3 import SR3Prior
from invdiff.registry import SOLVERS
from invdiff.samplers import ddpm
from invdiff.solvers.base import Callback, ContractSetting, Solver
from invdiff.solvers.common import check_shapes
from invdiff.solvers.hyper import Hyper


@SOLVERS.register("sr3")
class SR3(Solver):
    """Ancestral sampling of a conditional (SR3) prior given ``cond = prior.condition(y)``."""

    requires_operator: ClassVar[type[Operator]] = LinearOperator
    requires_prior: ClassVar[type[Prior]] = ConditionalPrior
    nfe_per_step = 1
    contract = ContractSetting(prior="conditional", steps=6)
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
        check_shapes(prior.in_shape, operator, y)
        if isinstance(prior, SR3Prior) and tuple(y.shape[1:]) != tuple(prior.low_res_shape):
            raise ValueError(
                f"this SR3 prior was trained for x{prior.factor} super-resolution and takes "
                f"measurements of shape N x {' x '.join(map(str, prior.low_res_shape))}; got y of "
                f"shape {tuple(y.shape)} (pick the SR3 prior matching the operator's factor)"
            )
        cond = prior.condition(y)
        if cond.shape[0] != y.shape[0] or tuple(cond.shape[-2:]) != tuple(prior.in_shape[-2:]):
            raise ValueError(
                f"{type(prior).__name__}.condition(y) returned shape {tuple(cond.shape)}; "
                "expected one "
                f"{prior.in_shape[-2]}x{prior.in_shape[-1]} conditioning image per measurement"
            )
        return ddpm(
            prior,
            y.shape[0],
            steps=steps,
            generator=generator,
            callback=callback,
            cond=cond.to(prior.device),
        )
