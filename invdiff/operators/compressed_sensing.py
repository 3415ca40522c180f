"""Compressed sensing: ``y = A vec(x)`` with a dense Gaussian matrix ``A`` (``m x n``).

``A_ij ~ N(0, 1/m)`` (so ``E ||A x||^2 = ||x||^2``; Candès & Tao 2006), drawn from a generator
at construction. Its SVD ``A = U diag(s) V^T``
(``torch.linalg.svd``, float64, with ``V`` completed to an ``n x n`` orthogonal matrix by a
QR of the row space) is computed once; ``y`` is a vector ``N x m``. Full ``V`` is ``n x n``,
so inputs are limited to
``n = C*H*W <= 4096`` (e.g. 1 x 64 x 64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from invdiff.operators.base import SVDOperator
from invdiff.operators.validation import make_generator, shape3
from invdiff.registry import OPERATORS

MAX_INPUTS = 4096


@OPERATORS.register("compressed_sensing")
class CompressedSensing(SVDOperator):
    """``m = round(ratio * n)`` (default ratio 0.25) or ``measurements=m`` Gaussian measurements."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        ratio: float | None = None,
        measurements: int | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ):
        shape = shape3(in_shape)
        n = math.prod(shape)
        if n > MAX_INPUTS:
            raise ValueError(
                f"compressed_sensing keeps a dense n x n SVD; n = C*H*W must be <= {MAX_INPUTS}, "
                f"got {n}"
            )
        if ratio is not None and measurements is not None:
            raise ValueError("give either ratio= or measurements=, not both")
        if measurements is None:
            ratio = 0.25 if ratio is None else float(ratio)
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
            measurements = max(1, int(round(ratio * n)))
        if (
            isinstance(measurements, bool)
            or not isinstance(measurements, int)
            or not 1 <= measurements <= n
        ):
            raise ValueError(f"measurements must be an int in [1, n={n}], got {measurements!r}")
        g = make_generator(generator, seed)
        super().__init__(shape)
        m = measurements
        a = torch.randn(m, n, generator=g, dtype=torch.float64, device=g.device).cpu() / math.sqrt(
            m
        )
        # thin SVD, then the null space of A completed by a QR (much cheaper than a full SVD)
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        if m < n:
            q, _ = torch.linalg.qr(vh.T, mode="complete")
            vh = torch.cat([vh, q[:, m:].T], dim=0)
        self.register_precise_buffer("matrix_", a)
        self.register_precise_buffer("left", u)  # m x m
        self.register_precise_buffer("right_t", vh)  # n x n, rows = right singular vectors
        self.register_precise_buffer("singular_values", s)

    def out_shape(self) -> tuple[int, ...]:
        return (self.num_measurements,)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x.reshape(x.shape[0], -1) @ self._like(self.matrix_, x).T

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return (y @ self._like(self.matrix_, y)).reshape(y.shape[0], *self.in_shape)

    def Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self._like(self.right_t, x).T

    def V(self, z: Tensor) -> Tensor:
        return (z @ self._like(self.right_t, z)).reshape(z.shape[0], *self.in_shape)

    def U(self, z: Tensor) -> Tensor:
        return z @ self._like(self.left, z).T

    def Ut(self, y: Tensor) -> Tensor:
        return y @ self._like(self.left, y)

    @torch.no_grad()
    def measurement_bound(self) -> float:
        """The exact largest ``|A x|`` over images in [-1, 1]: the largest row L1 norm (random
        Gaussian rows have mixed signs, so no constant image attains it)."""
        return float(self.matrix_.abs().sum(1).max())

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, measurements={self.num_measurements}"

    @classmethod
    def example(cls) -> CompressedSensing:
        return cls(in_shape=(1, 4, 6), measurements=10, seed=5)
