"""Shared fixtures: tiny priors that run in milliseconds on a CPU."""

from __future__ import annotations

import pytest
import torch

from invdiff.priors.gmm import GaussianMixturePrior
from invdiff.priors.pixel import PixelPrior

torch.set_num_threads(2)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def gmm_prior() -> GaussianMixturePrior:
    """A 16-dimensional, 4-component Gaussian mixture on 1 x 4 x 4 images."""
    return GaussianMixturePrior.random(
        16, 4, in_shape=(1, 4, 4), generator=torch.Generator().manual_seed(0)
    )


def tiny_unet(size: int = 8, channels: int = 1, in_channels: int | None = None, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)  # diffusers initialises from the global generator; tests only
    return UNet2DModel(
        sample_size=size,
        in_channels=in_channels or channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )


@pytest.fixture
def tiny_pixel_prior() -> PixelPrior:
    """An untrained 8x8 UNet prior: for plumbing tests, not for quality."""
    from diffusers import DDPMScheduler

    return PixelPrior(tiny_unet(), DDPMScheduler(num_train_timesteps=1000))
