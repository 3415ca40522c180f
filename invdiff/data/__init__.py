"""Data sets as [-1, 1] float tensors, registered by name.

ds = invdiff.data.get("fashion_mnist", split="test")    # 10,000 x 1 x 32 x 32, with labels
x = ds.images(range(16))                                  # 16 x 1 x 32 x 32 in [-1, 1]
invdiff.data.get("image_folder", root="my_photos", size=64, channels=3)
invdiff.data.get("photos", size=128)                      # scikit-image's bundled photos
invdiff.data.get("emoji", split="train", size=64)         # colour emoji, 3 x 64 x 64
invdiff.data.get("photo_patches", size=64)                # natural-image patches (OOD test)
invdiff.data.names()
invdiff.data.for_shape("emoji", split="test", size=32, channels=3)   # a problem's images
"""

from __future__ import annotations

import inspect
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


def for_shape(
    name: str, *, split: str | None = None, size: int, channels: int, **kwargs: Any
) -> ImageDataset:
    """The ``split`` of data set ``name`` at ``size`` x ``size`` pixels and ``channels`` channels.

    ``split=None`` is the set's ``evaluation_split`` (``test``; ``all`` for the dozen photos).

    ``size`` and ``channels`` are passed to the sets that render at any size (emoji, photos, an
    image folder); a set with one fixed shape (Fashion-MNIST, 1 x 32 x 32) must already have it.
    A split the set does not know is its own ``ValueError``.
    """
    factory = DATASETS.entry(name)
    takes = inspect.signature(factory).parameters
    options = {"split": split or factory.evaluation_split, **kwargs}
    options.update({k: v for k, v in (("size", size), ("channels", channels)) if k in takes})
    dataset = factory(**options)
    shape = tuple(dataset.image_shape)
    if shape != (channels, size, size):
        raise ValueError(
            f"data set {name!r} has {shape[0]} x {shape[1]} x {shape[2]} images, "
            f"not the {channels} x {size} x {size} asked for"
        )
    return dataset


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
    "for_shape",
    "get",
    "names",
    "photo",
]
