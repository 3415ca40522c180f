"""Scores of a posterior sampler: K samples per measurement against the truth.

A solver that samples ``p(x | y)`` is judged by more than the PSNR of one sample
(Jalal et al. 2021, "Robust compressed sensing MRI with deep generative priors", Sec. 4;
Sun & Bouman 2021, "Deep probabilistic imaging", uncertainty calibration). With ``samples``
``N x K x C x H x W`` (``K`` draws for each of ``N`` measurements) and the truth
``N x C x H x W``, all in [-1, 1]:

* ``posterior_mean_psnr``: PSNR of the per-pixel mean of the K samples (the MMSE estimate a
  sampler approximates; it beats one sample by about 3 dB on an exact sampler);
* ``best_of_k_psnr``: the best PSNR among the K samples (diversity that reaches the truth);
* ``coverage``: for each credibility level ``l``, the fraction of pixels whose truth lies in
  the central ``l`` credible interval of the samples. The interval is read off the truth's
  rank among the samples (its probability integral transform, PIT; Gneiting et al. 2007,
  "Probabilistic forecasts, calibration and sharpness"): with ``r = #{x_k < x}`` and ``t`` ties,
  the truth's PIT is uniform on the cell ``[r, r + t + 1] / (K + 1)`` (the randomised PIT), and
  a pixel counts with the fraction of that cell inside ``[(1 - l) / 2, (1 + l) / 2]``. For an
  exact sampler the truth is exchangeable with the samples, so the randomised PIT is exactly
  uniform and the expected coverage is ``l`` for any ``K``, with no randomness drawn; empirical
  quantile intervals would under-cover by about ``l (1 - (K - 1) / (K + 1))`` at small ``K``;
* ``calibration_curve``: the coverage over a grid of levels (nominal: the diagonal);
* ``measurement_consistency``: ``||A(x) - y|| / (sigma_y sqrt(m))`` per sample, about 1 for a
  sample of the posterior of a well-posed problem, below 1 when it over-fits the noise.

Coverage is computed per image (a fraction of its pixels), so intervals over images follow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from invdiff.metrics.fidelity import psnr

#: the credibility levels the tables report
LEVELS = (0.5, 0.9, 0.95)


def _check(samples: Tensor, truth: Tensor) -> None:
    if samples.ndim != 5 or tuple(samples.shape[:1] + samples.shape[2:]) != tuple(truth.shape):
        raise ValueError(
            "samples must be N x K x C x H x W and the truth N x C x H x W with the same N, C, "
            f"H, W; got {tuple(samples.shape)} and {tuple(truth.shape)}"
        )
    if samples.shape[1] < 2:
        raise ValueError(
            f"posterior scores need K >= 2 samples per measurement, got {samples.shape[1]}"
        )


def posterior_mean_std(samples: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel mean and standard deviation over the K samples (``N x C x H x W`` each)."""
    if samples.ndim != 5:
        raise ValueError(f"samples must be N x K x C x H x W, got {tuple(samples.shape)}")
    return samples.mean(1), samples.std(1, correction=1 if samples.shape[1] > 1 else 0)


def posterior_mean_psnr(samples: Tensor, truth: Tensor) -> Tensor:
    """PSNR of the posterior mean (the average of the K samples), per measurement."""
    _check(samples, truth)
    return psnr(samples.mean(1).clamp(-1, 1), truth)


def best_of_k_psnr(samples: Tensor, truth: Tensor) -> Tensor:
    """The best PSNR among the K samples, per measurement."""
    _check(samples, truth)
    n, k = samples.shape[:2]
    flat = samples.clamp(-1, 1).flatten(0, 1)
    scores = psnr(flat, truth.repeat_interleave(k, 0)).view(n, k)
    return scores.nan_to_num(nan=-math.inf).max(1).values


