"""Capability classes for forward operators: ``Operator`` > ``LinearOperator`` > ``SVDOperator``.

A solver states what it needs as one of these types (``requires = SVDOperator``); the check is
``isinstance``, never a guess by attribute. All operators act on batches ``N x C x H x W`` in
[-1, 1] and treat every sample independently. They are deterministic once built: random
parameters (masks, kernels) are drawn from a generator or read from a bank at construction.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
from torch import Tensor, nn

from invdiff.images import check_image
from invdiff.operators.cg import conjugate_gradient

#: magnitudes an operator input never has in a [-1, 1] image pipeline (see ``check_input``)
IMPLAUSIBLE = 1e4

#: the cut-off for tiny singular values: ``s_i <= RCOND * max(s)`` counts as zero. At that
#: level ``1 / s_i`` would divide the round-off of ``U^T y`` by itself (float32 round-off is
#: about 1e-7). Solvers that drop larger singular values of noisy data pass their own ``rcond``
#: (DDNM's and RED-diff's 3e-2) to the same rule, ``significant``.
RCOND = 1e-6


def significant(s: Tensor, rcond: float = RCOND) -> Tensor:
    """The mask of singular values above the cut-off, ``|s_i| > rcond * max |s|``.

    The one rule for "this spectral coordinate is measured": ``pinv``, ``prox_l2``,
    ``spectral_measurement`` and the spectral solvers all use it. All-zero ``s`` gives an
    all-false mask.
    """
    return s.abs() > rcond * s.abs().max().clamp_min(torch.finfo(s.dtype).tiny)


class Operator(nn.Module):
    """A forward model ``y = A(x)``, possibly nonlinear.

    Subclasses set ``in_shape`` (C, H, W) and implement ``forward``. ``vjp`` defaults to
    autograd; ``example()`` builds a small instance used by the registry-wide tests.
    """

    registry_name: ClassVar[str] = ""
    #: True when this operator is used as an inpainting mask (RePaint needs that).
    is_inpainting: ClassVar[bool] = False
    #: transforms of the image this measurement cannot tell apart (``"shift"``, ``"rot180"``;
    #: see ``invdiff.metrics.aligned``): scores that respect the problem align over them
    ambiguities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, in_shape: tuple[int, int, int]):
        super().__init__()
        from invdiff.operators.validation import shape3

        if in_shape is None:
            raise ValueError("in_shape must be (C, H, W) with positive sizes, got None")
        self.in_shape = shape3(in_shape)
        # float64 masters of buffers computed in float64 (see register_precise_buffer)
        self._precise: dict[str, Tensor] = {}
        # NaN/Inf checks read values, which waits for the device; solvers switch them off
        # inside their loops (see ``trusted``) once ``solve`` has checked its inputs.
        self._check_values = True
        self._out_shape: tuple[int, ...] | None = None
        self._measurement_bound: float | None = None

    def register_precise_buffer(self, name: str, value: Tensor) -> None:
        """Register a float buffer computed in float64: kept as float32 (the package's dtype),
        restored to its exact float64 values by ``.to(torch.float64)`` / ``.double()``.

        Upcasting a float32 buffer would keep its round-off (an SVD orthogonal only to 1e-7);
        with the master copy a float64 operator is exact to round-off in float64.
        """
        value = value.detach().to(dtype=torch.float64, device="cpu")
        self._precise[name] = value
        self.register_buffer(name, value.to(torch.float32))

    def _apply(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super()._apply(fn, *args, **kwargs)
        for name, master in self._precise.items():
            buf = self._buffers.get(name)
            if buf is not None and buf.dtype == torch.float64:
                self._buffers[name] = master.to(buf.device)
        return out

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """Vector-Jacobian product ``J_A(x)^T v`` (autograd by default)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = self.forward(x)
            (g,) = torch.autograd.grad(y, x, grad_outputs=v)
        return g

    @contextlib.contextmanager
    def trusted(self) -> Iterator[Operator]:
        """Within this block the operator checks shapes and dtypes but not values.

        ``invdiff.solve`` checks ``y`` once and then runs the solver inside this block, so an
        inner loop never waits for the device to answer "any NaN?" at every step.
        """
        previous, self._check_values = self._check_values, False
        try:
            yield self
        finally:
            self._check_values = previous

    def check_input(self, x: Tensor, name: str = "x", check_range: bool = False) -> Tensor:
        """Validate that ``x`` is a batch of images of this operator's input shape.

        Operators are also linear maps applied to arbitrary vectors (adjoint tests, conjugate
        gradients), so outside ``check_range`` only values no [-1, 1] image pipeline produces
        are refused: non-negative data above 2 (an image in [0, 255]) or magnitudes above
        ``IMPLAUSIBLE``.
        """
        check_image(x, name, check_range=check_range, check_values=self._check_values)
        if self._check_values and not check_range and x.numel():
            values = x.detach()
            lo, peak = float(values.min()), float(values.abs().max())
            if lo >= 0 and peak > 2:
                raise ValueError(
                    f"{type(self).__name__}: {name} has values in [{lo:.3g}, {peak:.3g}], which "
                    "looks like an image in [0, 255]; images are in [-1, 1]: convert with "
                    "invdiff.images.from_uint8"
                )
            if peak > IMPLAUSIBLE:
                raise ValueError(
                    f"{type(self).__name__}: {name} has values up to {peak:.3g} in magnitude; "
                    "images are in [-1, 1] (convert uint8 images with invdiff.images.from_uint8)"
                )
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{type(self).__name__} expects {name} of shape "
                f"N x {' x '.join(map(str, self.in_shape))}, "
                f"got {tuple(x.shape)}"
            )
        return x

    def check_measurement(self, y: Tensor, name: str = "y") -> Tensor:
        """Validate that ``y`` is a batch of measurements of this operator's output shape."""
        if not isinstance(y, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got dtype {y.dtype}")
        shape = self.out_shape()
        if y.ndim != len(shape) + 1 or tuple(y.shape[1:]) != tuple(shape):
            raise ValueError(
                f"{type(self).__name__} expects {name} of shape N x {' x '.join(map(str, shape))}, "
                f"got {tuple(y.shape)}"
            )
        if self._check_values and not torch.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or Inf values")
        return y

    @torch.no_grad()
    def measurement_bound(self) -> float:
        """The largest ``|A(x)|`` seen over extreme images in [-1, 1] (computed once).

        The probes are the constant images +1 and -1 and two random sign images. For an
        operator with non-negative weights (blur, pooling, masks) and for phase retrieval the
        constant images attain the true maximum; for mixed signs (compressed sensing) the
        random signs give its typical scale. ``invdiff.solve`` allows a margin on top of it.
        """
        if self._measurement_bound is None:
            p = next(iter(self.buffers()), None)
            device = p.device if p is not None else None
            g = torch.Generator().manual_seed(0)
            signs = torch.randint(0, 2, (2, *self.in_shape), generator=g).float() * 2 - 1
            probes = torch.cat([torch.ones(1, *self.in_shape), -torch.ones(1, *self.in_shape)])
            probes = torch.cat([probes, signs]).to(device)
            with self.trusted():
                y = torch.cat([self.forward(probes[i : i + 1]) for i in range(len(probes))])
            self._measurement_bound = float(y.abs().max()) if y.numel() else 0.0
        return self._measurement_bound

    def out_shape(self) -> tuple[int, ...]:
        """Shape of one measurement (without the batch dimension); computed once."""
        if self._out_shape is None:
            self._out_shape = self._probe_out_shape()
        return self._out_shape

    @torch.no_grad()
    def _probe_out_shape(self) -> tuple[int, ...]:
        p = next(iter(self.buffers()), None)
        dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
        x = torch.zeros(
            (1, *self.in_shape), dtype=dtype, device=p.device if p is not None else None
        )
        return tuple(self.forward(x).shape[1:])

    @staticmethod
    def _like(t: Tensor, x: Tensor) -> Tensor:
        """A buffer ``t`` on ``x``'s device and in ``x``'s dtype (a no-op when they already match).

        Operators follow their input, so a float64 batch gets float64 arithmetic (with buffers
        built in float64 at construction where precision matters) and nothing forgets a GPU.
        """
        return t.to(device=x.device, dtype=x.dtype)

    @classmethod
    def example(cls) -> Operator:
        """A small instance for the registry-wide operator tests."""
        raise NotImplementedError(f"{cls.__name__} provides no example()")

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}"


