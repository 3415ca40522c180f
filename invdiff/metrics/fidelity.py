"""Full-reference fidelity metrics: PSNR and SSIM, one value per sample.

Both take ``x`` (the estimate) and ``ref`` (the clean image), float ``N x C x H x W`` in
[-1, 1], and return a tensor of ``N`` values on the inputs' device. They are computed on
[0, 1] images (``invdiff.images.to_unit``, which clamps, as saving the estimate to an image
file would) with ``data_range = 1``, so the numbers are the ones papers report for 8-bit
images scaled to [0, 1]. RGB images are scored over all channels together; a grayscale image
is a single channel. The computation is torchmetrics' functional implementation, checked in
the tests against scikit-image.

``ref`` must lie in [-1, 1] (a [0, 1] or [0, 255] reference is an error). ``x`` may leave the
range (it is clamped); a non-finite value in a sample makes that sample's value NaN instead of
stopping a benchmark over one diverged sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from invdiff.images import check_image, to_unit

# Wang et al. (2004): 11 x 11 Gaussian window, sigma = 1.5, K1 = 0.01, K2 = 0.03.
SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5


def check_pair(x: object, ref: object, *, min_size: int = 1) -> tuple[Tensor, Tensor]:
    """Validate an (estimate, reference) pair of image batches for a full-reference metric.

    ``ref`` is checked fully (4-D float in [-1, 1]); ``x`` must be a 4-D float tensor of the
    same shape (range and finiteness are not checked: see the module docstring).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape N x C x H x W, got {type(x).__name__}")
    check_image(ref, "ref")
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"x must be a float tensor N x C x H x W in [-1, 1], got shape {tuple(x.shape)} "
            f"and dtype {x.dtype}"
        )
    if x.shape != ref.shape:
        raise ValueError(
            f"x and ref must have the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"images must be at least {min_size} x {min_size} pixels for this metric, "
            f"got {tuple(x.shape[-2:])}"
        )
    return x, ref.to(x.device)


def _unit_with_nan(x: Tensor) -> tuple[Tensor, Tensor]:
    """[-1, 1] -> [0, 1], and a per-sample flag for samples holding NaN/Inf."""
    bad = ~torch.isfinite(x).flatten(1).all(dim=1)
    return to_unit(torch.nan_to_num(x.float())), bad


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio per sample, in dB.

    ``PSNR = 10 log10(1 / MSE)`` with the MSE over the channels and pixels of each sample, on
    [0, 1] images (``data_range = 1``; see the module docstring). Identical images give
    ``inf``. Returns a tensor of ``N`` values.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    x, ref = check_pair(x, ref)
    u, bad = _unit_with_nan(x)
    values = peak_signal_noise_ratio(
        u, to_unit(ref.float()), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return values.masked_fill(bad, float("nan"))


def ssim(x: Tensor, ref: Tensor) -> Tensor:
    """Structural similarity (Wang et al. 2004, IEEE TIP 13(4)) per sample.

    The standard setting: an 11 x 11 Gaussian window with sigma = 1.5, ``K1 = 0.01``,
    ``K2 = 0.03``, population (not sample) statistics, on [0, 1] images (``data_range = 1``),
    averaged over the window positions that lie inside the image (as in Wang et al.'s code)
    and over channels. This equals
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``. Images must be at least 11 pixels a side.
    Returns a tensor of ``N`` values.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, ref = check_pair(x, ref, min_size=SSIM_KERNEL_SIZE)
    u, bad = _unit_with_nan(x)
    _, ssim_map = structural_similarity_index_measure(
        u,
        to_unit(ref.float()),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        reduction="none",
        data_range=1.0,
        k1=0.01,
        k2=0.03,
        return_full_image=True,
    )
    # torchmetrics (1.9) averages its map over a reflect-padded border too; Wang et al.'s
    # reference code and scikit-image keep only the windows that lie inside the image.
    pad = SSIM_KERNEL_SIZE // 2
    values = ssim_map[..., pad:-pad, pad:-pad].flatten(1).mean(dim=1)
    return values.masked_fill(bad, float("nan"))
