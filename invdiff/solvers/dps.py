"""Diffusion Posterior Sampling (Chung et al. 2023, "Diffusion Posterior Sampling for General
Noisy Inverse Problems", ICLR; Algorithms 1 and 2).

DPS runs ancestral DDPM steps (Ho et al. 2020, Eq. 6-7) on the prior's own VP grid and, after
each step, moves the iterate down the gradient of the measurement misfit evaluated at the
Tweedie estimate ``x0_hat(x_t)`` (Eq. 16), differentiating through the network:

    x'_{t-1} = DDPM step from x_t with x0_hat(x_t)                          (Alg. 1, l. 4-6)
    x_{t-1}  = x'_{t-1} - zeta_t * grad_{x_t} 1/2 ||y - A(x0_hat(x_t))||^2    (Alg. 1, l. 7)
    zeta_t   = zeta / ||y - A(x0_hat(x_t))||                                (App. C.4)

with the norm taken **per sample** (the reference code divides by the norm over the whole
batch, which couples the samples). Written with the half squared norm, this update equals
``zeta * grad ||y - A(x0_hat)||``, the step the released code takes with ``scale = zeta``, so
the paper's step sizes (zeta = 1 for most tasks) carry over.

Poisson noise (Alg. 2, Eq. 19-20): the shot-noise likelihood is replaced by a Gaussian with
the per-pixel variance estimated from ``y`` itself, i.e. a weighted least squares
``||y - A(x0_hat)||^2_Lambda`` with ``Lambda_jj = Var(y_j) ~= 2 (y_j + 1) / rate`` in the
[-1, 1] range (``invdiff.noise.Poisson``; floored at one photon). The weights
``Lambda^{-1/2}`` are normalised to unit mean square per sample, so only the relative weighting
of the pixels changes and the step length stays set by ``zeta`` as in the Gaussian case.

Sigma-space: the prior works with ``x_sigma = x0 + sigma * eps``; the VP iterate of the paper
is ``x_t = sqrt(abar_t) x_sigma = x_sigma / sqrt(1 + sigma_t^2)``. This module keeps the
iterate in sigma-space. The DDPM posterior ``q(x_{t-1} | x_t, x0)`` is the same Gaussian in
both parametrisations (the chains differ by a per-level scale only):
``x_b = x0 + (s_b/s_a)^2 (x_a - x0) + s_b sqrt(1 - (s_b/s_a)^2) z``. The gradient step of the
paper, taken on VP iterates, becomes
``x_b -= zeta_t sqrt(1 + s_b^2) sqrt(1 + s_a^2) grad_{x_sigma_a} 1/2 ||r||^2`` because
``grad_{x_t} = sqrt(1 + s_a^2) grad_{x_sigma_a}`` and a VP displacement at level ``b`` is
``sqrt(1 + s_b^2)`` times larger in sigma-space. The chain starts from the paper's
``x_T ~ N(0, I)``, i.e. ``x_sigma ~ N(0, (1 + s_T^2) I)``, and the last step (to sigma = 0)
returns the guided ``x0_hat``. No clamping (the paper's algorithm has none).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import Operator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.schedules import vp_sigmas_for_steps
from invdiff.solvers.base import Callback, Solver, Step


def _column(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


@SOLVERS.register("dps")
class DPS(Solver):
    """Diffusion Posterior Sampling (Chung et al. 2023, Alg. 1 Gaussian / Alg. 2 Poisson).

    Hyperparameters: ``zeta`` (the step scale zeta' of App. C.4; 1.0 in the paper for
    inpainting, super-resolution and deblurring on FFHQ/ImageNet). ``steps`` is the number of
    DDPM steps on the prior's grid (the paper uses all 1000).
    """

    requires_operator = Operator
    requires_noise = (Gaussian, Poisson)
    defaults: ClassVar[dict[str, Any]] = {"zeta": 1.0}
    differentiates_prior = True

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
        self.check(prior, operator, noise)
        hp = self.hyperparameters(hyper)
        zeta = float(hp["zeta"])
        if not zeta >= 0:
            raise ValueError(f"dps: zeta must be >= 0, got {zeta}")
        sigmas = vp_sigmas_for_steps(prior, steps).tolist()
        sigmas_next = sigmas[1:] + [0.0]
        n, device = y.shape[0], y.device
        shape = (n, *prior.in_shape)

        # Residual weights: 1 for Gaussian noise; 1 / sqrt(Var(y_j)) for Poisson (Alg. 2).
        if isinstance(noise, Poisson):
            variance = (2 * (y + 1) / noise.rate).clamp_min(4 / noise.rate**2)
            weight = variance.rsqrt()
            # relative weights (unit mean square per sample): only the weighting between
            # pixels matters; the step length stays set by zeta as in the Gaussian case
            weight = weight / weight.pow(2).flatten(1).mean(1).sqrt().view(
                -1, *([1] * (y.ndim - 1))
            )
        else:
            weight = torch.ones((), dtype=y.dtype, device=device)
        # One buffer on the generator's device, refilled from the caller's generator each step.
        z = torch.empty(shape, device=generator.device)
        x = math.sqrt(1 + sigmas[0] ** 2) * z.normal_(generator=generator).to(device)
        for i, (sa, sb) in enumerate(zip(sigmas, sigmas_next)):
            with torch.enable_grad():
                xa = x.detach().requires_grad_(True)
                x0 = prior.x0(xa, sa)
                residual = (y - operator(x0)) * weight
                sq = residual.pow(2).flatten(1).sum(1)  # per sample
                (grad,) = torch.autograd.grad(0.5 * sq.sum(), xa)
            x0 = x0.detach()
            ratio = (sb / sa) ** 2
            x = x0 + ratio * (xa.detach() - x0)
            if sb > 0:
                x = x + sb * math.sqrt(1 - ratio) * z.normal_(generator=generator).to(device)
            step = (
                zeta
                * math.sqrt(1 + sb**2)
                * math.sqrt(1 + sa**2)
                / sq.detach().sqrt().clamp_min(1e-12)
            )
            x = x - _column(step, x) * grad
            if callback is not None:
                callback(Step(i, steps, x, x0, sb))
        return x
