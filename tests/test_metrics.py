"""PSNR and SSIM against scikit-image, per sample, with their input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import invdiff
from invdiff.metrics import psnr, ssim


def _pair(n: int, c: int, h: int, noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, c, h, h, generator=g) * 2 - 1
    x = ref + noise * torch.randn(n, c, h, h, generator=g)  # leaves [-1, 1]: metrics clamp
    return x, ref


def _unit(x: torch.Tensor) -> np.ndarray:
    return ((x.double() + 1) / 2).clamp(0, 1).numpy()


@pytest.mark.parametrize("shape", [(4, 1, 32), (3, 3, 24), (2, 3, 11)])
def test_psnr_and_ssim_equal_skimage_per_sample(shape):
    n, c, h = shape
    x, ref = _pair(n, c, h, noise=0.15 + 0.1 * c)
    x[0] = ref[0] + 0.5 * (x[0] - ref[0])  # samples of different quality
    p, s = psnr(x, ref), ssim(x, ref)
    assert p.shape == s.shape == (n,)
    xu, ru = _unit(x), _unit(ref)
    for i in range(n):
        p_ref = peak_signal_noise_ratio(ru[i], xu[i], data_range=1.0)
        s_ref = structural_similarity(
            ru[i],
            xu[i],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        assert float(p[i]) == pytest.approx(p_ref, abs=1e-4)
        assert float(s[i]) == pytest.approx(s_ref, abs=1e-5)
    assert p[0] > p[1:].max() and s[0] > s[1:].max()


def test_values_are_per_sample_and_batch_independent():
    x, ref = _pair(3, 1, 16, noise=0.2)
    for metric in (psnr, ssim):
        whole = metric(x, ref)
        alone = torch.cat([metric(x[i : i + 1], ref[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(whole, alone)


def test_known_values():
    ref = torch.zeros(2, 1, 16, 16)
    x = ref.clone()
    x[1] += 0.2  # 0.1 on [0, 1]: MSE 0.01 -> 20 dB
    p = psnr(x, ref)
    assert math.isinf(float(p[0])) and float(p[1]) == pytest.approx(20.0, abs=1e-4)
    assert float(ssim(ref, ref)[0]) == pytest.approx(1.0, abs=1e-6)
    assert invdiff.metrics.psnr is psnr


def test_estimate_is_clamped_and_nan_sample_is_nan():
    x, ref = _pair(3, 1, 16, noise=0.1)
    far = x.clone()
    far[0] = 5.0  # clamped to 1, as an 8-bit image file would be
    assert float(psnr(far, ref)[0]) == pytest.approx(float(psnr(torch.ones_like(x), ref)[0]))
    x[1, 0, 0, 0] = float("nan")
    for metric in (psnr, ssim):
        v = metric(x, ref)
        assert math.isnan(float(v[1])) and torch.isfinite(v[[0, 2]]).all()


def test_bad_inputs_are_named():
    x, ref = _pair(2, 1, 16, noise=0.1)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, ref[:1])
    with pytest.raises(ValueError, match=r"ref must lie in \[-1, 1\].*from_unit"):
        psnr(x, (ref + 1) / 2 + 0.5)
    with pytest.raises(ValueError, match="4 dimensions"):
        ssim(x[0], ref[0])
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(x[..., :8, :8], ref[..., :8, :8])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        psnr(x.numpy(), ref)


def test_the_registry_holds_each_metric_once_with_its_direction():
    from invdiff.metrics import METRICS, Metric, lpips

    assert METRICS.defaults() == ["psnr", "ssim", "lpips"]
    assert (
        METRICS["psnr"].fn is psnr and METRICS["ssim"].fn is ssim and METRICS["lpips"].fn is lpips
    )
    image = METRICS.names("image")
    assert [m for m in image if METRICS[m].higher_is_better] == ["psnr", "psnr_aligned", "ssim"]
    assert (
        not METRICS["lpips_aligned"].higher_is_better and METRICS["lpips_aligned"].ambiguity_aware
    )
    # a coverage is best at its nominal level: never bolded as the largest
    assert METRICS["coverage90"].target == 0.9 and not METRICS["coverage90"].ranked
    assert METRICS.names("distribution") == ["fid", "kid"]
    assert not METRICS["wall_s"].ranked and METRICS["lpips"].better(0.1, 0.2)
    with pytest.raises(ValueError, match="already registered"):
        METRICS.register(Metric("psnr", ssim, True, "other"))
    with pytest.raises(ValueError, match="needs a function"):
        METRICS.register(Metric("nothing", None, True, "nothing"))
    assert "nothing" not in METRICS


def test_psnr_aligned_is_the_best_psnr_over_shifts_and_the_flip():
    """Against a brute-force search over every circular shift and the 180-degree rotation; a
    shifted or rotated copy scores (near) perfectly; with no ambiguities it is the PSNR."""
    from invdiff.metrics import psnr, psnr_aligned

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 7, generator=g) * 2 - 1
    xhat = x.roll((2, -3), dims=(-2, -1)).flip(-2, -1) + 0.3 * torch.randn(x.shape, generator=g)
    xhat = xhat.clamp(-1, 1)
    brute = (
        torch.stack(
            [
                psnr(c.roll((i, j), dims=(-2, -1)), x)
                for c in (xhat, xhat.flip(-2, -1))
                for i in range(9)
                for j in range(7)
            ]
        )
        .max(0)
        .values
    )
    torch.testing.assert_close(psnr_aligned(xhat, x), brute, atol=1e-4, rtol=0)
    shift_only = (
        torch.stack([psnr(xhat.roll((i, j), dims=(-2, -1)), x) for i in range(9) for j in range(7)])
        .max(0)
        .values
    )
    torch.testing.assert_close(psnr_aligned(xhat, x, {"shift"}), shift_only, atol=1e-4, rtol=0)
    assert torch.equal(psnr_aligned(xhat, x, ()), psnr(xhat, x))
    assert (psnr_aligned(x.roll(1, dims=-1).flip(-2, -1), x) > 100).all()
    with pytest.raises(ValueError, match="unknown ambiguities"):
        psnr_aligned(xhat, x, {"scale"})


def test_phase_retrieval_declares_the_ambiguities_its_measurement_has():
    """The operator's declared ambiguities leave its measurement unchanged."""
    import invdiff

    op = invdiff.operators.get("phase_retrieval", in_shape=(1, 12, 12))
    assert op.ambiguities == {"shift", "rot180"}
    x = -torch.ones(2, 1, 12, 12)
    x[:, :, 3:8, 4:7] = torch.rand(2, 1, 5, 3, generator=torch.Generator().manual_seed(1))
    for moved in (x.roll((2, 3), dims=(-2, -1)), x.flip(-2, -1)):
        torch.testing.assert_close(op(moved), op(x), atol=1e-5, rtol=0)
    assert invdiff.operators.get("inpainting_box", in_shape=(1, 12, 12), box=4).ambiguities == set()


