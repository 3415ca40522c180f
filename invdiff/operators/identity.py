"""Denoising: the identity operator ``A = I``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from invdiff.operators.base import SVDOperator
from invdiff.operators.validation import shape3
from invdiff.registry import OPERATORS


@OPERATORS.register("identity")
class Identity(SVDOperator):
    """``y = x`` (denoising). SVD: ``U = V = I`` (pixels in C, H, W order), singular values 1."""

    def __init__(self, in_shape: Sequence[int] | None = None):
        super().__init__(shape3(in_shape))
        self.register_buffer("singular_values", torch.ones(math.prod(self.in_shape)))

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def forward(self, x: Tensor) -> Tensor:
        return self.check_input(x).clone()

    def adjoint(self, y: Tensor) -> Tensor:
        return self.check_measurement(y).clone()

    def pinv(self, y: Tensor, **_: object) -> Tensor:
        return self.check_measurement(y).clone()

    def U(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.in_shape)

    def Ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    V = U
    Vt = Ut

    @classmethod
    def example(cls) -> Identity:
        return cls(in_shape=(2, 3, 4))
