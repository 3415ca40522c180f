"""Denoising Diffusion Null-space Models (Wang, Yu & Zhang 2023, "Zero-Shot Image Restoration
Using Denoising Diffusion Null-Space Model", ICLR; Alg. 1-2, Eq. 13-19, Sec. 3.3-3.4).

Range-null space decomposition (Eq. 13): a consistent estimate keeps the null-space part of the
denoiser's ``x0|t`` and takes the range-space part from ``y``:

    xhat_0|t = A^+ y + (I - A^+ A) x0|t = x0|t - A^+ (A x0|t - y)                   (Eq. 13)
    x_{t-1} ~ p(x_{t-1} | x_t, xhat_0|t)       (the DDPM posterior, Alg. 1, l. 5)

DDNM+ for noisy ``y`` (Sec. 3.3, Eq. 17-19): the correction is scaled, ``xhat_0|t = x0|t -
Sigma_t A^+ (A x0|t - y)``, and the noise of the step is reduced to ``Phi_t`` so that the
noise ``A^+ n`` carried into ``xhat_0|t`` plus the fresh noise add up to the level of
``x_{t-1}``. With ``A = U diag(s) V^T`` both are diagonal in ``V``: for ``s_i > 0``

    lambda_i = 1                                   if sigma_t >= a_t sigma_y / s_i
             = sigma_t s_i / (a_t sigma_y)         otherwise                            (Eq. 19)
    gamma_i  = sigma_t^2 - (a_t lambda_i sigma_y / s_i)^2                              (Eq. 18)

(``lambda_i = 1``, ``gamma_i = sigma_t^2`` where ``s_i = 0`` or ``sigma_y = 0``), where ``a_t``
is the weight of ``x0`` in the posterior mean and ``sigma_t`` the posterior standard deviation.

Eq. 18-19 treat the noise ``A^+ n`` in ``xhat_0|t`` as fresh at every step, but it is the same
realisation each time: it is carried forward in ``x_t`` and added again, so the samples
over-fit ``y`` more with every step (on the test bed, a noisy blur went from 0.81 to 1.81 times
the prior's distance to the exact posterior between 20 and 200 steps). Here each spectral
coordinate tracks ``kappa_i``, the coefficient of that realisation already in the iterate; the
step's noise budget is
``kappa_{t-1}^2 l_i^2 + q^2 (s_t^2 - kappa_t^2 l_i^2) + gamma_i^2 = s_{t-1}^2`` (``l_i = sigma_y /
s_i``, ``q`` the weight kept on ``x_t``, ``kappa_{t-1} = (1 - q) lambda_i + q kappa_t``), and
``lambda_i`` is the largest value in [0, 1] that fits it. With ``kappa_t = 0`` this is Eq. 19
exactly; the last step returns a sample of ``p(x0 | x_min)`` on the noisily measured coordinates
(``invdiff.solvers.tweedie.last_step_spread``).

Crossing a coordinate's noise level. Eq. 19 gives ``lambda_i < 1`` once ``sigma_t`` falls below
``a_t sigma_y / s_i`` (and 0 at the last step), which keeps ``x0|t`` there: the denoiser's
reading at ``s_a`` of an iterate that is ``ybar`` plus noise. On the paper's 1000-level grid
that level is read finely; on a 50-step grid the step goes from 0.08 to 0.01 at once and the
samples missed ``y`` by 2.5-5 times the exact posterior's residual (Gaussian-mixture test bed,
``sigma_y = 0.01``). At the step from ``s_a >= sigma_y / s_i`` to ``s_b < sigma_y / s_i``, ``x0``
is drawn from ``p(x0 | x_a, ybar)`` in its Gaussian view (``tweedie.exchange_measurement``, with
the coherence ``kappa`` of the iterate's ``ybar`` noise), after which the coordinate carries a
posterior draw and takes no more ``ybar`` (``lambda_i = 0``): the residual is then 1.0-1.3 times
the exact one in every setting of ``benchmarks/results/posterior/grid.txt``.

This module runs in sigma-space (``x_sigma = x_t / sqrt(abar_t)``) on a noise grid, where the
step from level ``s_a`` to ``s_b`` is ``x_b = xhat0 + c (x_a - xhat0) / s_a + sigma_t z`` with
the paper code's ``eta`` (``functions/svd_ddnm.py``: ``c1 = sigma_b eta``, ``c2 = sigma_b
sqrt(1 - eta^2)``; ``invdiff.diffusion.steps.fresh_noise_coefficients``): ``sigma_t = eta s_b``,
``c = sqrt(1 - eta^2) s_b``, so ``a_t = 1 - c / s_a``; the code's default is ``eta = 0.85``.
Alg. 1 writes the DDPM posterior, which on the paper's 1000-step grid is close to it; on a
strided grid the DDPM posterior keeps ``(s_b / s_a)^2`` of the noise, far less fresh noise, and
the null space lost the most: with DDIM's ``eta = 1`` instead, random 70 % inpainting on 8
Fashion-MNIST ``val`` images at 100 NFE gave 18.1 dB, against 22.6 dB with this step at
``eta = 1`` (21.2 at 0.85), and its null-space error was 1.5 times DDRM's. (Both the ratio
``a_t / sigma_t`` in Eq. 19 and the step are unchanged by the per-level VP scale.)

Time travel (Sec. 3.4, Alg. 3): RePaint's resampling schedule (``travel_length`` levels back,
``travel_repeat`` times; 1 = off, the default) with forward steps ``x + sqrt(s_up^2 - s^2) z``.
No clamping (the paper's algorithm has none).

The noise grid is the ``grid`` hyperparameter (``"ddpm"``, ``"linear"``, ``"karras"``) with
``sigma_max``, declared once for all grid-walking solvers (``invdiff.solvers.common.GRID_HYPERS``)
and built by ``invdiff.diffusion.grid_sigmas``; the default is ``"ddpm"``, the paper's grid (the
other grids were not measured against it for DDNM)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.diffusion.steps import fresh_noise_coefficients, renoise
from invdiff.noise import Gaussian, Noise, gaussian_sigma
from invdiff.operators.base import RCOND, Operator, SVDOperator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, PosteriorBound, Solver, Step
from invdiff.solvers.common import solver_grid, with_grid
from invdiff.solvers.costs import Budget
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.repaint import jump_budget, jump_schedule
from invdiff.solvers.tweedie import (
    crossing_steps,
    exchange_measurement,
    last_step_spread,
    measured_spread,
)


@SOLVERS.register("ddnm")
class DDNM(Solver):
    """DDNM (noiseless ``y``) / DDNM+ (noisy ``y``), Wang et al. 2023, for SVD operators."""

    requires_operator = SVDOperator
    requires_noise = (Gaussian,)
    contract = ContractSetting(
        steps=8,
        hyper={"travel_length": 2, "travel_repeat": 2},
        # DDNM+ (noisy y): the range/null-space projection with the Sec. 3.3 scaling; measured
        # 0.20
        posterior=(PosteriorBound("cs", 30, 0.35),),
    )
    hypers: ClassVar[dict[str, Hyper]] = with_grid(
        {
            "eta": Hyper(
                0.85,
                "fraction of each level that is fresh noise (the paper code's eta; 0: none)",
                ge=0,
                le=1,
                search=(0.0, 1.0),
            ),
            "travel_length": Hyper(1, "time-travel jump length (Sec. 3.3)", ge=1),
            "travel_repeat": Hyper(1, "time-travel repeats per jump (1: none)", ge=1),
            "rcond": Hyper(3e-2, "relative cut-off of singular values when y is noisy", ge=0, le=1),
        },
        "ddpm",
    )

    def cost(self, steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
        return jump_budget(steps, int(hp["travel_length"]), int(hp["travel_repeat"]))

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
        eta = float(hp["eta"])
        schedule = jump_schedule(steps, int(hp["travel_length"]), int(hp["travel_repeat"]))
        sigma_y = gaussian_sigma(noise)
        levels = [0.0, *reversed(solver_grid(prior, steps, hp))]
        n, device = y.shape[0], y.device
        dim = math.prod(prior.in_shape)

        # singular values below rcond * max(s) count as zero when y is noisy (the DDRM / DDNM
        # code's 3e-2 for deblurring): y / s_i there is mostly the same noise realisation at
        # every step, which Eq. 19 treats as fresh, and it compounds over the steps
        rcond = float(hp["rcond"]) if sigma_y > 0 else RCOND
        ybar, s, observed = operator.spectral_measurement(y, rcond=rcond)
        s_safe = torch.where(observed, s.abs(), torch.ones_like(s))
        level_y = torch.where(observed, sigma_y / s_safe, torch.zeros_like(s))  # std of ybar_i
        level_y_safe = torch.where(level_y > 0, level_y, torch.ones_like(s))
        level_y_last = torch.where(observed, level_y, torch.full_like(s, math.inf))
        # the coefficient of ybar's noise realisation in the iterate, per coordinate
        kappa = torch.zeros_like(s)
        crossed = torch.zeros_like(observed)  # coordinates whose x0 was drawn given ybar

        z = torch.empty((n, dim), device=generator.device)
        x = math.sqrt(1 + levels[-1] ** 2) * operator.V(z.normal_(generator=generator).to(device))
        x0 = None
        total = len(schedule) - 1
        pairs = [(levels[k], levels[k_next]) for k, k_next in zip(schedule[:-1], schedule[1:])]
        crosses = crossing_steps(level_y, pairs)
        for i, (k, k_next) in enumerate(zip(schedule[:-1], schedule[1:])):
            sa, sb = levels[k], levels[k_next]
            if k_next > k:  # time travel: forward diffusion back up (Alg. 3)
                x = renoise(x, sa, sb, operator.V(z.normal_(generator=generator).to(device)))
            else:
                with torch.no_grad():
                    x0 = prior.x0(x, sa)
                c, std = fresh_noise_coefficients(sb, eta)
                q = c / sa
                # Eq. 18-19 with the noise of ybar counted once: x_a already carries
                # kappa * (that noise), the same realisation, so the largest lambda keeps the
                # coherent part plus the fresh part at the level of x_b
                budget = (std**2 / level_y_safe**2 + (q * kappa) ** 2).sqrt()
                lam = ((budget - q * kappa) / (1 - q)).clamp(0, 1)
                lam = torch.where(level_y > 0, lam, torch.ones_like(s))
                lam = torch.where(observed, lam, torch.zeros_like(s))
                x0bar = operator.Vt(x0)
                # the step past a coordinate's noise level sigma_y / s_i: Eq. 19's lambda < 1
                # would keep x0|t, the denoiser's reading of ybar blurred to sa, on the
                # coordinates y measures best. Draw x0 there from p(x0 | x_a, ybar) instead
                # (tweedie.exchange_measurement, with the coherence kappa of the iterate's
                # ybar noise); the coordinate then carries a posterior draw and no more ybar
                draw = z.normal_(generator=generator)  # drawn at every step: one random stream
                if crosses[i]:
                    crossing = (
                        observed & (level_y > 0) & (level_y <= sa) & (sb < level_y) & ~crossed
                    )
                    drawn, drawn_spread = exchange_measurement(
                        x0bar, operator.Vt(x), sa, ybar, level_y_safe, prior.sigma_data, kappa
                    )
                    x0bar = torch.where(crossing, drawn + drawn_spread * draw.to(device), x0bar)
                    crossed = crossed | crossing
                else:
                    crossing = torch.zeros_like(observed)
                lam = torch.where(crossed, torch.zeros_like(lam), lam)
                kappa = torch.where(crossed, torch.zeros_like(kappa), kappa)
                kappa_next = (1 - q) * lam + q * kappa
                gamma = (std**2 + ((q * kappa) ** 2 - kappa_next**2) * level_y**2).clamp_min(0)
                kappa = kappa_next
                xhat0 = operator.V(x0bar - lam * (x0bar - ybar))  # Eq. 13 / 17
                x = (
                    xhat0
                    + (c / sa) * (x - xhat0)
                    + operator.V(gamma.sqrt() * z.normal_(generator=generator).to(device))
                )
                if sb == 0:  # a sample of p(x0 | x_a), not its mean (tweedie.last_step_spread)
                    spread = measured_spread(last_step_spread(sa, prior.sigma_data), level_y_last)
                    spread = torch.where(crossing, torch.zeros_like(spread), spread)  # drawn
                    x = x + operator.V(spread * z.normal_(generator=generator).to(device))
                x0 = xhat0
            if callback is not None:
                callback(Step(i, total, x, x0, sb))
        return x
