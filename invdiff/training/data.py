"""Training images as one in-memory tensor, and seeded random batches drawn from it.

Batches are drawn with replacement by ``torch.randint`` on the run's own generator, so the
sequence of batches is a pure function of the seed and the step, and a resumed run draws
exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from invdiff.images import from_uint8

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {"train": "train", "test": "t10k"}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _fashion_mnist_fallback(split: str) -> tuple[Tensor, Tensor]:
    """Read the Debian IDX files directly (used when ``invdiff.data`` cannot serve the set)."""
    if split not in _FILES:
        raise ValueError(f"split must be one of {', '.join(_FILES)}, got {split!r}")
    images = _read_idx(FASHION_MNIST_DIR / f"{_FILES[split]}-images-idx3-ubyte.gz")
    labels = _read_idx(FASHION_MNIST_DIR / f"{_FILES[split]}-labels-idx1-ubyte.gz")
    x = from_uint8(torch.from_numpy(images.copy())[:, None])
    x = F.pad(x, (2, 2, 2, 2), value=-1.0)  # 28 -> 32 with the background value
    return x, torch.from_numpy(labels.astype(np.int64))


def load_images(dataset: str, split: str = "train", image_size: int = 32) -> tuple[Tensor, Tensor]:
    """``(images N x C x H x W in [-1, 1], labels N)`` of a registered data set."""
    images = labels = None
    try:
        import invdiff.data as data

        getter = getattr(data, "get", None)
        if getter is not None:
            ds = getter(dataset, split=split)
            images, labels = _as_tensors(ds)
    except (
        ImportError,
        KeyError,
        NotImplementedError,
        TypeError,
        AttributeError,
        FileNotFoundError,
    ):
        images = None
    if images is None:
        if dataset != "fashion_mnist":
            raise ValueError(
                f"unknown data set {dataset!r} for training (fashion_mnist is built in)"
            )
        images, labels = _fashion_mnist_fallback(split)
    if images.shape[-1] != image_size:
        raise ValueError(
            f"data set {dataset!r} has {images.shape[-1]}px images, "
            f"the run expects image_size={image_size}"
        )
    return images.float().contiguous(), labels


def _as_tensors(ds: object) -> tuple[Tensor | None, Tensor | None]:
    """Images and labels of whatever ``invdiff.data.get`` returns (tensors, a tuple, a data set)."""
    from invdiff.data.base import ImageDataset

    if isinstance(ds, ImageDataset):
        x = ds.images()
        y = ds.labels if ds.labels is not None else torch.zeros(len(x), dtype=torch.long)
        return x, y
    if isinstance(ds, Tensor):
        return ds, torch.zeros(len(ds), dtype=torch.long)
    if isinstance(ds, tuple) and len(ds) == 2 and isinstance(ds[0], Tensor):
        return ds[0], torch.as_tensor(ds[1]).long()
    for attr_x, attr_y in (("images", "labels"), ("x", "y"), ("data", "targets")):
        x = getattr(ds, attr_x, None)
        if isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point():
            y = getattr(ds, attr_y, None)
            y = (
                torch.as_tensor(y).long()
                if y is not None
                else torch.zeros(len(x), dtype=torch.long)
            )
            return x, y
    return None, None


def draw_batch(n: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """Indices of one batch (with replacement), from the run's generator."""
    return torch.randint(0, n, (batch_size,), generator=generator)