def test_align_undoes_the_shift_and_flip_and_lpips_aligned_scores_the_aligned_image():
    """``align`` returns the member of the ambiguity group nearest the reference (checked
    against a brute-force search), so a shifted and rotated copy comes back exactly and its
    aligned LPIPS is that of the original; with no ambiguities both are the plain values."""
    from invdiff import data
    from invdiff.metrics import align, lpips, lpips_aligned

    g = torch.Generator().manual_seed(1)
    x = data.get("fashion_mnist", split="test").images([0, 1, 2])
    moved = torch.stack([x[0].roll((3, -5), dims=(-2, -1)), x[1].flip(-2, -1).roll(7, -1), x[2]])
    assert torch.equal(align(moved, x), x)
    assert torch.equal(align(moved, x, ()), moved)
    assert torch.equal(align(moved[:1], x[:1], {"shift"}), x[:1])  # a shift alone is undone
    torch.testing.assert_close(lpips_aligned(moved, x), lpips(x, x), atol=1e-6, rtol=0)
    assert (lpips(moved[:2], x[:2]) > 0.02).all()  # LPIPS alone sees the moved copies
    torch.testing.assert_close(lpips_aligned(moved, x, ()), lpips(moved, x))
    noisy = (moved + 0.3 * torch.randn(moved.shape, generator=g)).clamp(-1, 1)
    best = []
    for i in range(3):
        options = [
            c.roll((a, b), dims=(-2, -1))
            for c in (noisy[i], noisy[i].flip(-2, -1))
            for a in range(32)
            for b in range(32)
        ]
        errs = torch.stack([(o - x[i]).square().sum() for o in options])
        best.append(options[int(errs.argmin())])
    assert torch.equal(align(noisy, x), torch.stack(best))
    with_nan = noisy.clone()
    with_nan[0, 0, 0, 0] = float("nan")
    assert torch.equal(align(with_nan, x)[1:], align(noisy, x)[1:])
    assert align(with_nan, x)[0].isnan().any()
    with pytest.raises(ValueError, match="unknown ambiguities"):
        align(noisy, x, {"scale"})
