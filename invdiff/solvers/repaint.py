"""RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic
Models", CVPR; Algorithm 1, Eq. 8-9, resampling schedule of Sec. 4.2 / Fig. 3).

Every reverse step combines two halves (Alg. 1, l. 5-8; Eq. 8):

    x_{t-1}^known   = y noised to level t-1               (Eq. 8, top)
    x_{t-1}^unknown = DDPM step from x_t (Ho et al. 2020)  (Eq. 8, middle)
    x_{t-1}         = m * x_{t-1}^known + (1 - m) * x_{t-1}^unknown   (Eq. 8, bottom)

and the resampling ("jumps", Eq. 9, Sec. 4.2) walks ``jump_length`` steps back up the chain
with the forward process ``q(x_t | x_{t-1})`` ``jump_n_sample - 1`` times at every
``jump_length``-th level, to harmonise the two halves. Paper setting: T = 250 levels,
``jump_length = 10``, ``jump_n_sample = 10`` (about ten network evaluations per level).
``steps`` is T, the number of levels of the noise grid; the number of network
evaluations is about ``steps * jump_n_sample``.

Everything runs in sigma-space (``x_sigma = x_t / sqrt(abar_t)``; the DDPM posterior and the forward
step ``x_up = x + sqrt(s_up^2 - s^2) z`` are exact there between any two levels, so the chain and
its jumps stay exact on a continuous grid). The noise grid is the ``grid`` hyperparameter
(``"ddpm"``, ``"linear"``, ``"karras"``) with ``sigma_max``, declared once for all grid-walking
solvers (``invdiff.solvers.common.GRID_HYPERS``) and built by ``invdiff.diffusion.grid_sigmas``; the
default is ``"ddpm"``, the paper's grid (the other grids were not measured against it for RePaint).

Measurement noise (not in the paper, which assumes clean pixels): the observed pixels of ``y``
already carry noise of standard deviation ``sigma_y``. The known half at level ``s`` is
``y + sqrt(s^2 - sigma_y^2) z``, which has exactly the marginal of ``x + s z`` on the observed
pixels; it replaces the unknown half only while ``s >= sigma_y``. Below ``sigma_y`` the prior
alone finishes the chain, so the final observed pixels are a prior-denoised version of ``y``
instead of a copy of its noise. For ``sigma_y = 0`` this is the paper's algorithm and the
observed pixels equal ``y`` exactly. The last step returns a sample of ``p(x0 | x_min)``, not
its mean (``invdiff.solvers.tweedie.last_step_spread``): with ``sigma_y`` at the prior's
smallest level the observed pixels otherwise come out 20x tighter than the posterior's.
``clip_x0`` clamps the denoiser output to [-1, 1] inside
the chain as the reference implementation does (guided-diffusion's ``clip_denoised``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from invdiff.diffusion.steps import ddpm_step, renoise
from invdiff.noise import Gaussian, Noise, gaussian_sigma
from invdiff.operators.base import Operator, SVDOperator
from invdiff.priors.base import Prior
from invdiff.registry import SOLVERS
from invdiff.solvers.base import Callback, ContractSetting, PosteriorBound, Solver, Step
from invdiff.solvers.common import solver_grid, with_grid
from invdiff.solvers.costs import Budget
from invdiff.solvers.hyper import Hyper
from invdiff.solvers.tweedie import last_step_spread, measured_spread


def jump_schedule(levels: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """RePaint's resampling schedule (Lugmayr et al. 2022, Sec. 4.2; ``get_schedule_jump``).

    Level indices from ``levels`` (pure noise) down to ``0`` (clean); a step to a lower index is
    a reverse (denoising) step, a step to a higher index a forward (re-noising) step. Every
    ``jump_length``-th level is revisited ``jump_n_sample - 1`` times by jumping
    ``jump_length`` levels back up. ``jump_n_sample = 1`` gives the plain chain.
    """
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError(
            f"jump_length and jump_n_sample must be >= 1, got {jump_length}, {jump_n_sample}"
        )
    jumps = {j: jump_n_sample - 1 for j in range(0, levels - jump_length, jump_length)}
    t = levels
    schedule = [t]
    while t >= 1:
        t -= 1
        schedule.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump_length):
                t += 1
                schedule.append(t)
    return schedule


def jump_budget(levels: int, jump_length: int, jump_n_sample: int) -> Budget:
    """One network evaluation per downward step of the jump schedule (resampling included)."""
    schedule = jump_schedule(levels, jump_length, jump_n_sample)
    return Budget(sum(b < a for a, b in zip(schedule[:-1], schedule[1:])))


@SOLVERS.register("repaint")
class RePaint(Solver):
    """RePaint inpainting (Lugmayr et al. 2022, Alg. 1); needs an inpainting operator."""

    requires_operator = SVDOperator
    requires_noise = (Gaussian,)
    requires_inpainting = True
    contract = ContractSetting(
        steps=6,
        hyper={"jump_length": 2, "jump_n_sample": 2},
        # replacement with resampling; with 20 levels and short jumps it stays approximate
        # (the resampling couples known and unknown pixels); measured 0.41
        posterior=(PosteriorBound("inpainting", 20, 0.55, {"jump_length": 4, "jump_n_sample": 4}),),
    )
    hypers: ClassVar[dict[str, Hyper]] = with_grid(
        {
            "jump_length": Hyper(10, "levels walked back up per resampling jump (Sec. 4.2)", ge=1),
            "jump_n_sample": Hyper(10, "visits of each jump level (1: no resampling)", ge=1),
            "clip_x0": Hyper(True, "clamp the denoiser output to [-1, 1] (reference code)"),
        },
        "ddpm",
    )

    def cost(self, steps: int, hp: dict[str, Any], prior: Prior | None) -> Budget:
        return jump_budget(steps, int(hp["jump_length"]), int(hp["jump_n_sample"]))

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
        schedule = jump_schedule(steps, int(hp["jump_length"]), int(hp["jump_n_sample"]))
        sigma_y = gaussian_sigma(noise)
        # level index k -> sigma: 0 is clean, k = 1..steps are the prior's grid (ascending)
        levels = [0.0, *reversed(solver_grid(prior, steps, hp))]
        n, device = y.shape[0], y.device
        shape = (n, *prior.in_shape)
        mask = operator.mask.to(device=device, dtype=y.dtype)
        known = y * mask  # y is the masked image at full size
        # the noise level of each pixel's measurement (inf where missing)
        level = torch.where(
            mask > 0, torch.full_like(mask, sigma_y), torch.full_like(mask, math.inf)
        )

        z = torch.empty(shape, device=generator.device)
        x = math.sqrt(1 + levels[-1] ** 2) * z.normal_(generator=generator).to(device)
        x0 = None
        total = len(schedule) - 1
        for i, (k, k_next) in enumerate(zip(schedule[:-1], schedule[1:])):
            sa, sb = levels[k], levels[k_next]
            if k_next > k:  # resampling: forward step q(x_{t+1} | x_t) (Alg. 1, l. 10)
                x = renoise(x, sa, sb, z.normal_(generator=generator).to(device))
            else:
                with torch.no_grad():
                    x0 = prior.x0(x, sa)
                if hp["clip_x0"]:
                    x0 = x0.clamp(-1, 1)
                fresh = z.normal_(generator=generator).to(device) if sb > 0 else None
                x = ddpm_step(x, x0, sa, sb, fresh)
                if sb == 0:  # a sample of p(x0 | x_a), not its mean (tweedie.last_step_spread)
                    spread = measured_spread(last_step_spread(sa, prior.sigma_data), level)
                    x = x + spread * z.normal_(generator=generator).to(device)
                if sb >= sigma_y:
                    extra = math.sqrt(max(sb**2 - sigma_y**2, 0.0))
                    x_known = known + extra * z.normal_(generator=generator).to(device)
                    x = mask * x_known + (1 - mask) * x
            if callback is not None:
                callback(Step(i, total, x, x0, sb))
        return x
