"""Unconditional samplers: draw ``x0 ~ p_data`` from a prior, in the k-diffusion style.

Every sampler is a small function with one signature::

    x = sampler(prior, n, *, steps, generator, callback=None, cond=None, **options)

returning ``n x C x H x W`` samples of ``prior.in_shape`` (latents for a latent prior: decode
them with ``prior.decode``; for a conditional prior pass ``cond``, one row per sample). All of
them work in sigma-space, ``x_sigma = x0 + sigma * eps`` (Karras et al. 2022, "EDM"), with the
Tweedie denoiser ``D(x, sigma) = prior.x0(x, sigma) = E[x0 | x_sigma = x]``:

* ``ddpm``: ancestral sampling on the prior's own VP grid (Ho et al. 2020);
* ``ddim``: the DDIM family with parameter ``eta`` (Song, Meng & Ermon 2021);
* ``heun``: Karras et al. 2022, Algorithms 1 and 2 (optional stochastic churn ``S_churn``);
* ``predictor_corrector``: reverse-diffusion predictor + Langevin corrector (Song et al. 2021,
  "Score-based generative modeling through SDEs", Algorithms 2 and 4);
* ``probability_flow``: the probability-flow ODE integrated in sigma (Euler or RK4).

The VP chain and sigma-space are one chain: ``x_sigma = x_t / sqrt(abar_t)`` with
``sigma_t^2 = (1 - abar_t) / abar_t``, so the DDPM/DDIM updates below are the papers' updates
rescaled, and run on ``prior.sigmas`` without interpolation.

``callback`` receives an ``invdiff.diffusion.Step`` after every step; ``steps`` counts
steps (for ``ddpm``/``ddim`` it is also the number of network evaluations). Samples in a batch
are independent: every norm or step size is per sample.

    g = torch.Generator().manual_seed(0)
    x = invdiff.samplers.get("heun")(prior, 16, steps=18, generator=g)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from invdiff.diffusion.schedules import prior_karras_sigmas, vp_sigmas_for_steps
from invdiff.diffusion.steps import Callback, Step, ddim_step, ddpm_step
from invdiff.priors.base import Prior
from invdiff.registry import Registry


class Sampler(Protocol):
    def __call__(
        self,
        prior: Prior,
        n: int,
        *,
        steps: int,
        generator: torch.Generator | int,
        callback: Callback | None = None,
        cond: Tensor | None = None,
    ) -> Tensor: ...


#: name -> sampler function (``invdiff.samplers.get(name)``, ``invdiff.samplers.names()``).
SAMPLERS: Registry = Registry("sampler")


def get(name: str) -> Sampler:
    """The sampler function registered as ``name``."""
    return SAMPLERS.entry(name)


def names() -> list[str]:
    return SAMPLERS.names()


# ----------------------------------------------------------------------------- shared helpers


def _setup(
    prior: Prior, n: int, steps: int, generator: torch.Generator | int, cond: Tensor | None
) -> torch.Generator:
    """Validate the common arguments before any network evaluation; return a generator."""
    if not isinstance(prior, Prior):
        raise TypeError(f"prior must be an invdiff Prior, got {type(prior).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of samples) must be a positive integer, got {n!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(generator, int) and not isinstance(generator, bool):
        generator = torch.Generator(device=prior.device).manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            "generator must be a torch.Generator or an int seed (invdiff never uses global "
            f"randomness), got {type(generator).__name__}"
        )
    if cond is not None:
        if not isinstance(cond, Tensor) or cond.ndim < 1 or cond.shape[0] != n:
            shape = tuple(cond.shape) if isinstance(cond, Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a tensor with one row per sample (n={n}), got {shape}")
    return generator


def _randn(n: int, prior: Prior, generator: torch.Generator) -> Tensor:
    """Standard normal ``n x C x H x W`` drawn on the generator's device, moved to the prior's."""
    z = torch.randn((n, *prior.in_shape), generator=generator, device=generator.device)
    return z.to(prior.device)


def _progress(items: Iterable, total: int, name: str, progress: bool | None) -> Iterable:
    # ``disable=None`` hides the bar when stderr is not a terminal (tests, logs).
    return tqdm(
        items,
        total=total,
        desc=name,
        disable=None if progress is None else not progress,
        leave=False,
    )


def _emit(
    callback: Callback | None, index: int, total: int, x: Tensor, x0: Tensor | None, sigma: float
) -> None:
    if callback is not None:
        callback(Step(index=index, total=total, x=x, x0=x0, sigma=float(sigma)))


# ----------------------------------------------------------------------------- DDPM / DDIM


def ddpm(
    prior: Prior,
    n: int,
    *,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    cond: Tensor | None = None,
    progress: bool | None = None,
) -> Tensor:
    """Ancestral sampling on the prior's own VP grid (Ho et al. 2020, Algorithm 2).

    The grid points ``t_0 > t_1 > ... > t_{K-1} = 0`` are ``vp_indices(prior, steps)``. Between
    two of them, ``s < t`` (not necessarily adjacent), the forward chain is
    ``q(x_t | x_s) = N(sqrt(abar_t / abar_s) x_s, (1 - abar_t / abar_s) I)`` and the posterior is
    ``q(x_s | x_t, x0) = N(mu, beta_tilde I)`` with (Ho et al. 2020, Eqs. 6-7, for skipped steps)
    ``mu = sqrt(abar_s) (1 - abar_t/abar_s) / (1 - abar_t) x0
    + sqrt(abar_t/abar_s) (1 - abar_s) / (1 - abar_t) x_t``
    and ``beta_tilde = (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)``. In sigma-space
    (divide by ``sqrt(abar_s)``) this is the Brownian bridge
    ``x_s = x0 + (sigma_s / sigma_t)^2 (x_t - x0) + sigma_s sqrt(1 - sigma_s^2 / sigma_t^2) z``,
    with ``x0`` replaced by the denoiser ``D(x_t, sigma_t)``. The chain starts at
    ``x_T ~ N(0, (1 + sigma_T^2) I)`` (the VP prior ``N(0, I)`` rescaled) and the last step, from
    ``t = 0``, returns the denoised mean ``D(x, sigma_0)`` as the DDPM scheduler does.
    """
    generator = _setup(prior, n, steps, generator, cond)
    sigmas = vp_sigmas_for_steps(prior, steps).tolist()  # validates steps <= grid size
    x = _randn(n, prior, generator) * math.sqrt(1 + sigmas[0] ** 2)
    with torch.no_grad():
        for i in _progress(range(steps), steps, "ddpm", progress):
            s, s_next = sigmas[i], (sigmas[i + 1] if i + 1 < steps else 0.0)
            x0 = prior.x0(x, s, cond)
            if s_next == 0:
                x = x0
            else:
                x = ddpm_step(x, x0, s, s_next, _randn(n, prior, generator))
            _emit(callback, i, steps, x, x0, s_next)
    return x


def ddim(
    prior: Prior,
    n: int,
    *,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    cond: Tensor | None = None,
    eta: float = 0.0,
    progress: bool | None = None,
) -> Tensor:
    """DDIM sampling on the prior's own VP grid (Song, Meng & Ermon 2021, Eq. 12).

    Same grid and start as ``ddpm``; each step is ``ddim_step``:
    ``x_next = x0 + sqrt(sigma_next^2 - c^2) eps + c z`` with
    ``c = eta * sigma_next sqrt(1 - sigma_next^2/sigma^2)``. ``eta = 0`` is the deterministic
    DDIM (an Euler step of the probability-flow ODE in sigma), ``eta = 1`` equals ``ddpm``.
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    generator = _setup(prior, n, steps, generator, cond)
    sigmas = vp_sigmas_for_steps(prior, steps).tolist()
    x = _randn(n, prior, generator) * math.sqrt(1 + sigmas[0] ** 2)
    with torch.no_grad():
        for i in _progress(range(steps), steps, "ddim", progress):
            s, s_next = sigmas[i], (sigmas[i + 1] if i + 1 < steps else 0.0)
            x0 = prior.x0(x, s, cond)
            noise = _randn(n, prior, generator) if eta > 0 and s_next > 0 else None
            x = ddim_step(x, x0, s, s_next, eta, noise if noise is not None else 0.0)
            _emit(callback, i, steps, x, x0, s_next)
    return x


