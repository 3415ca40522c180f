"""How a measurement is shown as an image: one rule for ``invdiff solve``, ``bench`` and ``demo``.

``measurement_image(y, operator, in_shape)`` returns a picture in [-1, 1] and its caption:

1. a measurement of a Fourier-magnitude operator (phase retrieval), or any measurement whose
   values leave the image range (beyond +-1.5, more than noise can explain), is shown on a log
   scale: ``log(|y| + 1e-3)`` mapped from its 1st to its 99.5th percentile onto [-1, 1], per image
   (the zero frequency alone would otherwise flatten the rest to one grey);
2. an image-valued measurement (grey or RGB, e.g. the grey image of colorization) is shown as it
   is (clamped to [-1, 1]), upsampled (nearest neighbour) to the image size when it is smaller
   (super-resolution);
3. anything else (a vector, e.g. compressed sensing) is shown as ``A^+ y`` when the operator is
   linear,
   else as a blank panel whose caption says so.

``image_grid`` lays images out in rows and columns (the bench figures) and ``save_figure``
writes a figure atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

#: measurements beyond this magnitude are not images on [-1, 1] plus noise
IMAGE_RANGE = 1.5


def log_scale(y: Tensor) -> Tensor:
    """``log(|y| + 1e-3)`` per image from its 1st..99.5th percentile onto [-1, 1]."""
    v = torch.log(y.abs().double() + 1e-3).flatten(1)
    lo = torch.quantile(v, 0.01, dim=1, keepdim=True)
    hi = torch.quantile(v, 0.995, dim=1, keepdim=True)
    v = ((v - lo) / (hi - lo).clamp_min(1e-12)).clamp(0, 1)
    return (v * 2 - 1).float().reshape(y.shape)


def is_magnitude(operator: object) -> bool:
    """True for operators whose measurements are Fourier magnitudes."""
    from invdiff.operators.phase_retrieval import PhaseRetrieval

    return isinstance(operator, PhaseRetrieval)


def measurement_image(
    y: Tensor, operator: object = None, in_shape: Sequence[int] | None = None
) -> tuple[Tensor, str]:
    """A viewable ``N x C x h x w`` picture of the measurement ``y`` in [-1, 1], and a caption.

    ``operator`` (optional) decides rules 1 and 3; ``in_shape`` (C, H, W) is the image size a
    smaller measurement is upsampled to and the shape of a blank panel (see the module doc).
    """
    from invdiff.operators.base import LinearOperator

    y = y.detach()
    image_like = y.ndim == 4 and y.shape[1] in (1, 3)  # grey or RGB, whatever the image's
    if image_like and (
        is_magnitude(operator) or (y.numel() and float(y.abs().max()) > IMAGE_RANGE)
    ):
        return log_scale(y), "|y| (log scale)"
    if image_like:
        if in_shape is not None and tuple(y.shape[-2:]) != tuple(in_shape[-2:]):
            h, w = in_shape[-2:]
            if y.shape[-2] <= h and y.shape[-1] <= w:
                return F.interpolate(y, size=(h, w), mode="nearest").clamp(-1, 1), ("y (upsampled)")
        return y.clamp(-1, 1), "y"
    if isinstance(operator, LinearOperator):
        return operator.pinv(y).clamp(-1, 1), "A⁺y (y is not an image)"
    shape = tuple(in_shape) if in_shape is not None else (1, 8, 8)
    return torch.zeros(y.shape[0], *shape, device=y.device), "(y is not an image)"


def show_image(ax: object, img: Tensor) -> None:
    """Draw one ``1 x C x H x W`` (or ``C x H x W``) image in [-1, 1] on a matplotlib ``Axes``:
    grey or RGB at its pixels (nearest neighbour, no colour scaling: 0..255 after
    ``to_uint8``), without ticks."""
    from invdiff.images import to_uint8

    a = to_uint8((img[None] if img.ndim == 3 else img).float())[0]
    ax.imshow(  # type: ignore[attr-defined]
        a[..., 0] if a.shape[-1] == 1 else a, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
    )
    ax.set_xticks([])  # type: ignore[attr-defined]
    ax.set_yticks([])  # type: ignore[attr-defined]


def image_grid(
    panels: Sequence[Sequence[Tensor]],
    *,
    column_titles: Sequence[str] = (),
    row_labels: Sequence[str] = (),
    title: str = "",
    cell: float = 1.3,
    dpi: int = 100,
) -> object:
    """A matplotlib ``Figure`` of images in rows: ``panels[r][c]`` is a ``1 x C x H x W`` (or
    ``C x H x W``) image in [-1, 1], shown grey or RGB at its pixels (nearest neighbour, no
    colour scaling: 0..255 after ``to_uint8``). Titles go above the first row, labels left of
    the first column. Write it with :func:`save_figure`."""
    from matplotlib.figure import Figure

    nrows = len(panels)
    ncols = max((len(r) for r in panels), default=0)
    fig = Figure(figsize=(cell * ncols, cell * nrows + 0.4), dpi=dpi)
    for r, row in enumerate(panels):
        for c, img in enumerate(row):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
            show_image(ax, img)
            if r == 0 and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=7)
            if c == 0 and r < len(row_labels):
                ax.set_ylabel(row_labels[r], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: object, path: str | Path, **savefig: object) -> Path:
    """Write a matplotlib figure as a PNG, atomically (``invdiff.io.write_with``)."""
    from invdiff.io import write_with

    return write_with(path, lambda f: fig.savefig(f, format="png", **savefig))  # type: ignore[attr-defined]
