"""Diffusion Posterior Sampling (Chung et al. 2023, "Diffusion Posterior Sampling for General
Noisy Inverse Problems", ICLR; Algorithms 1 and 2).

DPS runs ancestral DDPM steps (Ho et al. 2020, Eq. 6-7) on a noise grid and, after
each step, moves the iterate down the gradient of the measurement misfit evaluated at the
Tweedie estimate ``x0_hat(x_t)`` (Eq. 16), differentiating through the network:

    x'_{t-1} = DDPM step from x_t with x0_hat(x_t)                          (Alg. 1, l. 4-6)
    x_{t-1}  = x'_{t-1} - zeta_t * grad_{x_t} 1/2 ||y - A(x0_hat(x_t))||^2    (Alg. 1, l. 7)
    zeta_t   = zeta / ||y - A(x0_hat(x_t))||                                (App. C.4)

with the norm taken **per sample** (the reference code divides by the norm over the whole
batch, which couples the samples). Written with the half squared norm, this update equals
``zeta * grad ||y - A(x0_hat)||``, the step the released code takes with ``scale = zeta``, so
the paper's step sizes (zeta = 1 for most tasks) carry over. That step length does not depend
on ``sigma_y``: the paper's algorithm gives the same samples for any noise level. It is kept as
``likelihood="paper"`` for reproductions.

The default, ``likelihood="gaussian"``, follows the paper's own likelihood (Eq. 11-16,
``p(y | x_t) ~= N(y; A(x0_hat), v_t I)``) with the variance that makes it consistent at every
noise level: ``v_t = sigma_y^2 + ||A||^2 Var(x0 | x_t)``, the measurement noise plus the
denoiser's own uncertainty carried through ``A`` (the annealed likelihood of Jalal et al. 2021;
``Var(x0 | x_t) = s^2 sigma_data^2 / (s^2 + sigma_data^2)``, PiGDM's ``r_t^2``). Tweedie's
formula turns its score into a posterior mean, ``E[x0 | x_t, y] = x0_hat + s_t^2 grad log
p(y | x_t)``, and the DDPM step taken from that mean moves the iterate by
``(1 - (s_{t-1}/s_t)^2) s_t^2 grad log p(y | x_t)``: a weight that shrinks with the step, so
more steps refine the sample instead of adding guidance (``invdiff.solvers.tweedie``, where the
shift is also capped where a trained network's Jacobian stops being a covariance). ``||A||^2``
is exact for an ``SVDOperator``, a power iteration for another linear operator and 1 for a
nonlinear one. The scalar ``v_t`` weighs all directions of ``A`` alike: on operators whose
singular values spread widely (blur, dense compressed sensing) it under-uses the weakly
measured directions, which PiGDM's spectral form resolves.

Poisson noise (Alg. 2, Eq. 19-20): the shot-noise likelihood is replaced by a Gaussian with
the per-pixel variance estimated from ``y`` itself, i.e. a weighted least squares
``||y - A(x0_hat)||^2_Lambda`` with ``Lambda_jj = Var(y_j) ~= 2 (y_j + 1) / rate`` in the
[-1, 1] range (``invdiff.noise.Poisson``; floored at one photon). The weights
``Lambda^{-1/2}`` are normalised to unit mean square per sample, so only the relative weighting
of the pixels changes and the step length stays set by ``zeta`` as in the Gaussian case
(``likelihood="paper"``; the default form puts ``Var(y_j)`` in ``v_t`` as it is).

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

The noise grid is the ``grid`` hyperparameter (``"ddpm"``, ``"linear"``, ``"karras"``) with
``sigma_max``, declared once for all grid-walking solvers (``invdiff.solvers.common.GRID_HYPERS``)
and built by ``invdiff.diffusion.grid_sigmas``; the default is ``"ddpm"``, the paper's grid (the
other grids were not measured against it for DPS). The DDPM posterior above is the Brownian bridge
between *any* two levels ``s_a > s_b`` (``invdiff.diffusion.ddpm_step``), so the ancestral chain
stays exact on a continuous grid; the VP scales ``sqrt(1 + s^2)`` of the paper's step are defined at
any level too."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.diffusion.steps import ddpm_step
from invdiff.noise import Gaussian, Noise, Poisson
from invdiff.operators.base import LinearOperator, Operator, operator_norm_sq
from invdiff.priors.base import Prior, posterior_variance
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, PosteriorBound, Solver, Step
from invdiff.solvers.common import solver_grid, with_grid
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.tweedie import posterior_mean_shift

#: ``"gaussian"``: the noise-aware step; ``"paper"``: the released zeta / ||r|| step
LIKELIHOODS = ("gaussian", "paper")


def _column(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def _likelihood_scale(operator: Operator, shape: tuple[int, ...], device: torch.device) -> float:
    """``||A||^2`` for a linear operator (power iteration on a fixed seed), 1 otherwise.

    It sizes the denoiser's uncertainty ``r_t^2 ||A||^2`` in the measurement space; a fixed
    seed so that estimating it draws nothing from the caller's generator.
    """
    if not isinstance(operator, LinearOperator):
        return 1.0
    local = torch.Generator(device=device).manual_seed(0)
    return float(operator_norm_sq(operator, shape, local, device))


@SOLVERS.register("dps")
class DPS(Solver):
    """Diffusion Posterior Sampling (Chung et al. 2023, Alg. 1 Gaussian / Alg. 2 Poisson).

    ``likelihood = "gaussian"`` (the default) uses the measurement noise: the step is the
    Tweedie posterior-mean correction of the noisy likelihood ``N(y; A(x0_hat), v_t I)``,
    ``v_t = sigma_y^2 + r_t^2 ||A||^2`` (module docstring). ``likelihood = "paper"`` is the
    released algorithm, whose step ``zeta / ||y - A(x0_hat)||`` does not depend on
    ``sigma_y``: use it to reproduce the paper's tables. Hyperparameters: ``zeta`` (the step
    scale: zeta' of App. C.4 for ``"paper"``, 1.0 in the paper for inpainting,
    super-resolution and deblurring; a multiplier of the likelihood step for ``"gaussian"``).
    ``steps`` is the number of DDPM steps on the prior's grid (the paper uses all 1000).
    """

    requires_operator = Operator
    requires_noise = (Gaussian, Poisson)
    nfe_per_step = 1
    contract = ContractSetting(
        steps=8,
        # ancestral steps + the one-step likelihood approximation, approximate by design
        # (an honest DPS lands at 0.1-0.3 of the prior's distance); measured 0.21
        posterior=(PosteriorBound("inpainting", 100, 0.35),),
    )
    hypers: ClassVar[dict[str, Hyper]] = with_grid(
        {
            "zeta": Hyper(
                1.0, "step scale of the data gradient (App. C.4)", ge=0, search=(0.1, 10.0)
            ),
            "likelihood": Hyper(
                "gaussian", "the data step: noise-aware or the paper's", choices=LIKELIHOODS
            ),
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
        zeta = float(hp["zeta"])
        likelihood = hp["likelihood"]
        sigmas = solver_grid(prior, steps, hp)
        sigmas_next = sigmas[1:] + [0.0]
        n, device = y.shape[0], y.device
        shape = (n, *prior.in_shape)

        # Per-entry measurement variance: sigma_y^2, or Var(y_j) for Poisson noise (Alg. 2).
        if isinstance(noise, Poisson):
            variance = (2 * (y + 1) / noise.rate).clamp_min(4 / noise.rate**2)
        else:
            variance = torch.full((), float(noise.sigma) ** 2, dtype=y.dtype, device=device)
        if likelihood == "paper":
            # relative weights (unit mean square per sample): only the weighting between
            # pixels matters; the step length stays set by zeta as in the Gaussian case
            weight = variance.rsqrt() if isinstance(noise, Poisson) else torch.ones_like(variance)
            weight = (
                weight
                / weight.pow(2).flatten(1).mean(1).sqrt().view(-1, *([1] * (weight.ndim - 1)))
                if weight.ndim
                else weight
            )
        else:
            norm_sq = _likelihood_scale(operator, prior.in_shape, device)
        # One buffer on the generator's device, refilled from the caller's generator each step.
        z = torch.empty(shape, device=generator.device)
        x = math.sqrt(1 + sigmas[0] ** 2) * z.normal_(generator=generator).to(device)
        for i, (sa, sb) in enumerate(zip(sigmas, sigmas_next)):
            if likelihood == "paper":
                inv_var = weight.pow(2)
            else:
                # v_t = Var(y | x0) + ||A||^2 Var(x0 | x_a)
                inv_var = (
                    variance + norm_sq * posterior_variance(sa, prior.sigma_data)
                ).reciprocal()
            with torch.enable_grad():
                xa = x.detach().requires_grad_(True)
                x0 = prior.x0(xa, sa)
                # u = grad_{x0} 1/2 ||y - A(x0)||^2_W at x0_hat, then J^T u through the network
                x0_leaf = x0.detach().requires_grad_(True)
                residual = y - operator(x0_leaf)
                sq = (residual.pow(2) * inv_var).flatten(1).sum(1)  # per sample
                (u,) = torch.autograd.grad(0.5 * sq.sum(), x0_leaf)
                (grad,) = torch.autograd.grad(x0, xa, grad_outputs=u)
            x0 = x0.detach()
            ratio = (sb / sa) ** 2
            fresh = z.normal_(generator=generator).to(device) if sb > 0 else None
            x = ddpm_step(xa.detach(), x0, sa, sb, fresh)
            if likelihood == "paper":
                step = (
                    zeta
                    * math.sqrt(1 + sb**2)
                    * math.sqrt(1 + sa**2)
                    / sq.detach().sqrt().clamp_min(1e-12)
                )
                x = x - _column(step, x) * grad
            else:
                # E[x0 | x_a, y] = x0_hat + s_a^2 grad log p(y | x_a) (Tweedie), carried into
                # the DDPM posterior mean with weight 1 - (s_b / s_a)^2
                shift = posterior_mean_shift(grad, u, sa, prior.sigma_data)
                x = x - (zeta * (1 - ratio)) * shift
            if callback is not None:
                callback(Step(i, steps, x, x0, sb))
        return x
