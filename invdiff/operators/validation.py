"""Parameter checks and generator handling shared by the operator families.

Every factory validates its parameters before any expensive work and raises a ``ValueError``
(or ``TypeError``) that names the argument and the value it expects.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_SHAPE: tuple[int, int, int] = (1, 32, 32)
#: the largest image an operator is built for (C*H*W values): 3 x 4096 x 4096, 200 MB in
#: float32; a larger shape is refused before anything is allocated
MAX_IMAGE_VALUES = 3 * 4096 * 4096
#: the most channels an operator accepts (images are grey or colour, latents have a few)
MAX_CHANNELS = 64


def shape3(
    in_shape: Sequence[int] | None, default: tuple[int, int, int] = DEFAULT_SHAPE
) -> tuple[int, int, int]:
    """``in_shape`` as a tuple ``(C, H, W)`` of positive ints (``default`` when None).

    Sizes must be integers (``32.7`` and ``True`` are refused, not rounded) and the image at
    most ``MAX_IMAGE_VALUES`` values, so a typo fails here instead of allocating gigabytes.
    """
    if in_shape is None:
        return default
    if isinstance(in_shape, str | bytes) or not isinstance(in_shape, Sequence | torch.Size):
        raise TypeError(f"in_shape must be a tuple (C, H, W), got {in_shape!r}")
    sizes = list(in_shape)
    if len(sizes) != 3:
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape!r}")
    for s in sizes:
        # ints and integer scalars (numpy, 0-d tensors) have __index__; floats and bools do not
        # count, so 32.7 is never rounded to 32
        if isinstance(s, bool) or not hasattr(s, "__index__"):
            raise TypeError(
                f"in_shape must hold integer sizes (C, H, W), got {in_shape!r}: "
                f"{s!r} is a {type(s).__name__}"
            )
    shape = tuple(operator.index(s) for s in sizes)
    if any(s <= 0 for s in shape):
        raise ValueError(f"in_shape must be (C, H, W) with positive sizes, got {in_shape!r}")
    if shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"in_shape {shape} has {shape[0]} channels; images have 1 or 3 (at most "
            f"{MAX_CHANNELS}): did you pass (H, W, C) instead of (C, H, W)?"
        )
    if math.prod(shape) > MAX_IMAGE_VALUES:
        raise ValueError(
            f"in_shape {shape} has {math.prod(shape):,} values, more than the "
            f"{MAX_IMAGE_VALUES:,} (3 x 4096 x 4096) an operator is built for"
        )
    return shape  # type: ignore[return-value]


def make_generator(
    generator: torch.Generator | None, seed: int | None, default_seed: int = 0
) -> torch.Generator:
    """The generator to draw from: ``generator`` itself, or a CPU generator seeded with ``seed``.

    With neither given, ``default_seed`` is used, so an operator built without arguments is
    still reproducible (seed 0 is a seed like any other).
    """
    if generator is not None and seed is not None:
        raise ValueError("give either generator= or seed=, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    s = default_seed if seed is None else seed
    if isinstance(s, bool) or not isinstance(s, int) or s < 0:
        raise ValueError(f"seed must be a non-negative int, got {s!r}")
    return torch.Generator().manual_seed(s)


def numpy_seed(generator: torch.Generator) -> int:
    """A seed for a numpy generator drawn from a torch generator (one source of randomness)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())


def positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(
            f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}"
        )
    return v


def odd_size(name: str, value: int) -> int:
    """A positive odd kernel size (the kernel centre is then a pixel)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0 or value % 2 == 0:
        raise ValueError(
            f"{name} must be a positive odd number (the kernel centre is a pixel), got {value}"
        )
    return value


def choice(name: str, value: object, options: Sequence[object]) -> object:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def factor_of(
    name: str, factor: int, in_shape: tuple[int, int, int], allowed: Sequence[int] = (2, 4, 8)
) -> int:
    """A downsampling factor from ``allowed`` that divides H and W."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {factor!r}")
    _, h, w = in_shape
    if h % factor or w % factor:
        raise ValueError(f"image size H x W = {h} x {w} must be divisible by {name}={factor}")
    return factor


def as_kernel(kernel: Tensor | Sequence, name: str = "kernel") -> Tensor:
    """A 2-D float64 kernel with odd sizes, finite entries and a non-zero sum."""
    k = torch.as_tensor(kernel, dtype=torch.float64)
    if k.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array kh x kw, got shape {tuple(k.shape)}")
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"{name} sizes must be odd (the centre is a pixel), got {tuple(k.shape)}")
    if not torch.isfinite(k).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return k
