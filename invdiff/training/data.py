"""Training images as one in-memory tensor, and seeded random batches drawn from it.

Batches are drawn with replacement by ``torch.randint`` on the run's own generator, so the
sequence of batches is a pure function of the seed and the step, and a resumed run draws
exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

import invdiff.data


def load_images(dataset: str, split: str = "train", image_size: int = 32) -> tuple[Tensor, Tensor]:
    """``(images N x C x H x W in [-1, 1], labels N)`` of a registered data set (``invdiff.data``).

    A set without labels gets label 0 everywhere (class conditioning then has one class).
    """
    ds = invdiff.data.get(dataset, split=split)
    images = ds.images()
    if images.shape[-1] != image_size:
        raise ValueError(
            f"data set {dataset!r} has {images.shape[-1]}px images, "
            f"the run expects image_size={image_size}"
        )
    labels = ds.labels if ds.labels is not None else torch.zeros(len(images), dtype=torch.long)
    return images.float().contiguous(), labels.long()


def draw_batch(n: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """Indices of one batch (with replacement), from the run's generator."""
    return torch.randint(0, n, (batch_size,), generator=generator)
