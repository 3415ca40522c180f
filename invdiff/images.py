"""The one place where image ranges and dtypes are converted and checked.

Inside invdiff an image is a float tensor ``N x C x H x W`` in [-1, 1]. Conversion to and from
[0, 1] floats, uint8 arrays and image files happens here and nowhere else: data loaders,
image writers and metric adapters call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# Tolerance on the [-1, 1] range: values a hair outside come from float round-off.
RANGE_TOLERANCE = 1e-3


def check_image(
    x: object,
    name: str = "x",
    *,
    channels: int | None = None,
    size: Sequence[int] | None = None,
    check_range: bool = True,
    check_values: bool = True,
) -> Tensor:
    """Validate a batch of images and return it unchanged.

    Raises a ``TypeError``/``ValueError`` naming ``name`` and the expected value for a
    non-tensor, a wrong number of dimensions, a non-float dtype, NaN/Inf, a wrong channel
    count or size, or (``check_range``) values outside [-1, 1]. ``check_values=False`` keeps
    only the checks of metadata (type, shape, dtype): reading values waits for the device.
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape N x C x H x W, got {type(x).__name__}"
        )
    if x.ndim != 4:
        raise ValueError(
            f"{name} must have 4 dimensions N x C x H x W, got shape {tuple(x.shape)}"
            + (" (add a batch dimension with x[None])" if x.ndim == 3 else "")
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}; "
            "convert uint8 images with invdiff.images.from_uint8"
        )
    if check_values and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name} must be {tuple(size)} pixels (H, W), got {tuple(x.shape[-2:])}")
    if check_values and check_range and x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (looks like [0, 255]: use from_uint8)" if hi > 2 else ""
            hint = hint or (" (looks like [0, 1]? use from_unit)" if lo >= 0 else "")
            raise ValueError(
                f"{name} must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}"
            )
    return x


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return ((x + 1) / 2).clamp(0, 1)


