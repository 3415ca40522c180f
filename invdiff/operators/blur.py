"""Blur: one family, convolution with a kernel under a boundary rule.

    blur(kernel, in_shape, boundary="periodic")        # CircularBlur: an SVDOperator
    blur(kernel, in_shape, boundary="reflect")         # PaddedBlur: a LinearOperator
    blur(blur_kernel("motion", size=9, seed=3), (1, 32, 32))

The kernel is any odd-sized 2-D tensor (``blur_kernel`` builds the named ones: ``KERNELS``);
the boundary is ``"periodic"`` (circular convolution, SVD known) or a padding rule
(``reflect``, ``replicate``, ``zeros``, ``circular``). The registered names are the family's
presets: ``{gaussian,uniform,motion}_blur`` (periodic) and ``*_blur_padded`` (``padding``
parameter, default ``reflect``).

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

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.operators import banks, kernels
from invdiff.operators import padding as padding_
from invdiff.operators.base import LinearOperator, SVDOperator
from invdiff.operators.validation import as_kernel, choice, shape3
from invdiff.registry import OPERATORS

PADDINGS = ("reflect", "replicate", "zeros", "circular")
#: every boundary rule of the family: periodic (the SVD operator) or a padding
BOUNDARIES = ("periodic", *PADDINGS)


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


class Blur(LinearOperator):
    """The blur family's common part: a ``kernel`` buffer (odd sizes), a ``boundary`` rule and a
    same-size output. ``CircularBlur`` and ``PaddedBlur`` are its two implementations."""

    boundary: str = "periodic"
    kernel: Tensor

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def extra_repr(self) -> str:
        text = f"in_shape={self.in_shape}, kernel={tuple(self.kernel.shape)}"
        return text if self.boundary == "periodic" else f"{text}, padding={self.boundary!r}"


class CircularBlur(Blur, SVDOperator):
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


class PaddedBlur(Blur):
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
        self.boundary = padding
        self.register_precise_buffer("kernel", kernel)
        self.register_buffer("pad_index", padding_.pad_index(h, w, ph, ph, pw, pw, padding))

    @property
    def padding(self) -> str:
        return self.boundary

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


def blur(kernel: Tensor, in_shape: Sequence[int] | None = None, boundary: str = "periodic") -> Blur:
    """Convolution with ``kernel`` under ``boundary`` (one of ``BOUNDARIES``).

    ``"periodic"``: circular convolution, a ``CircularBlur`` (``SVDOperator``: spectral
    solvers apply). A padding rule: the image padded by ``size // 2`` with it, then convolved,
    a ``PaddedBlur`` (``LinearOperator``: solvers use CG where they need ``A^+`` or a prox).
    """
    choice("boundary", boundary, BOUNDARIES)
    if boundary == "periodic":
        return CircularBlur(kernel, in_shape)
    return PaddedBlur(kernel, in_shape, boundary)


def _gaussian(size: int = 9, sigma: float = 1.5) -> Tensor:
    return kernels.gaussian_kernel(size, sigma)


def _uniform(size: int = 5) -> Tensor:
    return kernels.uniform_kernel(size)


def _motion(
    size: int = 9,
    intensity: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    bank: str | None = None,
    index: int | None = None,
) -> Tensor:
    """A random-trajectory kernel (``kernels.motion_kernel``) or entry ``index`` of a bank."""
    if bank is not None:
        if generator is not None or seed is not None:
            raise ValueError("give either bank=/index= or generator=/seed=, not both")
        return banks.entry(bank, "motion", 0 if index is None else index)
    if index is not None:
        raise ValueError("index= needs bank= (the name of a motion-kernel bank, e.g. 'motion-k9')")
    return kernels.motion_kernel(size, intensity, generator=generator, seed=seed)


#: the family's named kernels: name -> builder taking the kernel parameters (with defaults)
KERNELS: dict[str, Callable[..., Tensor]] = {
    "gaussian": _gaussian,
    "uniform": _uniform,
    "motion": _motion,
}


def blur_kernel(name: str, **params: Any) -> Tensor:
    """The kernel ``name`` of ``KERNELS`` built with ``params`` (e.g. ``size``, ``sigma``)."""
    choice("kernel", name, tuple(KERNELS))
    return KERNELS[name](**params)


def _preset(name: str, kernel: str, boundary: str, example: dict[str, Any], doc: str) -> type:
    """Register ``name``: the blur with kernel ``kernel`` and ``boundary``, as a class.

    Its parameters are ``in_shape``, the kernel builder's parameters and, for a padded
    boundary, ``padding`` (default ``boundary``); ``example()`` builds it with ``example``.
    The class is a subclass of the implementation, so capabilities stay types
    (``issubclass(OPERATORS.entry("gaussian_blur"), SVDOperator)``).
    """
    P = inspect.Parameter
    kernel_params = list(inspect.signature(KERNELS[kernel]).parameters.values())
    params = [P("in_shape", P.POSITIONAL_OR_KEYWORD, default=None), *kernel_params]
    impl: type[Blur] = CircularBlur if boundary == "periodic" else PaddedBlur
    if impl is PaddedBlur:
        kind = P.KEYWORD_ONLY if params[-1].kind is P.KEYWORD_ONLY else P.POSITIONAL_OR_KEYWORD
        params.append(P("padding", kind, default=boundary))
    signature = inspect.Signature(params)

    def __init__(self: Blur, *args: Any, **kwargs: Any) -> None:
        values = signature.bind(*args, **kwargs)
        values.apply_defaults()
        given = dict(values.arguments)
        in_shape, padding = given.pop("in_shape"), given.pop("padding", None)
        made = blur_kernel(kernel, **given)
        if impl is PaddedBlur:
            PaddedBlur.__init__(self, made, in_shape, padding)  # type: ignore[arg-type]
        else:
            CircularBlur.__init__(self, made, in_shape)  # type: ignore[arg-type]

    def make_example(cls: type[Blur]) -> Blur:
        return cls(**example)

    cls_name = "".join(part.title() for part in name.split("_"))
    cls = type(
        cls_name,
        (impl,),
        {
            "__init__": __init__,
            "__signature__": signature,
            "__doc__": doc,
            "__module__": __name__,
            "example": classmethod(make_example),
        },
    )
    return OPERATORS.register(name)(cls)


# The registered presets, each a kernel and a boundary: name, kernel, boundary, example(), doc.
_PRESETS: tuple[tuple[str, str, str, dict[str, Any], str], ...] = (
    ("gaussian_blur", "gaussian", "periodic", {"in_shape": (2, 8, 6), "size": 5, "sigma": 1.0},
     "Circular Gaussian blur, ``size`` x ``size`` (odd, default 9), std ``sigma`` (default 1.5)."),
    ("uniform_blur", "uniform", "periodic", {"in_shape": (1, 7, 8), "size": 3},
     "Circular uniform (box) blur, ``size`` x ``size`` (odd, default 5)."),
    ("motion_blur", "motion", "periodic", {"in_shape": (1, 8, 8), "size": 5, "seed": 4},
     "Circular motion blur with a random trajectory kernel (``size`` default 9, ``intensity`` "
     "0.5, ``generator``/``seed``, default seed 0) or entry ``index`` of a motion ``bank``."),
    ("gaussian_blur_padded", "gaussian", "reflect",
     {"in_shape": (2, 8, 6), "size": 5, "sigma": 0.7},
     "Gaussian blur with padded boundaries (``padding`` default ``reflect``)."),
    ("uniform_blur_padded", "uniform", "reflect", {"in_shape": (1, 7, 8), "size": 3},
     "Uniform blur with padded boundaries (``padding`` default ``reflect``)."),
    ("motion_blur_padded", "motion", "reflect", {"in_shape": (1, 8, 8), "size": 5, "seed": 4},
     "Motion blur with padded boundaries; kernel as for ``motion_blur``."),
)  # fmt: skip
GaussianBlur, UniformBlur, MotionBlur, GaussianBlurPadded, UniformBlurPadded, MotionBlurPadded = (
    _preset(*row) for row in _PRESETS
)
