"""PSLD: posterior sampling with latent diffusion (Rout et al. 2023, "Solving Linear Inverse
Problems Provably via Posterior Sampling with Latent Diffusion Models", NeurIPS, Algorithm 2).

Latent DPS (``invdiff.solvers.latent_dps``) plus the "gluing" term (Eq. 7) that keeps the
Tweedie latent a fixed point of encode∘decode on the measurement-consistent image:

    x_hat = decode(z0_hat)
    z_{t-1} = z'_{t-1} - omega · grad_{z_t} ||y - A x_hat||
                       - gamma · grad_{z_t} ||z0_hat - encode(A^T y + (I - A^T A) x_hat)||

The paper assumes ``A^T A`` is a projection (inpainting, orthonormal-row operators); we use the
pseudo-inverse, ``A^+ y + (I - A^+ A) x_hat``, which equals the paper's term then and stays a
projection for any linear operator (closed form for an ``SVDOperator``, conjugate gradients
otherwise). Norms and steps are per sample, as in the released code (norms, not squared norms).
``defaults``: ``omega = 1.0``, ``gamma = 0.1`` (the paper's settings, App. C).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Gaussian, Noise
from invdiff.operators.base import LinearOperator, Operator
from invdiff.priors.base import LatentPrior, Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, PosteriorBound, Solver
from invdiff.solvers.common import check_shapes
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.latent_dps import guided_latent_ancestral, residual_norm


@SOLVERS.register("psld")
class PSLD(Solver):
    """Latent DPS with the PSLD gluing term (see the module docstring)."""

    requires_operator: ClassVar[type[Operator]] = LinearOperator
    requires_prior: ClassVar[type[Prior]] = LatentPrior
    requires_noise: ClassVar[tuple[type[Noise], ...]] = (Gaussian,)
    nfe_per_step = 1
    contract = ContractSetting(
        prior="latent",
        steps=6,
        # as latent DPS, with gamma halved alongside zeta: measured 0.20
        posterior=(PosteriorBound("cs", 100, 0.3, {"omega": 0.5, "gamma": 0.05}),),
    )
    hypers: ClassVar[dict[str, Hyper]] = {
        "omega": Hyper(1.0, "step scale of the measurement term", ge=0),
        "gamma": Hyper(0.1, "step scale of the gluing (encoder fixed-point) term", ge=0),
    }
    differentiates_prior: ClassVar[bool] = True

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
        omega, gamma = float(hp["omega"]), float(hp["gamma"])
        check_shapes(prior.image_shape, operator, y, what="latent prior's decoder")
        with torch.no_grad():
            pinv_y = operator.pinv(y)

        def loss(zt: Tensor, z0: Tensor) -> Tensor:
            x = prior.decode(z0)
            glued = pinv_y + x - operator.pinv(operator(x))
            gluing = (z0 - prior.encode(glued)).flatten(1).norm(dim=1)
            return omega * residual_norm(operator, y, x) + gamma * gluing

        return guided_latent_ancestral(
            prior,
            loss,
            y.shape[0],
            steps=steps,
            generator=generator,
            callback=callback,
            name="psld",
        )
