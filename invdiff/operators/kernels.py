"""Blur kernels: Gaussian, uniform and random motion trajectories (Levin / Borodenko style).

All kernels are 2-D float64 tensors of odd size, non-negative and normalised to sum 1, with
their centre at ``(size // 2, size // 2)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from invdiff.operators.validation import make_generator, numpy_seed, odd_size, positive


def gaussian_kernel(size: int, sigma: float) -> Tensor:
    """``k[i, j] ∝ exp(-((i - c)^2 + (j - c)^2) / (2 sigma^2))``, ``c = size // 2``, sum 1.

    The isotropic Gaussian of DPS (Chung et al. 2023, Sec. 4: 61 x 61, sigma 3.0).
    """
    size = odd_size("size", size)
    sigma = positive("sigma", sigma)
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return k / k.sum()


def uniform_kernel(size: int) -> Tensor:
    """The ``size x size`` box ``1 / size^2`` (DDRM's uniform deblurring uses 9 x 9)."""
    size = odd_size("size", size)
    return torch.full((size, size), 1.0 / size**2, dtype=torch.float64)


def _segment_distance(px: np.ndarray, py: np.ndarray, a: complex, b: complex) -> np.ndarray:
    """Distance from the points ``(px, py)`` to the segment from ``a`` to ``b`` (complex plane)."""
    d = b - a
    length2 = abs(d) ** 2
    p = px + 1j * py
    if length2 == 0:
        return np.abs(p - a)
    t = np.clip(((p - a) * np.conj(d)).real / length2, 0.0, 1.0)
    return np.abs(p - (a + t * d))


def _gaussian_blur_np(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1)
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    img = np.apply_along_axis(lambda r: np.convolve(r, g, mode="same"), 0, img)
    return np.apply_along_axis(lambda r: np.convolve(r, g, mode="same"), 1, img)


def motion_kernel(
    size: int = 9,
    intensity: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """A random camera-shake kernel: a random trajectory drawn as a thin line, then normalised.

    The trajectory follows L. Borodenko's ``motionblur`` (after Levin et al., CVPR 2009), the
    generator used by DPS (Chung et al. 2023) for its motion-deblurring task (61 x 61,
    ``intensity=0.5``): a path of ``Beta(1, 30)``-distributed steps whose total length grows
    with ``intensity``, with turning angles up to ``intensity * pi`` that change sign with a
    ``Beta(2, 20)`` jitter probability. The path is drawn on a canvas twice the kernel size,
    smoothed by a Gaussian (radius 1% of the canvas diagonal, as in the reference), reduced by
    2 x 2 averaging (the reference resizes with Lanczos) and normalised to sum 1.
    ``intensity`` in [0, 1]: 0 gives short straight strokes, 1 long curly ones.
    """
    size = odd_size("size", size)
    intensity = float(intensity)
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must lie in [0, 1], got {intensity}")
    rng = np.random.default_rng(numpy_seed(make_generator(generator, seed)))
    big = 2 * size
    diagonal = math.hypot(big, big)
    eps = 1e-12

    # step lengths
    max_path_len = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_path_len:
        step = rng.beta(1, 30) * (1 - intensity + eps) * diagonal
        if step < max_path_len:
            steps.append(step)
    # turning angles
    max_angle = rng.uniform(0, intensity * math.pi)
    jitter = rng.beta(2, 20)
    angles = [rng.uniform(-max_angle, max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + eps)
        sign = np.sign(angles[-1]) or 1.0
        angles.append(-angle * sign if rng.uniform() < jitter else angle * sign)
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    path = (path - path.mean()) * np.exp(1j * rng.uniform(0, math.pi)) + (big - 1) / 2 * (1 + 1j)

    # draw the path (line half-width as in the reference: diagonal / 150, at least one pixel)
    half_width = max(int(diagonal / 150), 1) / 2 + 0.25
    py, px = np.mgrid[0:big, 0:big].astype(np.float64)
    canvas = np.zeros((big, big))
    points = np.concatenate([path[:1], path]) if len(path) == 1 else path
    for a, b in zip(points[:-1], points[1:]):
        canvas = np.maximum(
            canvas, (_segment_distance(px, py, a, b) <= half_width).astype(np.float64)
        )
    radius = int(diagonal * 0.01)
    if radius > 0:
        canvas = _gaussian_blur_np(canvas, radius)
    k = canvas.reshape(size, 2, size, 2).mean(axis=(1, 3))
    if k.sum() <= 0:  # the path left the canvas entirely (cannot happen when centred); be safe
        k[size // 2, size // 2] = 1.0
    return torch.from_numpy(k / k.sum())
