"""Data sets as [-1, 1] float tensors, registered by name.

ds = invdiff.data.get("fashion_mnist", split="test")    # 10,000 x 1 x 32 x 32, with labels
x = ds.images(range(16))                                  # 16 x 1 x 32 x 32 in [-1, 1]
invdiff.data.get("image_folder", root="my_photos", size=64, channels=3)
invdiff.data.get("photos", size=128)                      # scikit-image's bundled photos
invdiff.data.get("emoji", split="train", size=64)         # colour emoji, 3 x 64 x 64
invdiff.data.get("photo_patches", size=64)                # natural-image patches (OOD test)
invdiff.data.names()
"""

from __future__ import annotations

from typing import Any

from invdiff.data.base import ImageDataset
from invdiff.data.emoji import Emoji
from invdiff.data.fashion_mnist import FashionMNIST
from invdiff.data.image_folder import ImageFolder
from invdiff.data.photo_patches import PhotoPatches
from invdiff.data.photos import PHOTOS, Photos, photo
from invdiff.registry import DATASETS


def get(name: str, **kwargs: Any) -> ImageDataset:
    """Build the data set registered as ``name`` with keyword arguments."""
    return DATASETS.get(name, **kwargs)


def names() -> list[str]:
    """The registered data set names."""
    return DATASETS.names()


__all__ = [
    "PHOTOS",
    "Emoji",
    "FashionMNIST",
    "ImageDataset",
    "ImageFolder",
    "PhotoPatches",
    "Photos",
    "get",
    "names",
    "photo",
]