# ----------------------------------------------------------------------------- EDM Heun


def heun(
    prior: Prior,
    n: int,
    *,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    cond: Tensor | None = None,
    rho: float = 7.0,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    progress: bool | None = None,
) -> Tensor:
    """Heun's 2nd-order sampler (Karras et al. 2022, Algorithm 1; Algorithm 2 if ``s_churn > 0``).

    Noise levels ``sigma_0 > ... > sigma_{N-1}`` from Eq. 5 between the prior's extreme sigmas,
    then ``sigma_N = 0``; ``x ~ N(0, sigma_0^2 I)``. Step ``i``: churn
    ``gamma = min(S_churn / N, sqrt(2) - 1)`` when ``S_tmin <= sigma_i <= S_tmax``,
    ``sigma_hat = (1 + gamma) sigma_i``, ``x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise z``;
    Euler ``x' = x_hat + (sigma_{i+1} - sigma_hat) d`` with
    ``d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat``
    (the PF-ODE, Eq. 4 with ``sigma(t) = t``), then the trapezoidal correction with
    ``d' = (x' - D(x', sigma_{i+1})) / sigma_{i+1}`` unless ``sigma_{i+1} = 0``.
    ``2 N - 1`` network evaluations.
    """
    generator = _setup(prior, n, steps, generator, cond)
    sigmas = prior_karras_sigmas(prior, steps, rho).tolist() + [0.0]
    gamma_max = min(s_churn / steps, math.sqrt(2) - 1)
    x = _randn(n, prior, generator) * sigmas[0]
    with torch.no_grad():
        for i in _progress(range(steps), steps, "heun", progress):
            s, s_next = sigmas[i], sigmas[i + 1]
            gamma = gamma_max if s_tmin <= s <= s_tmax else 0.0
            s_hat = s * (1 + gamma)
            if gamma > 0:
                x = x + math.sqrt(s_hat**2 - s**2) * s_noise * _randn(n, prior, generator)
            x0 = prior.x0(x, s_hat, cond)
            d = (x - x0) / s_hat
            x_next = x + (s_next - s_hat) * d
            if s_next > 0:
                d_next = (x_next - prior.x0(x_next, s_next, cond)) / s_next
                x_next = x + (s_next - s_hat) * (d + d_next) / 2
            x = x_next
            _emit(callback, i, steps, x, x0, s_next)
    return x


