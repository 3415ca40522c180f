"""Any folder of images, so users bring their own data.

Every image file under ``root`` (recursively, in sorted path order, so the order is the same on
every machine) is centre-cropped to a square and resized to ``size`` (antialiased bicubic), and
converted to ``channels`` (1: luminance, 3: RGB). Images are read when asked for.

``split`` picks ``all`` files, or the ``train`` or ``validation`` part of a deterministic split
(``invdiff.data.base.split_members``: ranked by the SHA-256 of the relative path, a fraction
``val_fraction`` of the files, at least one, is validation), so ``invdiff train --data DIR``
and an evaluation on the same folder agree on which images were held out.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from invdiff.data.base import ImageDataset, split_members
from invdiff.images import check_size, load_image
from invdiff.registry import DATASETS

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@DATASETS.register("image_folder")
class ImageFolder(ImageDataset):
    """The images under ``root`` as ``channels x size x size`` tensors in [-1, 1] (no labels)."""

    user_folder: ClassVar[bool] = True

    def __init__(
        self,
        root: str | Path,
        size: int = 64,
        channels: int = 3,
        split: str = "all",
        val_fraction: float = 0.1,
    ):
        root = Path(root).expanduser()
        check_size(size)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"no image files ({', '.join(EXTENSIONS)}) under {root}")
        keys = [p.relative_to(root).as_posix() for p in files]
        self.files = [files[i] for i in split_members(keys, split, val_fraction)]
        if not self.files:
            raise ValueError(
                f"the {split} split of {root} is empty ({len(files)} image(s), "
                f"val_fraction={val_fraction}); add images or change val_fraction"
            )
        self.root, self.size, self.channels = root, size, channels
        self.split, self.val_fraction, self.total = split, val_fraction, len(files)
        self.image_shape = (channels, size, size)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, indices: Tensor) -> Tensor:
        if not indices.numel():
            return torch.empty(0, *self.image_shape)
        return torch.cat(
            [load_image(self.files[i], self.size, self.channels) for i in indices.tolist()]
        )