class LinearOperator(Operator):
    """A linear forward model with an adjoint.

    ``pinv`` defaults to conjugate gradients on the normal equations
    ``A^T A x = A^T y`` started at zero, which converges to the minimum-norm least-squares
    solution ``A^+ y``.
    """

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        return self.adjoint(v)

    def pinv(self, y: Tensor, *, iterations: int = 100, tol: float = 1e-6) -> Tensor:
        rhs = self.adjoint(y)  # checks y
        with self.trusted():  # the iterates are vectors, not images: no value checks on them
            return conjugate_gradient(
                self.normal, rhs, iterations=iterations, tol=tol, early_exit=True
            )

    def prox_l2(self, z: Tensor, y: Tensor, rho: float, *, iterations: int = 20) -> Tensor:
        """The regularised least-squares (proximal) data step

            x_hat = argmin_x ||A x - y||^2 + rho ||x - z||^2
                  = argmin_x ||A x - y||^2 / (2 sigma_y^2) + ||x - z||^2 / (2 r^2),
                    rho = sigma_y^2 / r^2,

        the mean of the Gaussian posterior ``N(x; z, r^2 I) N(y; A x, sigma_y^2 I)`` (the data
        step of half-quadratic splitting: DiffPIR, Zhu et al. 2023, Eq. 13). ``rho = 0`` is the
        projection onto ``{x : A^T A x = A^T y}`` nearest to ``z`` in the CG sense.

        Here: ``iterations`` conjugate-gradient steps on the normal equations
        ``(A^T A + rho I) x = A^T y + rho z`` started at ``z``, with no convergence test (the
        loop never waits on the device). ``SVDOperator`` solves it in closed form. A solver that
        takes this step at every noise level builds it once with :meth:`data_prox`.
        """
        return self.data_prox(y, iterations=iterations)(z, rho)

    def data_prox(self, y: Tensor, *, iterations: int = 20) -> Callable[[Tensor, float], Tensor]:
        """``prox(z, rho) = prox_l2(z, y, rho)`` with what depends on ``y`` alone (``A^T y``)
        computed once, for a loop that applies it at every step."""
        aty = self.adjoint(y)  # checks y

        def prox(z: Tensor, rho: float) -> Tensor:
            rhs = aty + rho * z

            def apply(v: Tensor) -> Tensor:
                return self.normal(v) + rho * v

            with self.trusted():
                residual = rhs - self.normal(z) - rho * z
                return conjugate_gradient(
                    apply, rhs, z, iterations=iterations, tol=0.0, residual=residual
                )

        return prox

    def adjoint_by_autograd(self, apply: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
        """``A^T y`` as the vector-Jacobian product of the linear map ``apply`` (exact transpose).

        Differentiable in ``y`` when ``y`` requires grad.
        """
        with torch.enable_grad():
            x0 = torch.zeros(
                (y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device, requires_grad=True
            )
            (g,) = torch.autograd.grad(apply(x0), x0, grad_outputs=y, create_graph=y.requires_grad)
        return g

    def normal(self, x: Tensor) -> Tensor:
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    @torch.no_grad()
    def matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The dense matrix of the operator (``m x n``); for small test problems only."""
        n = math.prod(self.in_shape)
        if n > 16384:
            raise ValueError(f"matrix() is for small operators; this one has {n} inputs")
        op = copy.deepcopy(self).to(dtype)  # do not change this operator's own dtype
        eye = torch.eye(n, dtype=dtype, device=next(iter(op.buffers()), torch.empty(0)).device)
        cols = op.forward(eye.reshape(n, *self.in_shape)).reshape(n, -1)
        return cols.T.contiguous()


class SVDOperator(LinearOperator):
    """A linear operator with a known singular value decomposition ``A = U diag(s) V^T``.

    Conventions (those of DDRM, Kawar et al. 2022, Sec. 3.2): ``Vt(x)`` maps an image to its
    ``n`` spectral coordinates (``n = C*H*W``, ``V`` orthogonal); ``Ut(y)`` maps a measurement
    to ``m <= n`` coordinates (``U`` orthogonal); ``singular_values`` has length ``m`` and pairs
    with the first ``m`` spectral coordinates of ``x``: ``Ut(A x) = s * Vt(x)[:, :m]``. Zero
    singular values are allowed (an inpainting mask kept at full image size).
    """

    singular_values: Tensor

    def U(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def Ut(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def V(self, z: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def Vt(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_measurements(self) -> int:
        return int(self.singular_values.numel())

    def pad_spectral(self, z: Tensor) -> Tensor:
        """Pad ``m`` spectral coordinates with zeros to the input dimension ``n``."""
        n = math.prod(self.in_shape)
        return torch.nn.functional.pad(z, (0, n - z.shape[1]))

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        m = self.num_measurements
        return self.U(self._like(self.singular_values, x) * self.Vt(x)[:, :m])

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return self.V(self.pad_spectral(self._like(self.singular_values, y) * self.Ut(y)))

    def pinv(self, y: Tensor, *, rcond: float = RCOND, **_: object) -> Tensor:
        """``A^+ y = V diag(1/s) U^T y``; singular values at or below ``rcond * max(s)`` count
        as 0 (``significant``)."""
        self.check_measurement(y)
        s = self._like(self.singular_values, y)
        keep = significant(s, rcond)
        inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(self.pad_spectral(inv * self.Ut(y)))

    def spectral_measurement(
        self, y: Tensor, rcond: float = RCOND
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(ybar, s, observed)``, each padded to the input dimension ``n``.

        ``s`` is the singular value vector padded with zeros, ``observed = significant(s,
        rcond)`` and ``ybar = s^+ U^T y`` (zero where unobserved): the measurement in the
        spectral coordinates of ``x``, ``ybar_i = (V^T x)_i + (U^T n)_i / s_i`` on observed
        coordinates (DDRM, Kawar et al. 2022, Sec. 3.2).
        """
        s = self.pad_spectral(self.singular_values.to(y.device, y.dtype)[None])[0]
        observed = significant(s, rcond)
        s_safe = torch.where(observed, s, torch.ones_like(s))
        ybar = torch.where(observed, self.pad_spectral(self.Ut(y)) / s_safe, torch.zeros_like(s))
        return ybar, s, observed

    def data_prox(self, y: Tensor, **_: object) -> Callable[[Tensor, float], Tensor]:
        """``argmin_x ||A x - y||^2 + rho ||x - z||^2`` in closed form (see
        ``LinearOperator.prox_l2``), with ``U^T y`` and the measured coordinates computed once.

        In the spectral coordinates ``w = V^T x`` the problem separates:
        ``(s_i^2 + rho) w_i = s_i (U^T y)_i + rho (V^T z)_i``. Coordinates whose singular value
        is not ``significant`` keep ``z`` (a singular value at round-off level would divide the
        round-off of ``y`` by itself); with ``rho = 0`` the others are set to
        ``(U^T y)_i / s_i`` (a projection).
        """
        self.check_measurement(y)
        s = self._like(self.singular_values, y)
        m = s.numel()
        keep = significant(s)
        sy = s * self.Ut(y)

        def prox(z: Tensor, rho: float) -> Tensor:
            w = self.Vt(z)
            wm = w[:, :m]
            denom = s * s + rho
            new = torch.where(keep, (sy + rho * wm) / torch.where(keep, denom, 1.0), wm)
            return self.V(torch.cat([new, w[:, m:]], dim=1) if w.shape[1] > m else new)

        return prox


def operator_norm_sq(
    operator: LinearOperator,
    shape: tuple[int, ...],
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """``||A||^2`` (largest eigenvalue of ``A^T A``) as a 0-d tensor, without host syncs."""
    if isinstance(operator, SVDOperator):
        return operator.singular_values.abs().max().to(device) ** 2
    v = torch.randn((1, *shape), generator=generator, device=generator.device).to(device)
    estimate = torch.ones((), device=device)
    for _ in range(30):
        v = v / v.norm().clamp_min(1e-30)
        w = operator.adjoint(operator(v))
        estimate = (v * w).sum()
        v = w
    return estimate * 1.01  # power iteration approaches from below
