"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 grey 28x28 garments, 10 classes, MIT licence.

Returned as float32 ``1 x 32 x 32`` images in [-1, 1]: the 28x28 images zero-padded by 2 pixels
on every side with the background value -1 (the size every invdiff model and problem uses), with
the official split (``train``: 60,000, ``test``: 10,000) and integer labels.

``val`` is the validation split of the benchmarks: the last 1,000 images of the official test
split (test indices 9,000-9,999, in order). The shipped priors train on all of ``train``, so a
validation set for tuning solver hyperparameters must come from images no prior has seen; a
suite that runs tuned hyperparameters is refused if its test images overlap the images they
were tuned on (``invdiff.bench.tuning``), so a paper table tunes on ``val`` and reports on
``test`` indices 0-8,999.

The IDX ``.gz`` files are read from ``root=`` when the caller gives one (and only from there),
else from the first of ``/usr/share/datasets/fashion-mnist/`` (Debian/Ubuntu:
``apt-get install dataset-fashion-mnist``), the folder named by ``INVDIFF_FASHION_MNIST`` and
``<invdiff home>/data/fashion-mnist`` that holds them. Nothing is downloaded: data come from
packages or folders the user provides.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from invdiff.data.base import ImageDataset
from invdiff.images import from_uint8
from invdiff.paths import home
from invdiff.registry import DATASETS

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "INVDIFF_FASHION_MNIST"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
#: split -> (the official files it reads, the slice of them it is)
SPLITS = {
    "train": ("train", slice(None)),
    "test": ("test", slice(None)),
    "val": ("test", slice(9000, 10000)),
}
#: the official test indices that form ``val``
VAL_START = 9000
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: the 28x28 images are padded to this size with the background value -1
SIZE = 32


def cache_dir() -> Path:
    return home() / "data" / "fashion-mnist"


def search_dirs(root: str | Path | None = None) -> list[Path]:
    """The folders searched for the IDX files, in order."""
    dirs = [Path(root)] if root is not None else []
    dirs.append(SYSTEM_DIR)
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]).expanduser())
    dirs.append(cache_dir())
    return dirs


#: the largest decompressed IDX file read (the Fashion-MNIST training images are 47 MB), so a
#: damaged or hostile archive cannot fill the memory
MAX_IDX_BYTES = 256 * 2**20


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (LeCun's MNIST format: big-endian magic, dimensions, uint8 data)."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"{path} is not a readable gzip file ({err}); reinstall the data set "
            "(apt-get install --reinstall dataset-fashion-mnist) or copy the file again"
        ) from None
    if len(data) > MAX_IDX_BYTES:
        raise ValueError(
            f"{path} decompresses to more than {MAX_IDX_BYTES:,} bytes; not an IDX file"
        )
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header is incomplete")
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {tuple(dims)}, found {body.size} bytes")
    return body.reshape(tuple(dims))


def find(split: str, root: str | Path | None = None, download: bool = False) -> Path:
    """The folder holding ``split``'s two IDX files.

    With ``root`` only that folder is looked at (a wrong ``root`` is an error, not a silent
    fall-back to another copy). ``download`` exists for compatibility: invdiff never downloads,
    and ``download=True`` is refused.
    """
    if download:
        raise ValueError(
            "invdiff does not download data sets; install Fashion-MNIST with "
            "`apt-get install dataset-fashion-mnist` or pass root= a folder holding the IDX files"
        )
    wanted = FILES[SPLITS[split][0] if split in SPLITS else split][:2]
    if root is not None:
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"root={str(root)!r}: no such folder (it should hold {', '.join(wanted)})"
            )
        missing = [n for n in wanted if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"root={str(root)!r} does not hold the Fashion-MNIST {split} file(s) "
                f"{', '.join(missing)}"
            )
        return folder
    dirs = search_dirs()
    for d in dirs:
        if all((d / name).is_file() for name in wanted):
            return d
    looked = ", ".join(str(d) for d in dirs)
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({', '.join(wanted)}) not found in: {looked}. Install "
        "them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
        f"{ENV_VAR}=/path/to/folder holding the IDX .gz files"
    )


@functools.lru_cache(maxsize=4)
def _arrays(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_file, labels_file, count = FILES[split]
    images = read_idx(Path(folder) / images_file)
    labels = read_idx(Path(folder) / labels_file)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise ValueError(
            f"Fashion-MNIST {split} in {folder}: expected {count} images of 28x28 and {count} "
            f"labels, got {images.shape} and {labels.shape}"
        )
    return images, labels


@DATASETS.register("fashion_mnist")
class FashionMNIST(ImageDataset):
    """Fashion-MNIST ``split`` (``train``/``test``/``val``): ``1 x 32 x 32`` images in [-1, 1],
    labels (``val``: test images 9,000-9,999; module docstring).

    ``FashionMNIST("test").images(range(16))`` -> ``16 x 1 x 32 x 32``; ``.labels`` (int64);
    ``CLASSES[label]`` names a class.
    """

    card_name: ClassVar[str] = "Fashion-MNIST"
    card_text: ClassVar[str] = (
        "Fashion-MNIST (Xiao et al. 2017, MIT licence) read from Debian's "
        "`dataset-fashion-mnist` files; 28x28 images padded to 32x32 with the background "
        "value, in [-1, 1]."
    )

    classes = CLASSES

    def __init__(self, split: str = "test", root: str | Path | None = None, download: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        self.split = split
        files, part = SPLITS[split]
        self.folder = find(split, root, download)
        images, labels = _arrays(str(self.folder), files)
        self._images, labels = images[part], labels[part]
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.image_shape = (1, SIZE, SIZE)

    def __len__(self) -> int:
        return len(self._images)

    def _load(self, indices: Tensor) -> Tensor:
        x = from_uint8(torch.from_numpy(self._images[indices.numpy()])[:, None])
        pad = (SIZE - 28) // 2
        return torch.nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)
