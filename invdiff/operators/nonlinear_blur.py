"""Nonlinear blur: a fixed, randomly drawn two-layer convolutional network (nonlinear).

DPS (Chung et al. 2023, Sec. 4) and DAPS use the "nonlinear blur" of Tran et al. (CVPR 2021), a
pretrained network mapping a sharp image and a blur code to a blurry image. No such weights can
be shipped here, so this operator keeps its spirit with a fixed random network seeded from a
generator: blur-like positive kernels, a smooth saturation, and a second blur-like mixing,

    h_d = tanh(g_d * (k_d * x)) / tanh(g_d),        d = 1..hidden,
    y_c = sum_d (m_cd * h_d),

where ``k_d`` (``C -> 1``, ``size x size``) and ``m_cd`` (``hidden -> C``, 3 x 3) are
non-negative and each sums to 1 (a softmax of Gaussian logits under a Gaussian envelope) and
``g_d`` in [1, 3]. Every layer is a convex combination, so ``y`` stays in [-1, 1]. Convolutions
use replicate padding (any image size). Deterministic once built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import Operator
from invdiff.operators.validation import make_generator, odd_size, shape3
from invdiff.registry import OPERATORS


def _convex_kernels(out: int, inp: int, size: int, generator: torch.Generator) -> Tensor:
    t = torch.arange(size, dtype=torch.float64) - size // 2
    envelope = -(t[:, None] ** 2 + t[None, :] ** 2) / (2 * (size / 3) ** 2)
    logits = torch.randn(
        out, inp, size, size, generator=generator, dtype=torch.float64, device=generator.device
    ).cpu()
    w = torch.softmax((logits + envelope).reshape(out, -1), dim=1)
    return w.reshape(out, inp, size, size)


@OPERATORS.register("nonlinear_blur")
class NonlinearBlur(Operator):
    """A fixed random conv net (``hidden`` channels, first kernel ``size``), ``seed`` default 0."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        size: int = 5,
        hidden: int = 8,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ):
        shape = shape3(in_shape)
        odd_size("size", size)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an int >= 1, got {hidden!r}")
        g = make_generator(generator, seed)
        super().__init__(shape)
        c = shape[0]
        self.register_precise_buffer("kernels1", _convex_kernels(hidden, c, size, g))
        gains = 1 + 2 * torch.rand(hidden, generator=g, dtype=torch.float64, device=g.device).cpu()
        self.register_precise_buffer("gains", gains)
        self.register_precise_buffer("kernels2", _convex_kernels(c, hidden, 3, g))

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        k1, k2 = self._like(self.kernels1, x), self._like(self.kernels2, x)
        g = self._like(self.gains, x)[None, :, None, None]
        p1, p2 = k1.shape[-1] // 2, 1
        h = F.conv2d(F.pad(x, (p1, p1, p1, p1), mode="replicate"), k1)
        h = torch.tanh(g * h) / torch.tanh(g)
        return F.conv2d(F.pad(h, (p2, p2, p2, p2), mode="replicate"), k2)

    @classmethod
    def example(cls) -> NonlinearBlur:
        return cls(in_shape=(2, 6, 5), size=3, hidden=3, seed=7)
