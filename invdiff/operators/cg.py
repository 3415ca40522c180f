"""Batched conjugate gradients with a per-sample step size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    rhs: Tensor,
    x0: Tensor | None = None,
    *,
    iterations: int = 100,
    tol: float = 1e-6,
) -> Tensor:
    """Solve ``apply(x) = rhs`` for a symmetric positive semi-definite ``apply``.

    Every sample of the batch has its own step sizes (Hestenes & Stiefel 1952); a sample whose
    residual fell below ``tol * ||rhs||`` stops moving while the others go on. Started at
    zero on a singular system it converges to the minimum-norm solution.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - apply(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs = _dot(r, r)
    stop = (tol * tol) * _dot(rhs, rhs).clamp_min(torch.finfo(rhs.dtype).tiny)
    for _ in range(iterations):
        if bool((rs <= stop).all()):
            break
        ap = apply(p)
        pap = _dot(p, ap)
        active = (rs > stop) & (pap > 0)
        alpha = torch.where(
            active, rs / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rs)
        )
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        beta = torch.where(
            active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs)
        )
        p = r + beta * p
        rs = torch.where(active, rs_new, rs)
    return x
