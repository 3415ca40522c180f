"""Pseudoinverse-Guided Diffusion Models (Song, Vahdat, Mardani & Kautz 2023, ICLR; Eq. 5-8,
Alg. 1).

PiGDM approximates ``p(x0 | x_t)`` by ``N(x0_hat(x_t), r_t^2 I)`` (Eq. 5), which makes the
measurement likelihood Gaussian, ``p(y | x_t) ~= N(A x0_hat, r_t^2 A A^T + sigma_y^2 I)``
(Eq. 6), and its score the vector-Jacobian product (Eq. 7)

    g = ( (y - A x0_hat)^T (r_t^2 A A^T + sigma_y^2 I)^{-1} A  d x0_hat / d x_t )^T

with ``r_t^2 = sigma_t^2 sigma_data^2 / (sigma_t^2 + sigma_data^2)`` (Sec. 3.1: the posterior
variance of ``x0`` for Gaussian data; the paper takes ``sigma_data = 1``, the prior declares its
own, 0.5 for images in [-1, 1]). For an ``SVDOperator`` the inverse is exact:
``A^T (r^2 A A^T + sigma_y^2 I)^{-1} v = V diag(s / (r^2 s^2 + sigma_y^2)) U^T v``. (This
implementation needs the SVD; no conjugate gradients.)

The guidance is added to the DDIM step (Alg. 1: ``x_{t-1} = DDIM(x0_hat, eps_hat) + w_t g``).
The released code's weight does not depend on the step's size, so the total guidance grows
with the number of steps and samples over-fit ``y`` as steps increase (measured on the
Gaussian-mixture test bed: ratio to the exact posterior 0.28 -> 1.15 from 50 to 400 steps on a
noisy blur). Here the weight is the one Tweedie's formula gives (Eq. 5-7 read as a posterior
mean, ``E[x0 | x_t, y] = x0_hat + s_t^2 g``): the DDIM step from ``s_a`` to ``s_b`` taken with
that mean moves ``x_b`` by ``(1 - c / s_a) s_a^2 g``, with ``c = sqrt(s_b^2 - std^2)`` and
``std = eta s_b sqrt(1 - s_b^2/s_a^2)`` (Song et al. 2021, Eq. 12), capped per sample where the
network's Jacobian stops being a covariance (``invdiff.solvers.tweedie``; without the cap a
trained prior gives NaN within 25 steps). ``scale`` multiplies it (1 = the Tweedie weight).
The paper's setting: ``eta = 1``, 100 steps. No clamping.

The noise grid is the ``grid`` hyperparameter (``"ddpm"``, ``"linear"``, ``"karras"``) with
``sigma_max``, declared once for all grid-walking solvers (``invdiff.solvers.common.GRID_HYPERS``)
and built by ``invdiff.diffusion.grid_sigmas``; the default is ``"ddpm"``, which measured best on
held-out Fashion-MNIST random70 images (``"linear"`` 0.5-0.6 dB lower at 50-100 NFE, ``"karras"``
within the noise; ``benchmarks/results/grids/``)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.diffusion.steps import ddim_coefficients
from invdiff.noise import Gaussian, Noise, gaussian_sigma
from invdiff.operators.base import Operator, SVDOperator, significant
from invdiff.priors.base import Prior, posterior_variance
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, PosteriorBound, Solver, Step
from invdiff.solvers.common import solver_grid, with_grid
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.tweedie import posterior_mean_shift


@SOLVERS.register("pigdm")
class PiGDM(Solver):
    """PiGDM (Song et al. 2023, Eq. 7) with the exact SVD inverse; Gaussian noise."""

    requires_operator = SVDOperator
    requires_noise = (Gaussian,)
    nfe_per_step = 1
    contract = ContractSetting(
        steps=8,
        # Gaussian approximation of p(x0 | x_t) with r_t^2 = s^2 / (1 + s^2); measured 0.23
        posterior=(PosteriorBound("cs", 30, 0.4),),
    )
    hypers: ClassVar[dict[str, Hyper]] = with_grid(
        {
            "eta": Hyper(
                1.0,
                "stochasticity of the DDIM step (0: deterministic)",
                ge=0,
                le=1,
                search=(0.0, 1.0),
            ),
            "scale": Hyper(1.0, "multiplier of the pseudo-inverse guidance", search=(0.2, 5.0)),
        },
        "ddpm",
    )
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
        hp = self.hyperparameters(hyper)
        eta, scale = float(hp["eta"]), float(hp["scale"])
        sigma_y = gaussian_sigma(noise)
        sigmas = solver_grid(prior, steps, hp)
        sigmas_next = sigmas[1:] + [0.0]
        n, device = y.shape[0], y.device
        shape = (n, *prior.in_shape)
        s = operator.singular_values.to(device, y.dtype)
        # singular values at round-off level count as zero, as in ``pinv`` (for noiseless y the
        # weight is 1 / s: it would divide the round-off of U^T y by itself)
        observed = significant(s)
        ut_y = operator.Ut(y)

        z = torch.empty(shape, device=generator.device)
        x = math.sqrt(1 + sigmas[0] ** 2) * z.normal_(generator=generator).to(device)
        for i, (sa, sb) in enumerate(zip(sigmas, sigmas_next)):
            r2 = posterior_variance(sa, prior.sigma_data)
            with torch.enable_grad():
                xa = x.detach().requires_grad_(True)
                x0 = prior.x0(xa, sa)
                # A^T (r^2 A A^T + sigma_y^2)^{-1} (y - A x0_hat) in spectral form
                denom = r2 * s**2 + sigma_y**2
                weight = torch.where(
                    observed,
                    s / torch.where(observed, denom, torch.ones_like(denom)),
                    torch.zeros_like(s),
                )
                m = s.numel()
                resid = ut_y - s * operator.Vt(x0.detach())[:, :m]
                v = operator.V(operator.pad_spectral(weight * resid))
                (g,) = torch.autograd.grad(x0, xa, grad_outputs=v)
            x0 = x0.detach()
            eps = (xa.detach() - x0) / sa
            c, std = ddim_coefficients(sa, sb, eta)
            # the DDIM step taken with E[x0 | x_a, y] = x0_hat + s_a^2 g (Tweedie) in place of
            # x0_hat moves x_b by (1 - c / s_a) s_a^2 g: a weight that shrinks with the step
            shift = posterior_mean_shift(g, v, sa, prior.sigma_data)
            x = x0 + c * eps + (scale * (1 - c / sa)) * shift
            if std > 0:
                x = x + std * z.normal_(generator=generator).to(device)
            if callback is not None:
                callback(Step(i, steps, x, x0, sb))
        return x
