"""Batched conjugate gradients with a per-sample step size: the package's one CG.

Every least-squares and proximal data step on a ``LinearOperator`` without a known SVD
(``LinearOperator.pinv``, ``LinearOperator.prox_l2``, the Tikhonov and pseudo-inverse
baselines) runs this loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def batch_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product ``<a_i, b_i>``, shaped ``N x 1 x ...`` to broadcast with ``a``."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    rhs: Tensor,
    x0: Tensor | None = None,
    *,
    iterations: int = 100,
    tol: float = 1e-6,
    residual: Tensor | None = None,
    early_exit: bool = False,
    on_iteration: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Solve ``apply(x) = rhs`` for a symmetric positive semi-definite ``apply``.

    Hestenes & Stiefel (1952), one system per sample of the batch: the samples are independent,
    so each has its own step sizes ``alpha_k = <r, r> / <p, A p>`` and
    ``beta_k = <r', r'> / <r, r>``. A sample stops moving for good once its residual falls to
    ``tol * ||rhs||`` (``tol = 0``: never) or its curvature ``<p, A p>`` is not positive: a
    mask, not a host-side test, so the loop never waits on the device. ``early_exit`` adds that
    host test once per iteration and leaves the loop when every sample has stopped (the result
    is the same; only the time differs). Started at zero on a singular system CG converges to
    the minimum-norm solution.

    ``x0``: the start (default zero); ``residual``: ``rhs - apply(x0)`` when the caller has it
    (computed here otherwise); ``on_iteration(k, x)`` is called after each iteration.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    if residual is not None:
        r = residual
    else:
        r = rhs.clone() if x0 is None else rhs - apply(x)
    p = r.clone()
    rs = batch_dot(r, r)
    stop = (tol * tol) * batch_dot(rhs, rhs).clamp_min(torch.finfo(rhs.dtype).tiny)
    active = rs > stop
    for i in range(iterations):
        if early_exit and not bool(active.any()):
            break
        ap = apply(p)
        pap = batch_dot(p, ap)
        active = active & (rs > stop) & (pap > 0)
        alpha = torch.where(
            active, rs / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rs)
        )
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = batch_dot(r, r)
        beta = torch.where(
            active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs)
        )
        p = torch.where(active, r + beta * p, p)
        rs = torch.where(active, rs_new, rs)
        if on_iteration is not None:
            on_iteration(i, x)
    return x
