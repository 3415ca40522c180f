"""Capability classes for forward operators: ``Operator`` > ``LinearOperator`` > ``SVDOperator``.

A solver states what it needs as one of these types (``requires = SVDOperator``); the check is
``isinstance``, never a guess by attribute. All operators act on batches ``N x C x H x W`` in
[-1, 1] and treat every sample independently. They are deterministic once built: random
parameters (masks, kernels) are drawn from a generator or read from a bank at construction.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from invdiff.images import check_image


class Operator(nn.Module):
    """A forward model ``y = A(x)``, possibly nonlinear.

    Subclasses set ``in_shape`` (C, H, W) and implement ``forward``. ``vjp`` defaults to
    autograd; ``example()`` builds a small instance used by the registry-wide tests.
    """

    registry_name: ClassVar[str] = ""
    #: True when this operator is used as an inpainting mask (RePaint needs that).
    is_inpainting: ClassVar[bool] = False

    def __init__(self, in_shape: tuple[int, int, int]):
        super().__init__()
        if len(in_shape) != 3 or any(int(s) <= 0 for s in in_shape):
            raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape}")
        self.in_shape = tuple(int(s) for s in in_shape)

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """Vector-Jacobian product ``J_A(x)^T v`` (autograd by default)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = self.forward(x)
            (g,) = torch.autograd.grad(y, x, grad_outputs=v)
        return g

    def check_input(self, x: Tensor, name: str = "x", check_range: bool = False) -> Tensor:
        """Validate that ``x`` is a batch of images of this operator's input shape."""
        check_image(x, name, check_range=check_range)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"{type(self).__name__} expects {name} of shape N x {' x '.join(map(str, self.in_shape))}, "
                f"got {tuple(x.shape)}"
            )
        return x

    @torch.no_grad()
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one measurement (without the batch dimension)."""
        p = next(iter(self.buffers()), None)
        x = torch.zeros((1, *self.in_shape), dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32, device=p.device if p is not None else None)
        return tuple(self.forward(x).shape[1:])

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
        from invdiff.operators.cg import conjugate_gradient

        return conjugate_gradient(lambda z: self.adjoint(self.forward(z)), self.adjoint(y), iterations=iterations, tol=tol)

    def normal(self, x: Tensor) -> Tensor:
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    @torch.no_grad()
    def matrix(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The dense matrix of the operator (``m x n``); for small test problems only."""
        n = math.prod(self.in_shape)
        if n > 16384:
            raise ValueError(f"matrix() is for small operators; this one has {n} inputs")
        op = self.to(dtype)
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
        m = self.num_measurements
        return self.U(self.singular_values * self.Vt(x)[:, :m])

    def adjoint(self, y: Tensor) -> Tensor:
        return self.V(self.pad_spectral(self.singular_values * self.Ut(y)))

    def pinv(self, y: Tensor, *, rcond: float = 1e-6, **_: object) -> Tensor:
        s = self.singular_values
        keep = s.abs() > rcond * s.abs().max().clamp_min(torch.finfo(s.dtype).tiny)
        inv = torch.where(keep, 1 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(self.pad_spectral(inv * self.Ut(y)))
