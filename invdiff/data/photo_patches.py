"""Natural-image patches from scikit-image's bundled colour photos: an out-of-distribution test
set for the colour (emoji) priors.

Each photo of ``PATCH_PHOTOS`` (files inside scikit-image's wheel, never fetched) is cut into a
grid of square tiles whose side is 1/``scale`` of the photo's shorter side (``scale=4``: a 4 x 4
grid on a square photo), the grid centred on the photo; each tile is resized to ``size`` x
``size`` with Pillow's ``BOX`` filter (area average) straight from the full-resolution photo.
The tiles are the same regions at every ``size``, so patch i at 32 and at 64 pixels show the
same thing. With the defaults: astronaut 16, chelsea 24, coffee 24, rocket 20 = 84 patches,
ordered photo by photo, row by row; the label is the photo's index in ``photos``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from invdiff.data.base import ImageDataset
from invdiff.data.photos import photo_path
from invdiff.images import check_size, from_uint8
from invdiff.registry import DATASETS

#: the bundled colour photographs of natural scenes (the others are grey, or microscopy and
#: astronomy images that are mostly black)
PATCH_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
SPLITS = ("test", "all")


def tiles(width: int, height: int, scale: int) -> list[tuple[float, float, float, float]]:
    """The crop boxes ``(left, top, right, bottom)`` of a ``width`` x ``height`` photo, by rows."""
    side = min(width, height) / scale
    nx, ny = int(width // side), int(height // side)
    x0, y0 = (width - nx * side) / 2, (height - ny * side) / 2
    return [
        (x0 + c * side, y0 + r * side, x0 + (c + 1) * side, y0 + (r + 1) * side)
        for r in range(ny)
        for c in range(nx)
    ]


@functools.lru_cache(maxsize=8)
def _patches(photos: tuple[str, ...], size: int, scale: int) -> tuple[np.ndarray, tuple, tuple]:
    from PIL import Image

    images, labels, names = [], [], []
    for label, name in enumerate(photos):
        with Image.open(photo_path(name)) as img:
            rgb = img.convert("RGB")
        for k, box in enumerate(tiles(rgb.width, rgb.height, scale)):
            patch = rgb.resize((size, size), Image.Resampling.BOX, box=box)
            images.append(np.asarray(patch, dtype=np.uint8))
            labels.append(label)
            names.append(f"{name}-{k}")
    stack = np.stack(images)
    stack.setflags(write=False)
    return stack, tuple(labels), tuple(names)


@DATASETS.register("photo_patches")
class PhotoPatches(ImageDataset):
    """Patches of the bundled colour photos (see the module docstring): ``3 x size x size`` in
    [-1, 1], labelled by photo; ``.names[i]`` is ``"<photo>-<tile>"``. Only a test set."""

    def __init__(
        self,
        split: str = "test",
        size: int = 32,
        channels: int = 3,
        photos: list[str] | tuple[str, ...] | None = None,
        scale: int = 4,
    ):
        if split not in SPLITS:
            raise ValueError(
                f"photo_patches is an out-of-distribution test set: split must be one of "
                f"{', '.join(SPLITS)}, got {split!r}"
            )
        check_size(size)
        if channels != 3:
            raise ValueError(f"photo_patches are colour: channels must be 3, got {channels!r}")
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 64:
            raise ValueError(f"scale must be an integer from 1 to 64, got {scale!r}")
        photos = tuple(PATCH_PHOTOS if photos is None else photos)
        for name in photos:
            photo_path(name)  # every name is checked before any photo is read
        self.split, self.size, self.scale, self.photos = split, size, scale, photos
        self._images, labels, names = _patches(photos, size, scale)
        self.labels = torch.tensor(labels, dtype=torch.long)
        self.names = list(names)
        self.image_shape = (3, size, size)

    def __len__(self) -> int:
        return len(self._images)

    def _load(self, indices: Tensor) -> Tensor:
        return from_uint8(torch.from_numpy(self._images[indices.numpy()]).permute(0, 3, 1, 2))