# ----------------------------------------------------------------------------- Song et al. SDE


def predictor_corrector(
    prior: Prior,
    n: int,
    *,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    cond: Tensor | None = None,
    snr: float = 0.16,
    corrector_steps: int = 1,
    progress: bool | None = None,
) -> Tensor:
    """Predictor-corrector sampling of the VE SDE (Song et al. 2021, Algorithm 2, with Algorithm 4).

    Sigma-space is the VE SDE ``dx = sqrt(d sigma^2 / dt) dw``. Noise levels are geometric from
    ``sigma_max`` to ``sigma_min`` (as in the paper's VE models); ``x ~ N(0, sigma_max^2 I)``.
    Predictor (reverse diffusion, Eq. 47):
    ``x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z``.
    Corrector (annealed Langevin, Algorithm 4), ``corrector_steps`` times at ``sigma_{i+1}``:
    ``eps = 2 (snr ||z|| / ||s||)^2``, ``x <- x + eps s(x, sigma_{i+1}) + sqrt(2 eps) z``, with the
    norms taken per sample (the reference code averages them over the batch, which couples the
    samples). The score is ``s = (D(x, sigma) - x) / sigma^2``. A final Tweedie step returns
    ``D(x, sigma_min)`` (the paper's "denoise" option). ``steps (1 + corrector_steps) + 1``
    network evaluations.
    """
    if snr <= 0:
        raise ValueError(f"snr must be > 0, got {snr}")
    if (
        isinstance(corrector_steps, bool)
        or not isinstance(corrector_steps, int)
        or corrector_steps < 0
    ):
        raise ValueError(f"corrector_steps must be an integer >= 0, got {corrector_steps!r}")
    generator = _setup(prior, n, steps, generator, cond)
    log_hi, log_lo = math.log(prior.sigma_max), math.log(prior.sigma_min)
    sigmas = torch.linspace(log_hi, log_lo, steps + 1, dtype=torch.float64).exp().tolist()
    x = _randn(n, prior, generator) * sigmas[0]
    with torch.no_grad():
        for i in _progress(range(steps), steps, "predictor_corrector", progress):
            s, s_next = sigmas[i], sigmas[i + 1]
            x0 = prior.x0(x, s, cond)
            var = s**2 - s_next**2
            x = x + var * (x0 - x) / s**2 + math.sqrt(var) * _randn(n, prior, generator)
            for _ in range(corrector_steps):
                score = prior.score(x, s_next, cond)
                z = _randn(n, prior, generator)
                z_norm = z.flatten(1).norm(dim=1)
                g_norm = score.flatten(1).norm(dim=1).clamp_min(1e-12)
                step = (2 * (snr * z_norm / g_norm) ** 2).view(-1, *([1] * (x.ndim - 1)))
                x = x + step * score + (2 * step).sqrt() * z
            _emit(callback, i, steps, x, x0, s_next)
        x = prior.x0(x, sigmas[-1], cond)
    return x


