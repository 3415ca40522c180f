"""Sliced-Wasserstein distance between two sample sets (Rabin et al. 2011; Bonneel et al. 2015)."""

from __future__ import annotations

import torch
from torch import Tensor


def sliced_wasserstein(
    a: Tensor,
    b: Tensor,
    projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    """``SW_2(a, b) = sqrt(E_theta W_2^2(theta^T a, theta^T b))`` over random unit directions.

    ``a`` and ``b`` are ``N x ...`` sample sets of equal size, flattened per sample. The 1-D
    Wasserstein distance between equal-size empirical measures matches sorted projections.
    """
    a = a.reshape(a.shape[0], -1).double().cpu()
    b = b.reshape(b.shape[0], -1).double().cpu()
    if a.shape != b.shape:
        raise ValueError(
            f"sample sets must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    theta = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    pa = (a @ theta).sort(dim=0).values
    pb = (b @ theta).sort(dim=0).values
    return float((pa - pb).pow(2).mean().sqrt())
