"""Training images as one in-memory tensor, and seeded random batches drawn from it.

Batches are drawn with replacement by ``torch.randint`` on the run's own generator, so the
sequence of batches is a pure function of the seed and the step, and a resumed run draws
exactly the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import torch
from torch import Tensor

import invdiff.data

# data sets built at the run's image size and channel count (the others have a fixed size)
RESIZABLE = ("image_folder", "photos")


def training_images(cfg) -> tuple[Tensor, Tensor, dict]:  # noqa: ANN001 - a TrainConfig
    """``(images, labels, description)`` of a run's training data: the ``train`` part of
    ``cfg.data`` (a folder) or of the registered set ``cfg.dataset``. ``description`` is what
    the model card states: source, size, channels, split and image counts."""
    if cfg.dataset in RESIZABLE:
        kwargs = {"size": cfg.image_size, "channels": cfg.image_channels}
        kwargs["val_fraction"] = cfg.val_fraction
        if cfg.dataset == "image_folder":
            if not cfg.data:
                raise ValueError("dataset 'image_folder' needs the folder: --data DIR")
            kwargs["root"] = cfg.data
        ds = invdiff.data.get(cfg.dataset, split=cfg.split, **kwargs)
        held_out = invdiff.data.get(cfg.dataset, split="validation", **kwargs)
        split = (
            f"{cfg.split} part of a deterministic split (images ranked by the SHA-256 of their "
            f"relative path or name; {cfg.val_fraction:g} of them held out for validation)"
        )
        counts = {"train_images": len(ds), "validation_images": len(held_out)}
    else:
        try:
            ds = invdiff.data.for_shape(
                cfg.dataset, split=cfg.split, size=cfg.image_size, channels=cfg.image_channels
            )
        except ValueError as err:
            raise ValueError(f"{err}: set --image-size and --image-channels to match") from None
        split, counts = f"{cfg.split} split", {"train_images": len(ds)}
    images = ds.images()
    if tuple(images.shape[1:]) != (cfg.image_channels, cfg.image_size, cfg.image_size):
        c, h, w = images.shape[1:]
        raise ValueError(
            f"data set {cfg.dataset!r} has {c}x{h}x{w} images, the run expects "
            f"{cfg.image_channels}x{cfg.image_size}x{cfg.image_size} "
            "(--image-channels, --image-size)"
        )
    labels = ds.labels if ds.labels is not None else torch.zeros(len(images), dtype=torch.long)
    description = {
        "dataset": cfg.dataset,
        "source": str(cfg.data) if cfg.data else cfg.dataset,
        "image_size": cfg.image_size,
        "channels": cfg.image_channels,
        "split": split,
        **counts,
    }
    return images.float().contiguous(), labels.long(), description


def draw_batch(n: int, batch_size: int, generator: torch.Generator) -> Tensor:
    """Indices of one batch (with replacement), from the run's generator."""
    return torch.randint(0, n, (batch_size,), generator=generator)