# ----------------------------------------------------------------------------- PF-ODE


def probability_flow(
    prior: Prior,
    n: int,
    *,
    steps: int,
    generator: torch.Generator | int,
    callback: Callback | None = None,
    cond: Tensor | None = None,
    method: str = "rk4",
    rho: float = 7.0,
    progress: bool | None = None,
) -> Tensor:
    """The probability-flow ODE in sigma (Song et al. 2021, Eq. 13; Karras et al. 2022, Eq. 4).

    With ``sigma(t) = t`` the ODE is ``dx/dsigma = (x - D(x, sigma)) / sigma``, integrated from
    ``x ~ N(0, sigma_max^2 I)`` over the Eq. 5 schedule of ``steps`` levels with ``method``
    ``"euler"`` (1 evaluation a step) or classical ``"rk4"`` (4 a step), and a last Euler step
    from ``sigma_min`` to 0, which is exactly the Tweedie denoiser ``D(x, sigma_min)``.
    """
    methods = ("euler", "rk4")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}, got {method!r}")
    generator = _setup(prior, n, steps, generator, cond)
    sigmas = prior_karras_sigmas(prior, steps, rho).tolist() + [0.0]

    def velocity(x: Tensor, s: float) -> tuple[Tensor, Tensor]:
        x0 = prior.x0(x, s, cond)
        return (x - x0) / s, x0

    x = _randn(n, prior, generator) * sigmas[0]
    with torch.no_grad():
        for i in _progress(range(steps), steps, "probability_flow", progress):
            s, s_next = sigmas[i], sigmas[i + 1]
            h = s_next - s
            k1, x0 = velocity(x, s)
            if method == "euler" or s_next == 0:
                x = x + h * k1
            else:
                k2, _ = velocity(x + h / 2 * k1, s + h / 2)
                k3, _ = velocity(x + h / 2 * k2, s + h / 2)
                k4, _ = velocity(x + h * k3, s_next)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            _emit(callback, i, steps, x, x0, s_next)
    return x


for _name, _fn in {
    "ddpm": ddpm,
    "ddim": ddim,
    "heun": heun,
    "predictor_corrector": predictor_corrector,
    "probability_flow": probability_flow,
}.items():
    SAMPLERS.register(_name)(_fn)

__all__ = [
    "SAMPLERS",
    "Sampler",
    "ddim",
    "ddim_step",
    "ddpm",
    "get",
    "heun",
    "names",
    "predictor_corrector",
    "probability_flow",
]
