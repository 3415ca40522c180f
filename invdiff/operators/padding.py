"""Image padding as an explicit index map, so that padding and its exact adjoint are cheap.

``pad(x)`` gathers ``x`` at the source pixel of every padded pixel (torch's ``reflect``,
``replicate``, ``circular`` or ``zeros`` rule); its adjoint scatters back, adding up the
copies. Used by the padded blur and the bicubic downsampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

MODES = ("reflect", "replicate", "zeros", "circular")


def _source(i: Tensor, n: int, mode: str) -> Tensor:
    """Source index of padded positions ``i`` (may be < 0 or >= n); -1 means a zero."""
    if mode == "replicate":
        return i.clamp(0, n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(i)
        period = 2 * (n - 1)
        j = i % period
        return torch.where(j < n, j, period - j)
    inside = (i >= 0) & (i < n)
    return torch.where(inside, i, torch.full_like(i, -1))


def pad_index(h: int, w: int, top: int, bottom: int, left: int, right: int, mode: str) -> Tensor:
    """Flat source index (into ``h*w``, or ``h*w`` for a zero) of each of the padded pixels."""
    if mode not in MODES:
        raise ValueError(f"padding must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    rows = _source(torch.arange(-top, h + bottom), h, mode)
    cols = _source(torch.arange(-left, w + right), w, mode)
    flat = rows[:, None] * w + cols[None, :]
    flat = torch.where(
        (rows[:, None] < 0) | (cols[None, :] < 0), torch.full_like(flat, h * w), flat
    )
    return flat.reshape(-1)


def pad(x: Tensor, index: Tensor, hp: int, wp: int) -> Tensor:
    """Pad ``x`` (``N x C x H x W``) to ``N x C x hp x wp`` with the map of ``pad_index``."""
    flat = torch.nn.functional.pad(x.flatten(2), (0, 1))  # a zero slot at position H*W
    return flat[..., index.to(x.device)].reshape(*x.shape[:2], hp, wp)


def pad_adjoint(xp: Tensor, index: Tensor, h: int, w: int) -> Tensor:
    """The transpose of ``pad``: sum every padded pixel into its source pixel."""
    out = xp.new_zeros(*xp.shape[:2], h * w + 1)
    out.index_add_(2, index.to(xp.device), xp.flatten(2))
    return out[..., : h * w].reshape(*xp.shape[:2], h, w)
