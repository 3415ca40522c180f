"""Inpainting mask generators. A mask is an ``H x W`` float64 tensor, 1 = observed, 0 = missing.

Random masks draw from an explicit ``torch.Generator`` (or a seed); the fixed banks in
``operators/*.npz`` are made with these functions by ``invdiff banks``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from invdiff.operators.validation import choice, make_generator, numpy_seed


def _hw(h: int, w: int) -> tuple[int, int]:
    for name, v in (("H", h), ("W", w)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"mask size {name} must be a positive int, got {v!r}")
    return h, w


def random_mask(
    h: int,
    w: int,
    missing: float = 0.7,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Exactly ``round(missing * H * W)`` missing pixels, chosen uniformly without replacement."""
    h, w = _hw(h, w)
    missing = float(missing)
    if not 0.0 <= missing < 1.0:
        raise ValueError(f"missing must be a fraction in [0, 1), got {missing}")
    g = make_generator(generator, seed)
    n_missing = int(round(missing * h * w))
    perm = torch.randperm(h * w, generator=g, device=g.device).cpu()
    mask = torch.ones(h * w, dtype=torch.float64)
    mask[perm[:n_missing]] = 0.0
    return mask.reshape(h, w)


def box_mask(
    h: int,
    w: int,
    box: int | tuple[int, int] | None = None,
    *,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """A missing ``bh x bw`` rectangle (default half the image each way).

    Centred when neither ``generator`` nor ``seed`` is given; otherwise its top-left corner is
    uniform over the positions that keep it inside the image (as in DPS/DDRM box inpainting).
    """
    h, w = _hw(h, w)
    bh, bw = (
        (h // 2, w // 2) if box is None else ((box, box) if isinstance(box, int) else tuple(box))
    )
    if not (isinstance(bh, int) and isinstance(bw, int)) or not (0 < bh <= h and 0 < bw <= w):
        raise ValueError(
            f"box must be sizes (bh, bw) with 0 < bh <= {h} and 0 < bw <= {w}, got {box!r}"
        )
    if generator is None and seed is None:
        top, left = (h - bh) // 2, (w - bw) // 2
    else:
        g = make_generator(generator, seed)
        top = int(torch.randint(0, h - bh + 1, (1,), generator=g, device=g.device))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=g, device=g.device))
    mask = torch.ones(h, w, dtype=torch.float64)
    mask[top : top + bh, left : left + bw] = 0.0
    return mask


def half_mask(h: int, w: int, side: str = "right") -> Tensor:
    """The ``side`` half of the image missing (``right``, ``left``, ``top`` or ``bottom``)."""
    h, w = _hw(h, w)
    choice("side", side, ("right", "left", "top", "bottom"))
    mask = torch.ones(h, w, dtype=torch.float64)
    if side == "right":
        mask[:, w - w // 2 :] = 0.0
    elif side == "left":
        mask[:, : w // 2] = 0.0
    elif side == "top":
        mask[: h // 2] = 0.0
    else:
        mask[h - h // 2 :] = 0.0
    return mask


def lines_mask(h: int, w: int, axis: str = "rows", period: int = 2, offset: int = 1) -> Tensor:
    """Every ``period``-th line missing (rows or columns), starting at line ``offset``.

    The default is the classic "every other line" pattern: odd rows missing, even rows kept.
    """
    h, w = _hw(h, w)
    choice("axis", axis, ("rows", "columns"))
    if isinstance(period, bool) or not isinstance(period, int) or period < 2:
        raise ValueError(f"period must be an int >= 2, got {period!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < period:
        raise ValueError(f"offset must be an int in [0, period={period}), got {offset!r}")
    mask = torch.ones(h, w, dtype=torch.float64)
    if axis == "rows":
        mask[offset::period] = 0.0
    else:
        mask[:, offset::period] = 0.0
    return mask


def freeform_mask(
    h: int,
    w: int,
    *,
    max_strokes: int = 4,
    max_vertices: int = 6,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> Tensor:
    """Free-form brush strokes (after DeepFill v2, Yu et al. ICCV 2019, Alg. 1).

    ``1..max_strokes`` strokes, each a polyline of ``1..max_vertices`` segments with random
    directions, lengths up to 40% of the image side and a brush width of 6-15% of it.
    """
    h, w = _hw(h, w)
    for name, v in (("max_strokes", max_strokes), ("max_vertices", max_vertices)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    rng = np.random.default_rng(numpy_seed(make_generator(generator, seed)))
    side = min(h, w)
    py, px = np.mgrid[0:h, 0:w].astype(np.float64)
    missing = np.zeros((h, w), dtype=bool)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        radius = max(0.5, rng.uniform(0.06, 0.15) * side / 2 + 0.25)
        x, y = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        for _ in range(int(rng.integers(1, max_vertices + 1))):
            angle = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(0.1, 0.4) * side
            nx = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            ny = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            d = np.hypot(nx - x, ny - y)
            t = np.clip(((px - x) * (nx - x) + (py - y) * (ny - y)) / max(d * d, 1e-12), 0, 1)
            missing |= np.hypot(px - (x + t * (nx - x)), py - (y + t * (ny - y))) <= radius
            x, y = nx, ny
    return torch.from_numpy((~missing).astype(np.float64))
