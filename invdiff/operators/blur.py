"""Blur: circular convolution (SVD through a real Fourier basis) and padded convolution.

Convolution convention (that of deepinv's ``conv2d``): ``y[i] = sum_a k[a] x[i - a + c]`` with
the kernel centre ``c = size // 2`` (kernels have odd sizes).

**Circular blur** (``gaussian_blur``, ``uniform_blur``, ``motion_blur``; ``SVDOperator``). With
periodic boundaries ``A`` is block-circulant, diagonalised by the 2-D DFT:
``F_o A x = K ⊙ F_o x`` with ``F_o`` the orthonormal DFT and ``K = DFT(k)`` of the kernel placed
around pixel (0, 0) (a kernel larger than the image is folded modulo the image size, which is
the exact circular convolution). To keep ``U`` and ``V`` real, ``V^T`` is the *real-packed*
orthonormal DFT: for each pair of conjugate frequencies ``(w, -w)`` the two coordinates
``sqrt(2) Re X(w)`` and ``sqrt(2) Im X(w)``, for each self-conjugate frequency (``w = -w``)
the single coordinate ``Re X(w)``. This map is orthogonal. ``K(w) = |K(w)| e^{i phi(w)}``
multiplies such a pair by ``|K|`` times a rotation by ``phi``, so ``A = U diag(|K|) V^T`` with
``U = V R``, ``R`` the block-diagonal rotation by ``phi`` (a sign on self-conjugate
frequencies). The singular values are ``|K(w)|`` sorted in descending order (see Hansen,
Nagy & O'Leary, *Deblurring Images*, SIAM 2006, Ch. 4; DDRM, Kawar et al. 2022, App. A).

**Padded blur** (``*_blur_padded``; ``LinearOperator``): the image is padded (``reflect`` by
default; ``replicate``, ``zeros`` or ``circular``) by ``size // 2`` on each side and
convolved without further padding, so ``y`` has the image's size. The adjoint is the exact
transpose (transposed convolution, then the padding folded back); ``pinv`` is conjugate
gradients on ``A^T A``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators import banks, kernels
from invdiff.operators import padding as padding_
from invdiff.operators.base import LinearOperator, SVDOperator
from invdiff.operators.validation import as_kernel, choice, shape3
from invdiff.registry import OPERATORS

PADDINGS = ("reflect", "replicate", "zeros", "circular")


def fold_kernel(kernel: Tensor, h: int, w: int) -> Tensor:
    """The ``h x w`` periodic image of ``kernel`` with its centre at pixel (0, 0).

    Entries are summed modulo the image size, so a kernel larger than the image gives the
    exact circular convolution.
    """
    kh, kw = kernel.shape
    rows = (torch.arange(kh) - kh // 2) % h
    cols = (torch.arange(kw) - kw // 2) % w
    full = torch.zeros(h, w, dtype=kernel.dtype)
    full.index_put_(
        (rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel, accumulate=True
    )
    return full


def real_fourier_layout(h: int, w: int) -> dict[str, Tensor]:
    """Index maps between the (flat) ``h x (w//2+1)`` half spectrum and ``h*w`` real coordinates.

    Coordinates: first the ``s`` self-conjugate frequencies (their real part), then the real
    parts of the ``r`` representative frequencies of conjugate pairs, then their imaginary parts
    (``s + 2r = h*w``). Returned: ``self_idx``, ``rep_idx`` (half-spectrum positions) and, for
    every half-spectrum position, ``re_src``/``re_scale`` and ``im_src``/``im_scale`` such that
    ``Re X = re_scale * c[re_src]``, ``Im X = im_scale * c[im_src]``.
    """
    wr = w // 2 + 1
    self_idx, rep_idx, red = [], [], []  # red: (position, partner position)
    for i in range(h):
        for j in range(wr):
            q = i * wr + j
            if 0 < j and 2 * j < w:  # column with its conjugate outside the half spectrum
                rep_idx.append(q)
                continue
            partner = (-i) % h  # columns 0 and w/2 are conjugate-symmetric within themselves
            if partner == i:
                self_idx.append(q)
            elif i < partner:
                rep_idx.append(q)
            else:
                red.append((q, partner * wr + j))
    s, r = len(self_idx), len(rep_idx)
    assert s + 2 * r == h * w
    size = h * wr
    re_src = torch.zeros(size, dtype=torch.long)
    im_src = torch.zeros(size, dtype=torch.long)
    re_scale = torch.zeros(size, dtype=torch.float64)
    im_scale = torch.zeros(size, dtype=torch.float64)
    for k, q in enumerate(self_idx):
        re_src[q], re_scale[q] = k, 1.0
    rep_pos = {q: k for k, q in enumerate(rep_idx)}
    inv_sqrt2 = 1 / math.sqrt(2)
    for k, q in enumerate(rep_idx):
        re_src[q], re_scale[q] = s + k, inv_sqrt2
        im_src[q], im_scale[q] = s + r + k, inv_sqrt2
    for q, p in red:
        k = rep_pos[p]
        re_src[q], re_scale[q] = s + k, inv_sqrt2
        im_src[q], im_scale[q] = s + r + k, -inv_sqrt2
    return {
        "self_idx": torch.tensor(self_idx, dtype=torch.long),
        "rep_idx": torch.tensor(rep_idx, dtype=torch.long),
        "re_src": re_src,
        "re_scale": re_scale,
        "im_src": im_src,
        "im_scale": im_scale,
    }


class CircularBlur(SVDOperator):
    """Circular convolution with ``kernel`` (odd sizes), per channel; see the module docstring.

    Buffers: ``kernel`` (kh x kw), ``spectrum_re``/``spectrum_im`` (``rfft2`` of the folded
    kernel, ``H x (W//2+1)``), ``singular_values`` (``C*H*W``, descending).
    """

    def __init__(self, kernel: Tensor, in_shape: Sequence[int] | None = None):
        shape = shape3(in_shape)
        kernel = as_kernel(kernel)
        super().__init__(shape)
        c, h, w = shape
        spectrum = torch.fft.rfft2(fold_kernel(kernel, h, w))  # K, h x (w//2+1), complex128
        layout = real_fourier_layout(h, w)
        s_self = spectrum.real.reshape(-1)[layout["self_idx"]]
        k_rep = spectrum.reshape(-1)[layout["rep_idx"]]
        sign = torch.where(s_self < 0, -1.0, 1.0).to(torch.float64)
        phase = torch.angle(k_rep)
        sv = torch.cat([s_self.abs(), k_rep.abs(), k_rep.abs()]).repeat(c)
        order = torch.argsort(sv, descending=True, stable=True)
        self.register_precise_buffer("kernel", kernel)
        self.register_precise_buffer("spectrum_re", spectrum.real)
        self.register_precise_buffer("spectrum_im", spectrum.imag)
        self.register_precise_buffer("singular_values", sv[order])
        self.register_precise_buffer("self_sign", sign)
        self.register_precise_buffer("cos_phase", torch.cos(phase))
        self.register_precise_buffer("sin_phase", torch.sin(phase))
        self.register_precise_buffer("re_scale", layout["re_scale"])
        self.register_precise_buffer("im_scale", layout["im_scale"])
        for name in ("self_idx", "rep_idx", "re_src", "im_src"):
            self.register_buffer(name, layout[name])
        self.register_buffer("order", order)
        self.register_buffer("inverse_order", torch.argsort(order))

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def _spectrum(self, t: Tensor, conjugate: bool = False) -> Tensor:
        re, im = self._like(self.spectrum_re, t), self._like(self.spectrum_im, t)
        return torch.complex(re, -im if conjugate else im)

    def _filter(self, t: Tensor, conjugate: bool) -> Tensor:
        h, w = self.in_shape[1:]
        return torch.fft.irfft2(torch.fft.rfft2(t) * self._spectrum(t, conjugate), s=(h, w))

    def forward(self, x: Tensor) -> Tensor:
        return self._filter(self.check_input(x), conjugate=False)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._filter(self.check_measurement(y), conjugate=True)

    # --- the real orthogonal transforms -------------------------------------------------------
    def _pack(self, t: Tensor) -> Tensor:
        """Image -> real Fourier coordinates (unsorted), ``N x C x HW``."""
        spec = torch.fft.rfft2(t, norm="ortho").flatten(2)
        rep = spec[..., self.rep_idx]
        sqrt2 = math.sqrt(2)
        return torch.cat(
            [spec.real[..., self.self_idx], sqrt2 * rep.real, sqrt2 * rep.imag], dim=-1
        )

    def _unpack(self, c: Tensor) -> Tensor:
        """Real Fourier coordinates ``N x C x HW`` -> image."""
        h, w = self.in_shape[1:]
        re = c[..., self.re_src] * self._like(self.re_scale, c)
        im = c[..., self.im_src] * self._like(self.im_scale, c)
        spec = torch.complex(re, im).reshape(*c.shape[:2], h, w // 2 + 1)
        return torch.fft.irfft2(spec, s=(h, w), norm="ortho")

    def _rotate(self, c: Tensor, inverse: bool) -> Tensor:
        """Multiply by ``R`` (or ``R^T``): a rotation by the kernel phase on each conjugate pair."""
        s, r = self.self_idx.numel(), self.rep_idx.numel()
        cos, sin = self._like(self.cos_phase, c), self._like(self.sin_phase, c)
        sin = -sin if inverse else sin
        a, re, im = c[..., :s], c[..., s : s + r], c[..., s + r :]
        return torch.cat(
            [a * self._like(self.self_sign, c), cos * re - sin * im, sin * re + cos * im], dim=-1
        )

    def _sorted(self, c: Tensor) -> Tensor:
        return c.reshape(c.shape[0], -1)[:, self.order]

    def _unsorted(self, z: Tensor) -> Tensor:
        return z[:, self.inverse_order].reshape(z.shape[0], self.in_shape[0], -1)

    def Vt(self, x: Tensor) -> Tensor:
        return self._sorted(self._pack(x))

    def V(self, z: Tensor) -> Tensor:
        return self._unpack(self._unsorted(z))

    def Ut(self, y: Tensor) -> Tensor:
        return self._sorted(self._rotate(self._pack(y), inverse=True))

    def U(self, z: Tensor) -> Tensor:
        return self._unpack(self._rotate(self._unsorted(z), inverse=False))

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, kernel={tuple(self.kernel.shape)}"


class PaddedBlur(LinearOperator):
    """Convolution with ``kernel`` after padding the image by ``size // 2`` (same-size output)."""

    def __init__(
        self, kernel: Tensor, in_shape: Sequence[int] | None = None, padding: str = "reflect"
    ):
        shape = shape3(in_shape)
        kernel = as_kernel(kernel)
        choice("padding", padding, PADDINGS)
        ph, pw = kernel.shape[0] // 2, kernel.shape[1] // 2
        _, h, w = shape
        if padding == "reflect" and (ph >= h or pw >= w):
            raise ValueError(
                f"reflect padding by {ph} x {pw} pixels "
                f"(kernel {tuple(kernel.shape)}) needs an image larger "
                f"than that, got H x W = {h} x {w}; use a smaller kernel, "
                "padding='replicate'/'zeros', "
                "or the circular operator"
            )
        if padding == "circular" and (ph > h or pw > w):
            raise ValueError(
                f"circular padding by {ph} x {pw} pixels "
                f"(kernel {tuple(kernel.shape)}) needs H >= {ph} and "
                f"W >= {pw}, got {h} x {w}; use the circular operator, which folds large kernels"
            )
        super().__init__(shape)
        self.padding = padding
        self.register_precise_buffer("kernel", kernel)
        self.register_buffer("pad_index", padding_.pad_index(h, w, ph, ph, pw, pw, padding))

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def _weight(self, t: Tensor) -> Tensor:
        kh, kw = self.kernel.shape
        # conv2d correlates: flipping the kernel makes it a convolution
        return self._like(self.kernel, t).flip(0, 1).expand(self.in_shape[0], 1, kh, kw)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        (c, h, w), (kh, kw) = self.in_shape, self.kernel.shape
        xp = padding_.pad(x, self.pad_index, h + kh - 1, w + kw - 1)
        return F.conv2d(xp, self._weight(x), groups=c)

    def adjoint(self, y: Tensor) -> Tensor:
        """``P^T K^T y``: the transposed (full) convolution, then the padding folded back."""
        self.check_measurement(y)
        c, h, w = self.in_shape
        return padding_.pad_adjoint(
            F.conv_transpose2d(y, self._weight(y), groups=c), self.pad_index, h, w
        )

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, kernel={tuple(self.kernel.shape)}, padding={self.padding!r}"
        )


def _motion(size: int, intensity: float, generator, seed, bank, index) -> Tensor:  # type: ignore[no-untyped-def]
    if bank is not None:
        if generator is not None or seed is not None:
            raise ValueError("give either bank=/index= or generator=/seed=, not both")
        return banks.entry(bank, "motion", 0 if index is None else index)
    if index is not None:
        raise ValueError("index= needs bank= (the name of a motion-kernel bank, e.g. 'motion-k9')")
    return kernels.motion_kernel(size, intensity, generator=generator, seed=seed)


@OPERATORS.register("gaussian_blur")
class GaussianBlur(CircularBlur):
    """Circular Gaussian blur, ``size`` x ``size`` (odd, default 9), std ``sigma`` (default 1.5)."""

    def __init__(self, in_shape: Sequence[int] | None = None, size: int = 9, sigma: float = 1.5):
        super().__init__(kernels.gaussian_kernel(size, sigma), in_shape)

    @classmethod
    def example(cls) -> GaussianBlur:
        return cls(in_shape=(2, 8, 6), size=5, sigma=1.0)


@OPERATORS.register("uniform_blur")
class UniformBlur(CircularBlur):
    """Circular uniform (box) blur, ``size`` x ``size`` (odd, default 5)."""

    def __init__(self, in_shape: Sequence[int] | None = None, size: int = 5):
        super().__init__(kernels.uniform_kernel(size), in_shape)

    @classmethod
    def example(cls) -> UniformBlur:
        return cls(in_shape=(1, 7, 8), size=3)


@OPERATORS.register("motion_blur")
class MotionBlur(CircularBlur):
    """Circular motion blur with a random trajectory kernel (``size`` default 9, ``intensity``
    0.5, ``generator``/``seed``, default seed 0) or entry ``index`` of a motion ``bank``."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        size: int = 9,
        intensity: float = 0.5,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        bank: str | None = None,
        index: int | None = None,
    ):
        super().__init__(_motion(size, intensity, generator, seed, bank, index), in_shape)

    @classmethod
    def example(cls) -> MotionBlur:
        return cls(in_shape=(1, 8, 8), size=5, seed=4)


@OPERATORS.register("gaussian_blur_padded")
class GaussianBlurPadded(PaddedBlur):
    """Gaussian blur with padded boundaries (``padding`` default ``reflect``)."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        size: int = 9,
        sigma: float = 1.5,
        padding: str = "reflect",
    ):
        super().__init__(kernels.gaussian_kernel(size, sigma), in_shape, padding)

    @classmethod
    def example(cls) -> GaussianBlurPadded:
        return cls(in_shape=(2, 8, 6), size=5, sigma=0.7)


@OPERATORS.register("uniform_blur_padded")
class UniformBlurPadded(PaddedBlur):
    """Uniform blur with padded boundaries (``padding`` default ``reflect``)."""

    def __init__(
        self, in_shape: Sequence[int] | None = None, size: int = 5, padding: str = "reflect"
    ):
        super().__init__(kernels.uniform_kernel(size), in_shape, padding)

    @classmethod
    def example(cls) -> UniformBlurPadded:
        return cls(in_shape=(1, 7, 8), size=3)


@OPERATORS.register("motion_blur_padded")
class MotionBlurPadded(PaddedBlur):
    """Motion blur with padded boundaries; kernel as for ``motion_blur``."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        size: int = 9,
        intensity: float = 0.5,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        bank: str | None = None,
        index: int | None = None,
        padding: str = "reflect",
    ):
        super().__init__(_motion(size, intensity, generator, seed, bank, index), in_shape, padding)

    @classmethod
    def example(cls) -> MotionBlurPadded:
        return cls(in_shape=(1, 8, 8), size=5, seed=4)
