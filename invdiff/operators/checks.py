"""Numerical checks of an operator against its own claims (used by the tests and
``scripts/operator_report.py``): adjointness, SVD consistency, pseudo-inverse, vjp.

All checks run in float64 on a copy of the operator, so a float64 operator is exact to
round-off (about 1e-15 relative).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from invdiff.operators.base import LinearOperator, Operator, SVDOperator
from invdiff.operators.cg import batch_dot


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return batch_dot(a, b).view(-1)


def float64_copy(op: Operator) -> Operator:
    return copy.deepcopy(op).to(torch.float64)


def adjointness_error(op: LinearOperator, generator: torch.Generator, batch: int = 3) -> float:
    """Largest relative dot-test error ``|<Ax, y> - <x, A^T y>| / (||Ax|| ||y||)`` in a batch."""
    op = float64_copy(op)
    x = torch.randn(batch, *op.in_shape, generator=generator, dtype=torch.float64)
    y = torch.randn(batch, *op.out_shape(), generator=generator, dtype=torch.float64)
    ax, aty = op.forward(x), op.adjoint(y)
    lhs, rhs = _dot(ax, y), _dot(x, aty)
    scale = torch.maximum(
        ax.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1),
        x.flatten(1).norm(dim=1) * aty.flatten(1).norm(dim=1),
    )
    return float(((lhs - rhs).abs() / scale.clamp_min(1e-300)).max())


def dense_factors(op: SVDOperator) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, s, V)`` as dense float64 matrices (``m' x m``, ``m``, ``n x n``); small ops only."""
    op = float64_copy(op)
    n = op.matrix().shape[1]
    m = op.num_measurements
    eye_n = torch.eye(n, dtype=torch.float64)
    v = op.V(eye_n).reshape(n, n).T  # column j = V e_j
    u = op.U(torch.eye(m, dtype=torch.float64)).reshape(m, -1).T
    return u, op.singular_values.clone(), v


def svd_errors(op: SVDOperator) -> dict[str, float]:
    """Errors of the claimed SVD against the dense matrix of ``forward``.

    ``V_orthogonality`` ``||V^T V - I||_max``, ``U_orthogonality`` ``||U^T U - I||_max``,
    ``Vt_transpose`` ``||Vt(I) - V^T||_max``, ``Ut_transpose`` likewise, ``reconstruction``
    ``||U diag(s) V[:, :m]^T - A||_max / ||A||_max``.
    """
    dense = float64_copy(op).matrix()
    u, s, v = dense_factors(op)
    m, n = s.numel(), v.shape[0]
    o64 = float64_copy(op)
    vt_cols = o64.Vt(
        torch.eye(n, dtype=torch.float64).reshape(n, *op.in_shape)
    ).T  # column j = Vt e_j
    out = o64.out_shape()
    ut_cols = o64.Ut(torch.eye(u.shape[0], dtype=torch.float64).reshape(-1, *out)).T
    recon = u @ torch.diag(s) @ v[:, :m].T
    return {
        "V_orthogonality": float((v.T @ v - torch.eye(n, dtype=torch.float64)).abs().max()),
        "U_orthogonality": float((u.T @ u - torch.eye(m, dtype=torch.float64)).abs().max()),
        "Vt_transpose": float((vt_cols - v.T).abs().max()),
        "Ut_transpose": float((ut_cols - u.T).abs().max()),
        "reconstruction": float((recon - dense).abs().max() / dense.abs().max().clamp_min(1e-300)),
    }


def vjp_error(op: Operator, generator: torch.Generator, eps: float = 1e-6) -> float:
    """Relative error of ``<vjp(x, v), d>`` against the central difference of ``<v, A(x)>``."""
    op = float64_copy(op)
    x = torch.rand(2, *op.in_shape, generator=generator, dtype=torch.float64) * 1.6 - 0.8
    d = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    v = torch.randn(2, *op.out_shape(), generator=generator, dtype=torch.float64)
    with torch.no_grad():
        fd = (_dot(v, op(x + eps * d)) - _dot(v, op(x - eps * d))) / (2 * eps)
    an = _dot(op.vjp(x, v), d)
    return float(((an - fd).abs() / (fd.abs() + an.abs()).clamp_min(1e-12)).max())