def from_unit(x: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def from_uint8(a: np.ndarray | Tensor) -> Tensor:
    """uint8 image(s) -> float32 [-1, 1].

    Accepts ``H x W``, ``H x W x C`` (numpy/PIL layout) or ``N x C x H x W`` tensors and
    returns ``N x C x H x W``.
    """
    t = torch.as_tensor(np.array(a) if not isinstance(a, Tensor) else a)
    if t.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects uint8 data, got {t.dtype}")
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t.permute(2, 0, 1)[None]
    elif t.ndim != 4:
        raise ValueError(f"from_uint8 expects 2, 3 or 4 dimensions, got shape {tuple(t.shape)}")
    return t.float().div(127.5).sub(1).contiguous()


def to_uint8(x: Tensor) -> np.ndarray:
    """[-1, 1] ``N x C x H x W`` -> uint8 ``N x H x W x C`` numpy array (rounded)."""
    check_image(x, "x", check_range=False)
    u = (to_unit(x.detach().float().cpu()) * 255).round().to(torch.uint8)
    return u.permute(0, 2, 3, 1).numpy()


#: the largest image (width x height) ``load_image`` decodes: larger files are refused before
#: their pixels are decompressed (a small file can declare a huge image)
MAX_IMAGE_PIXELS = 8192 * 8192


#: the largest side ``load_image`` resizes to (a 4096 x 4096 colour image is 200 MB as float32)
MAX_SIZE = 4096


def check_size(size: object, name: str = "size") -> None:
    """``size`` (pixels of a square image) is None or an int in [1, ``MAX_SIZE``]."""
    if size is None:
        return
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be a positive integer (pixels), got {size!r}")
    if size > MAX_SIZE:
        raise ValueError(f"{name} must be at most {MAX_SIZE} pixels, got {size}")


def _pixels(img, path: Path, notes: list[str], channels: int | None) -> Tensor:  # noqa: ANN001
    """The pixels of a PIL image as ``1 x C x H x W`` in [-1, 1], C = 1 or 3, at full depth."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img).astype(np.float64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(
                f"image file {path}: 32-bit integer pixels outside [0, 65535]; "
                "save it as an 8- or 16-bit image"
            )
        notes.append(f"16-bit grey pixels ({mode}) scaled by 1/65535")
        t = from_unit(torch.from_numpy(a / 65535.0).float()[None, None])
        if channels == 3:
            notes.append("grey replicated to 3 channels")
            t = t.expand(-1, 3, -1, -1).contiguous()
        return t
    if mode == "F":
        raise ValueError(
            f"image file {path}: 32-bit float pixels have no defined range; "
            "save it as an 8- or 16-bit image"
        )
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image expanded to colour")
        mode = img.mode
    if mode in ("RGBA", "LA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"))
        base = "RGB" if mode.startswith("RGB") else "L"
        if alpha.min() < 255:
            # transparent pixels have no colour of their own: show them on the black background
            black = Image_new(base, img.size)
            black.paste(img.convert(base), mask=img.getchannel("A"))
            notes.append("transparent pixels composited onto black")
            img = black
        else:
            img = img.convert(base)
        mode = img.mode
    if mode == "1":
        img, mode = img.convert("L"), "L"
    if mode not in ("L", "RGB"):
        notes.append(f"{mode} pixels converted to RGB")
        img, mode = img.convert("RGB"), "RGB"
    if channels == 1 and mode == "RGB":
        img = img.convert("L")
        notes.append("colour converted to grey (luminance)")
    elif channels == 3 and mode == "L":
        img = img.convert("RGB")
        notes.append("grey replicated to 3 channels")
    return from_uint8(np.asarray(img))


def Image_new(mode: str, size: tuple[int, int]):  # noqa: ANN201, N802 - PIL's constructor
    from PIL import Image

    return Image.new(mode, size)


def load_image(
    path: str | Path,
    size: int | None = None,
    channels: int | None = None,
    *,
    report: Callable[[str], None] | None = None,
) -> Tensor:
    """Read an image file as a ``1 x C x H x W`` tensor in [-1, 1].

    8-bit, 16-bit (scaled by 1/65535), palette and transparent (composited onto black) images
    are read; an unreadable, truncated or oversized file (``MAX_IMAGE_PIXELS``) is a
    ``ValueError`` naming the file. ``size`` centre-crops to a square and resizes (antialiased);
    ``channels`` converts to 1 (luminance) or 3 (RGB). ``report`` receives one sentence per
    conversion made (channels, depth, crop and resize), so a caller can tell the user.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    check_size(size)
    notes: list[str] = []
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ValueError(
                    f"image file {path} declares {w} x {h} pixels, more than invdiff decodes "
                    f"({MAX_IMAGE_PIXELS:,}); resize it first"
                )
            img.load()
            x = _pixels(img, path, notes, channels)
    except Image.DecompressionBombError as err:
        raise ValueError(f"image file {path} refused: {err}; resize it first") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"image file {path} is not an image PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP)"
        ) from None
    except (OSError, SyntaxError) as err:
        raise ValueError(f"image file {path} is damaged or truncated: {err}") from None
    if size is not None:
        h, w = x.shape[-2:]
        if (h, w) != (size, size):
            crop = "centre-cropped to a square and " if h != w else ""
            notes.append(f"{w} x {h} image {crop}resized to {size} x {size}")
        x = center_crop_resize(x, size)
    if report is not None:
        for note in notes:
            report(f"{path}: {note}")
    return x


def center_crop_resize(x: Tensor, size: int) -> Tensor:
    """Centre-crop ``x`` (N x C x H x W) to a square and resize it to ``size`` pixels."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top : top + s, left : left + s]
    if s != size:
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bicubic", antialias=True, align_corners=False
        )
    return x.clamp(-1, 1)


def save_image(x: Tensor, path: str | Path) -> Path:
    """Write one image (``1 x C x H x W`` or ``C x H x W``, [-1, 1]) to a PNG, atomically."""
    from PIL import Image

    if x.ndim == 3:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError(f"save_image writes one image; got a batch of {x.shape[0]}")
    a = to_uint8(x)[0]
    img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    from invdiff.io import write_with

    return write_with(Path(path), lambda f: img.save(f, format="PNG"))