def pit(samples: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """The truth's PIT cell under the samples, per pixel: ``(low, high)`` with
    ``low = r / (K + 1)`` and ``high = (r + t + 1) / (K + 1)`` (module docstring)."""
    _check(samples, truth)
    below = (samples < truth[:, None]).sum(1).double()
    ties = (samples == truth[:, None]).sum(1).double()
    k1 = samples.shape[1] + 1
    return below / k1, (below + ties + 1) / k1


def coverage(samples: Tensor, truth: Tensor, levels: Sequence[float] = LEVELS) -> Tensor:
    """Fraction of pixels of each image inside the central credible interval of each level
    (the expected coverage under the randomised PIT): ``N x len(levels)``."""
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"credibility levels must be in (0, 1), got {level}")
    low, high = (v.flatten(1)[:, None, :] for v in pit(samples, truth))
    half = torch.tensor([lv / 2 for lv in levels], dtype=low.dtype, device=low.device)
    lo, hi = 0.5 - half[None, :, None], 0.5 + half[None, :, None]
    inside = (torch.minimum(high, hi) - torch.maximum(low, lo)).clamp_min(0) / (high - low)
    return inside.mean(2)


def calibration_curve(
    samples: Tensor, truth: Tensor, levels: Sequence[float] | None = None
) -> tuple[list[float], list[float]]:
    """``(levels, coverage)`` averaged over all pixels of all images (nominal: equal)."""
    grid = list(levels) if levels is not None else [round(0.05 * i, 2) for i in range(1, 20)]
    return grid, coverage(samples, truth, grid).mean(0).tolist()


def measurement_consistency(
    samples: Tensor, y: Tensor, forward: Callable[[Tensor], Tensor], sigma_y: float
) -> Tensor:
    """``||A(x) - y|| / (sigma_y sqrt(m))`` per sample (``N x K``), ``y`` one per measurement."""
    if sigma_y <= 0:
        raise ValueError("measurement consistency is relative to the noise: it needs sigma_y > 0")
    n, k = samples.shape[:2]
    with torch.no_grad():
        ax = forward(samples.flatten(0, 1))
    r = (ax - y.repeat_interleave(k, 0)).flatten(1)
    return (r.norm(dim=1) / (sigma_y * math.sqrt(r.shape[1]))).view(n, k)


@dataclass(frozen=True)
class PosteriorDraws:
    """What the benchmark's posterior metrics see for one batch: ``samples`` ``N x K x ...``,
    the ``truth``, the measurements ``y`` (one per image), the forward map and ``sigma_y``
    (0 for noiseless or non-Gaussian measurements)."""

    samples: Tensor
    truth: Tensor
    y: Tensor
    forward: Callable[[Tensor], Tensor]
    sigma_y: float


def _coverage_at(level: float) -> Callable[[PosteriorDraws], Tensor]:
    def score(d: PosteriorDraws) -> Tensor:
        return coverage(d.samples, d.truth, [level])[:, 0]

    return score


def _consistency(d: PosteriorDraws) -> Tensor:
    if d.sigma_y <= 0:  # relative to the noise: undefined without it
        return torch.full((d.samples.shape[0],), math.nan)
    return measurement_consistency(d.samples, d.y, d.forward, d.sigma_y).mean(1)


#: the benchmark's posterior metrics: name -> (score of a batch, higher is better, title, fmt,
#: target: the ideal value where that is not an extreme)
POSTERIOR_SCORES: dict[
    str, tuple[Callable[[PosteriorDraws], Tensor], bool, str, str, float | None]
] = {
    "psnr_mean": (
        lambda d: posterior_mean_psnr(d.samples, d.truth),
        True,
        "PSNR of the posterior mean [dB]",
        "{:.2f}",
        None,
    ),
    "psnr_best": (
        lambda d: best_of_k_psnr(d.samples, d.truth),
        True,
        "best-of-K PSNR [dB]",
        "{:.2f}",
        None,
    ),
    **{
        f"coverage{int(lv * 100)}": (
            _coverage_at(lv),
            True,
            f"coverage of the {int(lv * 100)}% credible interval (nominal {lv:g})",
            "{:.3f}",
            lv,
        )
        for lv in LEVELS
    },
    "consistency": (
        _consistency,
        False,
        "||A(x) - y|| / (sigma_y sqrt(m))",
        "{:.2f}",
        1.0,
    ),
}
