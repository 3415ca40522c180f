"""Antialiased bicubic resizing as torch and PIL compute it (``bicubic_resize``).

``y = resize(x)`` to ``H/f x W/f`` with ``F.interpolate(mode="bicubic", antialias=True)``: the
Keys kernel (``a = -0.5``) stretched by ``f`` (``4f`` taps per axis), output pixel ``j`` centred
at input position ``(j + 1/2) f - 1/2``, and at the border the taps that fall outside the image
dropped and the remaining weights renormalised to sum to one (PIL's ``Image.resize(BICUBIC)``).
In the interior it equals ``bicubic_downsampling``; the two differ only in the ``3f/2`` border
pixels, where that operator pads the image instead.

This is the degradation the SR3 priors are trained on (``invdiff.priors.sr3.downsample`` calls
``bicubic_resize`` below), so ``SR3Prior.degradation`` is this operator and a problem measured
with it is the one the prior's conditioning expects. It is linear; the adjoint is the exact
transpose by autograd and ``pinv`` is conjugate gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from invdiff.operators.base import LinearOperator
from invdiff.operators.validation import factor_of, shape3
from invdiff.registry import OPERATORS


def bicubic_resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bicubic resizing of ``N x C x H x W`` images to ``size`` (torch / PIL rule)."""
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)


@OPERATORS.register("bicubic_resize")
class BicubicResize(LinearOperator):
    """Antialiased bicubic downsizing by ``factor`` (2, 4, 8; default 4), border weights
    renormalised: the SR3 training degradation."""

    def __init__(self, in_shape: Sequence[int] | None = None, factor: int = 4):
        shape = shape3(in_shape)
        self.factor = factor_of("factor", factor, shape)
        super().__init__(shape)

    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.in_shape
        return (c, h // self.factor, w // self.factor)

    def _resize(self, x: Tensor) -> Tensor:
        _, h, w = self.out_shape()
        return bicubic_resize(x, (h, w))

    def forward(self, x: Tensor) -> Tensor:
        return self._resize(self.check_input(x))

    def adjoint(self, y: Tensor) -> Tensor:
        return self.adjoint_by_autograd(self._resize, self.check_measurement(y))

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, factor={self.factor}"

    @classmethod
    def example(cls) -> BicubicResize:
        return cls(in_shape=(1, 8, 8), factor=2)
