"""Helpers every solver may use: the shape check and noise drawn on the generator's device."""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.operators.base import Operator


def normal_like(x: Tensor, generator: torch.Generator, out: Tensor | None = None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on the generator's device.

    ``out`` (a buffer on the generator's device) is refilled in place and reused, so the inner
    loops allocate nothing when the generator lives on ``x``'s device.
    """
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=generator.device)
    out.normal_(generator=generator)
    return out if out.device == x.device else out.to(x.device, non_blocking=True)


def check_shapes(
    prior_shape: tuple[int, ...], operator: Operator, y: Tensor, what: str = "prior"
) -> None:
    """The operator acts on the prior's images; ``y`` is a batch of its measurements."""
    if tuple(operator.in_shape) != tuple(prior_shape):
        raise ValueError(
            f"the operator acts on images of shape {tuple(operator.in_shape)} but the {what} "
            f"models images of shape {tuple(prior_shape)}"
        )
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"y must be a batch of measurements (N x ...), got shape {tuple(y.shape)}")
