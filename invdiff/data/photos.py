"""Natural photographs bundled with scikit-image, for natural-image demos (no download needed).

scikit-image ships these files inside its wheel (``skimage/data/``); the loader reads them from
there, centre-crops them to a square and resizes them to ``size``. Grey photos are repeated to
three channels for ``channels=3`` and colour ones converted to luminance for ``channels=1``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from invdiff.data.base import ImageDataset, split_members
from invdiff.images import check_size, load_image
from invdiff.registry import DATASETS

#: name -> file in scikit-image's bundled data folder (present in the wheel, no pooch download)
PHOTOS = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "moon": "moon.png",
    "coins": "coins.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}


def photo_path(name: str) -> Path:
    """The bundled file of photo ``name``; a clear error for an unknown or missing one."""
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; bundled photos: {', '.join(PHOTOS)}")
    path = Path(str(files("skimage.data") / PHOTOS[name]))
    if not path.is_file():
        raise FileNotFoundError(
            f"scikit-image's bundled photo {path} is missing; reinstall scikit-image"
        )
    return path


def photo(name: str, size: int = 128, channels: int = 3) -> Tensor:
    """One bundled photo as a ``1 x channels x size x size`` tensor in [-1, 1]."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    check_size(size)
    return load_image(photo_path(name), size, channels)


@DATASETS.register("photos")
class Photos(ImageDataset):
    """The bundled photos ``names`` (default: all ``PHOTOS``), ``size`` pixels, 1 or 3 channels."""

    #: a dozen photos: a reconstruction reads any of them
    evaluation_split: ClassVar[str] = "all"

    def __init__(
        self,
        size: int = 128,
        channels: int = 3,
        names: list[str] | tuple[str, ...] | None = None,
        split: str = "all",
        val_fraction: float = 0.1,
    ):
        names = list(PHOTOS) if names is None else list(names)
        # the same deterministic split as an image folder, over the photo names
        self.names = [names[i] for i in split_members(names, split, val_fraction)]
        for n in names:
            photo_path(n)  # validate every name before any image is read
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        check_size(size)
        self.size, self.channels = size, channels
        self.image_shape = (channels, size, size)

    def __len__(self) -> int:
        return len(self.names)

    def _load(self, indices: Tensor) -> Tensor:
        if not indices.numel():
            return torch.empty(0, *self.image_shape)
        return torch.cat([photo(self.names[i], self.size, self.channels) for i in indices.tolist()])
