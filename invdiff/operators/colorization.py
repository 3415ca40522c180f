"""Colorization: an RGB image observed in gray, ``y = sum_c w_c x_c`` (one output channel).

``weights="mean"`` (default, DDRM's colorization: ``w = (1/3, 1/3, 1/3)``) or ``"luma"`` (ITU-R
BT.601: 0.299, 0.587, 0.114). Per pixel ``A = w^T``, so ``s = ||w||``, ``U`` the identity on
gray pixels, and ``V^T`` an orthogonal 3 x 3 map per pixel whose first row is ``w / ||w||``
(Kawar et al. 2022, App. A). The first ``H*W`` spectral coordinates are the gray ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from invdiff.operators.base import SVDOperator
from invdiff.operators.validation import shape3
from invdiff.registry import OPERATORS

WEIGHTS = {"mean": (1 / 3, 1 / 3, 1 / 3), "luma": (0.299, 0.587, 0.114)}


@OPERATORS.register("colorization")
class Colorization(SVDOperator):
    """RGB -> gray; ``in_shape`` must have 3 channels (default (3, 32, 32))."""

    def __init__(
        self, in_shape: Sequence[int] | None = None, weights: str | Sequence[float] = "mean"
    ):
        shape = shape3(in_shape, default=(3, 32, 32))
        if shape[0] != 3:
            raise ValueError(
                f"colorization needs RGB input: in_shape must have 3 channels, got {shape}"
            )
        if isinstance(weights, str):
            if weights not in WEIGHTS:
                raise ValueError(
                    f"weights must be one of {', '.join(map(repr, WEIGHTS))} or 3 numbers, "
                    f"got {weights!r}"
                )
            w = torch.tensor(WEIGHTS[weights], dtype=torch.float64)
        else:
            w = torch.as_tensor(weights, dtype=torch.float64)
            if w.shape != (3,) or not torch.isfinite(w).all() or float(w.norm()) == 0:
                raise ValueError(f"weights must be 3 finite numbers, not all zero, got {weights!r}")
        super().__init__(shape)
        # an orthogonal basis whose first vector is w / ||w||
        q, _ = torch.linalg.qr(
            torch.cat([w[:, None], torch.eye(3, dtype=torch.float64)], dim=1)[:, :3]
        )
        q = q * torch.sign(q[:, :1].T @ w)  # first column +w/||w||
        basis = q.T.contiguous()
        basis[0] = w / w.norm()
        _, h, ww = shape
        self.register_precise_buffer("weights", w)
        self.register_precise_buffer("basis", basis)
        self.register_precise_buffer(
            "singular_values", torch.full((h * ww,), float(w.norm()), dtype=torch.float64)
        )

    def out_shape(self) -> tuple[int, ...]:
        return (1, *self.in_shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return torch.einsum("c,nchw->nhw", self._like(self.weights, x), x)[:, None]

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return self._like(self.weights, y)[None, :, None, None] * y

    def Vt(self, x: Tensor) -> Tensor:
        return torch.einsum("kc,nchw->nkhw", self._like(self.basis, x), x).reshape(x.shape[0], -1)

    def V(self, z: Tensor) -> Tensor:
        _, h, w = self.in_shape
        return torch.einsum(
            "kc,nkhw->nchw", self._like(self.basis, z), z.reshape(z.shape[0], 3, h, w)
        )

    def U(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.out_shape())

    def Ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    @classmethod
    def example(cls) -> Colorization:
        return cls(in_shape=(3, 4, 5), weights="luma")
