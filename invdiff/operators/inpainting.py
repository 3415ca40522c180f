"""Inpainting: ``y = m ⊙ x`` with a binary mask ``m`` shared over channels (1 = observed).

The measurement keeps the full image size with zeros at the missing pixels, so
``out_shape() == in_shape``. SVD (DDRM, Kawar et al. 2022, App. A): ``V^T`` is the permutation
that puts the observed coordinates first, ``U = V``, singular values 1 on observed coordinates
and 0 on missing ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from invdiff.operators import banks, masks
from invdiff.operators.base import SVDOperator
from invdiff.operators.validation import shape3
from invdiff.registry import OPERATORS


class Inpainting(SVDOperator):
    """Masked observation ``y = m ⊙ x`` for a given ``H x W`` mask (1 = observed, 0 = missing).

        Attributes: ``mask`` (buffer ``1 x 1 x H x W``), ``singular_values`` (``C*H*W``; the first
        ``C * #observed`` are 1, the rest 0), ``permutation``
    (``V^T x = x.flatten(1)[:, permutation]``).
    """

    is_inpainting = True

    def __init__(self, mask: Tensor, in_shape: Sequence[int] | None = None):
        mask = torch.as_tensor(mask, dtype=torch.float64).cpu()
        if mask.ndim != 2:
            raise ValueError(f"mask must be H x W, got shape {tuple(mask.shape)}")
        shape = shape3(in_shape, default=(1, *mask.shape))
        if tuple(mask.shape) != shape[1:]:
            raise ValueError(
                f"mask is {tuple(mask.shape)} but in_shape is {shape}: H x W must match"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (missing) and 1 (observed)")
        super().__init__(shape)
        c = shape[0]
        full = mask.expand(c, *mask.shape).reshape(-1)
        # stable sort: observed coordinates first, each group in C, H, W order
        permutation = torch.argsort(-full, stable=True)
        # 0/1 are exact in float32, so these need no float64 master
        self.register_buffer("mask", mask[None, None].to(torch.float32))
        self.register_buffer("singular_values", full[permutation].to(torch.float32))
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @property
    def observed_fraction(self) -> float:
        return float(self.mask.mean())

    def out_shape(self) -> tuple[int, ...]:
        return self.in_shape

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return x * self._like(self.mask, x)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return y * self._like(self.mask, y)

    def pinv(self, y: Tensor, **_: object) -> Tensor:
        self.check_measurement(y)
        return y * self._like(self.mask, y)

    def Vt(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)[:, self.permutation.to(x.device)]

    def V(self, z: Tensor) -> Tensor:
        return z[:, self.inverse_permutation.to(z.device)].reshape(z.shape[0], *self.in_shape)

    U = V
    Ut = Vt


def _from_bank(family: str, bank: str | None, index: int | None) -> Tensor | None:
    if bank is None:
        if index is not None:
            raise ValueError("index= needs bank= (the name of a mask bank)")
        return None
    return banks.entry(bank, family, 0 if index is None else index)


def _shape_for(in_shape: Sequence[int] | None, mask: Tensor | None) -> tuple[int, int, int]:
    if mask is not None and in_shape is None:
        return (1, *mask.shape)
    return shape3(in_shape)


@OPERATORS.register("inpainting_box")
class BoxInpainting(Inpainting):
    """A missing rectangle ``box`` = (bh, bw) (default H/2 x W/2), centred unless a
    ``generator``/``seed`` places it at random; or entry ``index`` of a box ``bank``."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        box: int | tuple[int, int] | None = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        bank: str | None = None,
        index: int | None = None,
    ):
        mask = _from_bank("box", bank, index)
        shape = _shape_for(in_shape, mask)
        if mask is None:
            mask = masks.box_mask(shape[1], shape[2], box, generator=generator, seed=seed)
        super().__init__(mask, shape)

    @classmethod
    def example(cls) -> BoxInpainting:
        return cls(in_shape=(3, 6, 8), box=(3, 4), seed=1)


@OPERATORS.register("inpainting_random")
class RandomInpainting(Inpainting):
    """A fraction ``missing`` of the pixels missing at random (default 0.7, seed 0); or entry
    ``index`` of a random-mask ``bank`` (``fmnist32-random70``, ``fmnist32-random92``)."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        missing: float = 0.7,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        bank: str | None = None,
        index: int | None = None,
    ):
        mask = _from_bank("random", bank, index)
        shape = _shape_for(in_shape, mask)
        if mask is None:
            mask = masks.random_mask(shape[1], shape[2], missing, generator=generator, seed=seed)
        super().__init__(mask, shape)

    @classmethod
    def example(cls) -> RandomInpainting:
        return cls(in_shape=(1, 8, 8), missing=0.5, seed=3)


@OPERATORS.register("inpainting_freeform")
class FreeformInpainting(Inpainting):
    """Free-form brush strokes missing (DeepFill v2 style, seed 0 by default); or entry
    ``index`` of a free-form ``bank`` (``fmnist32-freeform``)."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        *,
        max_strokes: int = 4,
        max_vertices: int = 6,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        bank: str | None = None,
        index: int | None = None,
    ):
        mask = _from_bank("freeform", bank, index)
        shape = _shape_for(in_shape, mask)
        if mask is None:
            mask = masks.freeform_mask(
                shape[1],
                shape[2],
                max_strokes=max_strokes,
                max_vertices=max_vertices,
                generator=generator,
                seed=seed,
            )
        super().__init__(mask, shape)

    @classmethod
    def example(cls) -> FreeformInpainting:
        return cls(in_shape=(1, 8, 8), seed=2)


@OPERATORS.register("inpainting_half")
class HalfInpainting(Inpainting):
    """Half of the image missing: ``side`` = right (default), left, top or bottom."""

    def __init__(self, in_shape: Sequence[int] | None = None, side: str = "right"):
        shape = shape3(in_shape)
        super().__init__(masks.half_mask(shape[1], shape[2], side), shape)

    @classmethod
    def example(cls) -> HalfInpainting:
        return cls(in_shape=(3, 4, 6), side="bottom")


@OPERATORS.register("inpainting_lines")
class LinesInpainting(Inpainting):
    """Every other line missing (``axis`` rows or columns, ``period`` 2, ``offset`` 1)."""

    def __init__(
        self,
        in_shape: Sequence[int] | None = None,
        axis: str = "rows",
        period: int = 2,
        offset: int = 1,
    ):
        shape = shape3(in_shape)
        super().__init__(masks.lines_mask(shape[1], shape[2], axis, period, offset), shape)

    @classmethod
    def example(cls) -> LinesInpainting:
        return cls(in_shape=(1, 6, 4), axis="columns")
