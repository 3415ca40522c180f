"""Super-resolution: average pooling (``SVDOperator``), bicubic downsampling (``LinearOperator``).

**Average pooling** (``super_resolution``): ``y = mean`` of each ``f x f`` block. On one block
``A_b = (1/f^2) 1^T``, so its SVD is ``s = 1/f`` with right singular vector ``1/f`` (the
normalised block sum). ``V^T`` maps each block by an orthogonal Helmert matrix (first row
``1/f``): the first ``C*(H/f)*(W/f)`` coordinates are the block sums ``/f``, the rest the
within-block contrasts; ``U`` is the identity on the low-resolution pixels (DDRM, Kawar et al.
2022, App. A).

**Bicubic downsampling** (``bicubic_downsampling``): antialiased bicubic resampling (Keys
kernel, ``a = -0.5``, stretched by ``f``: ``k(t) = w(t / f) / f``, ``4f`` taps per axis), the
scheme of PIL's ``Image.resize(BICUBIC)``, MATLAB's ``imresize`` and deepinv's
``bicubic_filter``. Output pixel ``j`` is centred at input position ``(j + 1/2) f - 1/2`` (PIL's
alignment; deepinv's ``Downsampling`` samples at ``j f + 1/2``, the same for ``f = 2`` and a
shift of ``f/2 - 1`` pixels otherwise). The image is padded (``reflect`` by default) by
``3f/2`` pixels per side. Adjoint: the exact transpose (strided transposed convolution,
padding folded back); ``pinv``: conjugate gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators import padding as padding_
from invdiff.operators.base import LinearOperator, SVDOperator
from invdiff.operators.validation import choice, factor_of, shape3
from invdiff.registry import OPERATORS

PADDINGS = ("reflect", "replicate", "zeros", "circular")


def helmert(n: int) -> Tensor:
    """The ``n x n`` orthogonal Helmert matrix: first row ``1/sqrt(n)``, then contrasts."""
    q = torch.zeros(n, n, dtype=torch.float64)
    q[0] = 1 / math.sqrt(n)
    for k in range(1, n):
        q[k, :k] = 1 / math.sqrt(k * (k + 1))
        q[k, k] = -k / math.sqrt(k * (k + 1))
    return q


@OPERATORS.register("super_resolution")
class SuperResolution(SVDOperator):
    """``y = AvgPool_f(x)``, ``factor`` f in 2, 4, 8 (default 4), output ``C x H/f x W/f``."""

    def __init__(self, in_shape: Sequence[int] | None = None, factor: int = 4):
        shape = shape3(in_shape)
        self.factor = factor_of("factor", factor, shape)
        super().__init__(shape)
        c, h, w = shape
        m = c * (h // factor) * (w // factor)
        self.register_precise_buffer("helmert", helmert(factor * factor))
        self.register_precise_buffer(
            "singular_values", torch.full((m,), 1.0 / factor, dtype=torch.float64)
        )

    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.in_shape
        return (c, h // self.factor, w // self.factor)

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(self.check_input(x), self.factor)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        f = self.factor
        return y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3) / (f * f)

    def pinv(self, y: Tensor, **_: object) -> Tensor:
        """Nearest-neighbour upsampling (exact: all singular values are equal)."""
        self.check_measurement(y)
        f = self.factor
        return y.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)

    def Vt(self, x: Tensor) -> Tensor:
        n, (c, h, w), f = x.shape[0], self.in_shape, self.factor
        blocks = F.pixel_unshuffle(x, f).reshape(n, c, f * f, h // f, w // f)
        coeffs = torch.einsum("kb,ncbhw->nkchw", self._like(self.helmert, x), blocks)
        return coeffs.reshape(n, -1)

    def V(self, z: Tensor) -> Tensor:
        n, (c, h, w), f = z.shape[0], self.in_shape, self.factor
        coeffs = z.reshape(n, f * f, c, h // f, w // f)
        blocks = torch.einsum("kb,nkchw->ncbhw", self._like(self.helmert, z), coeffs)
        return F.pixel_shuffle(blocks.reshape(n, c * f * f, h // f, w // f), f)

    def U(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.out_shape())

    def Ut(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], -1)

    @classmethod
    def example(cls) -> SuperResolution:
        return cls(in_shape=(2, 4, 8), factor=2)


def bicubic_weights(factor: int) -> Tensor:
    """The normalised 1-D antialiased bicubic filter (``4 factor`` taps, Keys ``a = -0.5``)."""
    t = (torch.arange(4 * factor, dtype=torch.float64) - 2 * factor + 0.5) / factor
    a, t = -0.5, t.abs()
    w = torch.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        torch.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, torch.zeros_like(t)),
    )
    return w / w.sum()


@OPERATORS.register("bicubic_downsampling")
class BicubicDownsampling(LinearOperator):
    """Antialiased bicubic downsampling by ``factor`` (2, 4, 8; default 4), ``padding`` reflect."""

    def __init__(
        self, in_shape: Sequence[int] | None = None, factor: int = 4, padding: str = "reflect"
    ):
        shape = shape3(in_shape)
        self.factor = factor_of("factor", factor, shape)
        choice("padding", padding, PADDINGS)
        pad = 3 * factor // 2
        _, h, w = shape
        if padding == "reflect" and (pad >= h or pad >= w):
            raise ValueError(
                f"reflect padding by {pad} pixels (factor {factor}) "
                f"needs H and W > {pad}, got {h} x {w}; "
                "use padding='replicate' or 'zeros'"
            )
        if padding == "circular" and (pad > h or pad > w):
            raise ValueError(
                f"circular padding by {pad} pixels (factor {factor}) needs H and W >= {pad}, "
                f"got {h} x {w}"
            )
        super().__init__(shape)
        self.padding = padding
        self.register_precise_buffer("weights", bicubic_weights(factor))
        self.register_buffer("pad_index", padding_.pad_index(h, w, pad, pad, pad, pad, padding))

    def out_shape(self) -> tuple[int, ...]:
        c, h, w = self.in_shape
        return (c, h // self.factor, w // self.factor)

    def _kernel(self, t: Tensor) -> Tensor:
        w1 = self._like(self.weights, t)
        f = self.factor
        return torch.outer(w1, w1).expand(self.in_shape[0], 1, 4 * f, 4 * f)  # symmetric: no flip

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        (c, h, w), f = self.in_shape, self.factor
        xp = padding_.pad(x, self.pad_index, h + 3 * f, w + 3 * f)
        return F.conv2d(xp, self._kernel(x), stride=f, groups=c)

    def adjoint(self, y: Tensor) -> Tensor:
        """``P^T K^T y``: strided transposed convolution (``H + 3f`` wide), padding folded back."""
        self.check_measurement(y)
        (c, h, w), f = self.in_shape, self.factor
        yp = F.conv_transpose2d(y, self._kernel(y), stride=f, groups=c)
        return padding_.pad_adjoint(yp, self.pad_index, h, w)

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, factor={self.factor}, padding={self.padding!r}"

    @classmethod
    def example(cls) -> BicubicDownsampling:
        return cls(in_shape=(1, 8, 8), factor=2)
