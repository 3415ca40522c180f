"""Data sets: Fashion-MNIST (IDX files), image folders, scikit-image's bundled photos."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

import invdiff
from invdiff.data import fashion_mnist
from invdiff.data.photos import PHOTOS, photo
from invdiff.registry import UnknownNameError

needs_fmnist = pytest.mark.skipif(
    not (fashion_mnist.SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture
def no_fmnist(monkeypatch, tmp_path):
    """No Fashion-MNIST anywhere, and any download attempt is an error."""
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(fashion_mnist, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.delenv(fashion_mnist.ENV_VAR, raising=False)
    import socket
    import urllib.request

    def no_network(*args, **kwargs):
        pytest.fail("invdiff never downloads")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(urllib.request, "urlretrieve", no_network)


def test_registry():
    assert {"fashion_mnist", "image_folder", "photos"} <= set(invdiff.data.names())
    with pytest.raises(UnknownNameError, match="Valid names"):
        invdiff.data.get("cifar10")


@needs_fmnist
def test_fashion_mnist_test_split():
    ds = invdiff.data.get("fashion_mnist", split="test")
    assert len(ds) == 10000 and ds.image_shape == (1, 32, 32)
    x = ds.images(range(64))
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.max() > 0.9
    # the 2-pixel padding is the background value -1
    border = torch.cat(
        [
            x[..., :2, :].flatten(),
            x[..., -2:, :].flatten(),
            x[..., :2].flatten(),
            x[..., -2:].flatten(),
        ]
    )
    assert (border == -1).all()
    # official test split: 1,000 images per class; first labels of the official file
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert ds.labels[:4].tolist() == [9, 2, 1, 1] and ds.classes[9] == "Ankle boot"
    image, label = ds[3]
    assert torch.equal(image, x[3]) and label == 1
    assert torch.equal(ds.images(slice(2, 5)), x[2:5])
    with pytest.raises(IndexError, match="indices must lie"):
        ds.images([10000])


@needs_fmnist
def test_fashion_mnist_train_split_and_loader():
    ds = invdiff.data.get("fashion_mnist", split="train")
    assert len(ds) == 60000 and torch.bincount(ds.labels).tolist() == [6000] * 10
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert images.shape == (8, 1, 32, 32) and labels.dtype == torch.int64


def test_fashion_mnist_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        invdiff.data.get("fashion_mnist", split="validation")


def test_fashion_mnist_missing_is_a_clear_error(no_fmnist):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as err:
        invdiff.data.get("fashion_mnist", split="test")
    assert fashion_mnist.ENV_VAR in str(err.value)


@needs_fmnist
def test_fashion_mnist_env_var(no_fmnist, monkeypatch):
    monkeypatch.setenv(
        fashion_mnist.ENV_VAR, str(fashion_mnist.Path("/usr/share/datasets/fashion-mnist"))
    )
    ds = invdiff.data.get("fashion_mnist", split="test")
    assert ds.folder == fashion_mnist.Path("/usr/share/datasets/fashion-mnist") and len(ds) == 10000


def test_read_idx_round_trip_and_corrupt(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array(a.shape, dtype=">u4").tobytes()
    with gzip.open(tmp_path / "ok.gz", "wb") as f:
        f.write(header + a.tobytes())
    np.testing.assert_array_equal(fashion_mnist.read_idx(tmp_path / "ok.gz"), a)
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(header + a.tobytes()[:-1])
    with pytest.raises(ValueError, match="truncated"):
        fashion_mnist.read_idx(tmp_path / "short.gz")
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        fashion_mnist.read_idx(tmp_path / "bad.gz")


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder(tmp_path):
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:, 5:15] = 255  # the centre square is white, the sides black
    _write(tmp_path / "b_wide.png", wide)
    _write(tmp_path / "a_grey.png", np.full((12, 12), 0, dtype=np.uint8))
    _write(tmp_path / "sub" / "c_rgba.png", np.full((16, 16, 4), 255, dtype=np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = invdiff.data.get("image_folder", root=tmp_path, size=8, channels=3)
    assert [p.name for p in ds.files] == ["a_grey.png", "b_wide.png", "c_rgba.png"]
    x = ds.images()
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.full((3, 8, 8), -1.0))
    torch.testing.assert_close(x[1], torch.ones(3, 8, 8), atol=1e-3, rtol=0)  # centre crop
    image, label = ds[2]
    assert image.shape == (3, 8, 8) and label == -1
    grey = invdiff.data.get("image_folder", root=tmp_path, size=4, channels=1)
    assert grey.images([1]).shape == (1, 1, 4, 4)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        invdiff.data.get("image_folder", root=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        invdiff.data.get("image_folder", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="channels must be 1"):
        invdiff.data.get("image_folder", root=tmp_path, channels=4)
    with pytest.raises(ValueError, match="size must be"):
        invdiff.data.get("image_folder", root=tmp_path, size=0)


def test_photos():
    assert {"astronaut", "camera", "coffee", "chelsea", "rocket"} <= set(PHOTOS)
    ds = invdiff.data.get("photos", size=16, names=["astronaut", "camera"])
    x = ds.images()
    assert x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert x[0].std() > 0.1 and not torch.equal(x[0, 0], x[0, 1])  # a colour photo
    assert torch.equal(x[1, 0], x[1, 1]) and torch.equal(x[1, 0], x[1, 2])  # grey camera, repeated
    assert photo("coffee", size=8, channels=1).shape == (1, 1, 8, 8)
    assert len(invdiff.data.get("photos", size=4)) == len(PHOTOS)


def test_photos_errors():
    with pytest.raises(ValueError, match="unknown photo 'lena'"):
        invdiff.data.get("photos", names=["lena"])
    with pytest.raises(ValueError, match="channels must be 1"):
        photo("astronaut", channels=2)
