"""What every invdiff data set is: a torch ``Dataset`` of [-1, 1] images with batch access."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """A sized data set of float32 ``C x H x W`` images in [-1, 1], with optional integer labels.

    ``dataset[i]`` is ``(image, label)`` (label ``-1`` when the set has none, so a ``DataLoader``
    collates it); ``dataset.images(indices)`` returns a batch ``N x C x H x W`` directly.
    Subclasses implement ``_load(indices) -> N x C x H x W`` and set ``image_shape``.
    """

    #: (C, H, W) of every image
    image_shape: tuple[int, int, int]
    #: one integer label per image, or None
    labels: Tensor | None = None
    #: the split a single reconstruction (``invdiff solve --index``) reads its image from
    evaluation_split: ClassVar[str] = "test"
    #: the images are the user's own folder (a problem on it needs an image from the user)
    user_folder: ClassVar[bool] = False
    #: what a model card says about a prior trained on the set ({size}: the image size);
    #: empty for sets described by their run (folders, photos)
    card_text: ClassVar[str] = ""
    #: how a model card names the set in its first sentence (empty: not named)
    card_name: ClassVar[str] = ""

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load(self, indices: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def images(self, indices: int | Sequence[int] | Tensor | slice | None = None) -> Tensor:
        """Images at ``indices`` (all of them when None) as ``N x C x H x W`` float32 in [-1, 1]."""
        n = len(self)
        if indices is None:
            idx = torch.arange(n)
        elif isinstance(indices, slice):
            idx = torch.arange(n)[indices]
        else:
            idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        if isinstance(indices, bool) or (
            isinstance(indices, Tensor) and indices.is_floating_point()
        ):
            raise TypeError(f"indices must be integers, got {indices!r}")
        if isinstance(indices, Sequence) and any(isinstance(i, bool | float) for i in indices):
            raise TypeError(f"indices must be integers, got {list(indices)[:8]}")
        # negative indices are refused, not wrapped: -1 is a typo more often than "the last"
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(
                f"indices must lie in [0, {n}) for this data set of {n} images, "
                f"got {idx.tolist()[:8]}"
            )
        return self._load(idx)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        label = int(self.labels[i]) if self.labels is not None else -1
        return self.images([i])[0], label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images of {'x'.join(map(str, self.image_shape))})"
        )


SPLITS = ("all", "train", "validation")


def split_members(keys: Sequence[str], split: str, val_fraction: float) -> list[int]:
    """Indices of ``keys`` (e.g. relative file paths) in ``split`` of a deterministic split.

    The keys are ranked by the SHA-256 of their text; the first ``round(n * val_fraction)`` (at
    least one when there are two or more keys and ``val_fraction > 0``) form ``validation``, the
    rest ``train``. The result depends on the set of keys only: not on the machine, the order
    the files are listed in or any random state.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    n = len(keys)
    if split == "all":
        return list(range(n))
    n_val = max(1, round(n * val_fraction)) if n >= 2 and val_fraction > 0 else 0
    ranked = sorted(range(n), key=lambda i: hashlib.sha256(keys[i].encode()).hexdigest())
    validation = set(ranked[:n_val])
    return [i for i in range(n) if (i in validation) == (split == "validation")]
