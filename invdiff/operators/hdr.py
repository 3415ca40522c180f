"""High dynamic range reconstruction: a saturating sensor (nonlinear).

The HDR task of DAPS (Zhang et al. 2024, App. C) observes ``y = clip(scale * x, -1, 1)``: the
image is over-exposed by ``scale`` (default 2) and saturates. ``clip`` has zero gradient in
the saturated region, which starves gradient-based solvers, so by default the sensor
saturates smoothly, ``y = tanh(scale * x)`` (same slope ``scale`` at 0, same limits);
``smooth=False`` gives the hard clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from invdiff.operators.base import Operator
from invdiff.operators.validation import positive, shape3
from invdiff.registry import OPERATORS


@OPERATORS.register("hdr")
class HDR(Operator):
    """``y = tanh(scale x)`` (``smooth=True``, default) or ``clip(scale x, -1, 1)``."""

    def __init__(
        self, in_shape: Sequence[int] | None = None, scale: float = 2.0, smooth: bool = True
    ):
        shape = shape3(in_shape)
        self.scale = positive("scale", scale)
        if not isinstance(smooth, bool):
            raise TypeError(f"smooth must be True or False, got {smooth!r}")
        super().__init__(shape)
        self.smooth = smooth

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return torch.tanh(self.scale * x) if self.smooth else (self.scale * x).clamp(-1, 1)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, scale={self.scale}, smooth={self.smooth}"

    @classmethod
    def example(cls) -> HDR:
        return cls(in_shape=(3, 4, 4), scale=1.5)
