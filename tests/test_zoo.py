"""The shipped zoo: every prior loads, has its card, and its denoiser beats the identity."""

from __future__ import annotations

import json

import pytest
import torch

import invdiff
from invdiff.priors import ConditionalPrior, LatentPrior, PixelPrior
from invdiff.priors.latent import LatentDiffusionPrior
from invdiff.priors.sr3 import SR3Prior, downsample
from invdiff.priors.zoo import ZOO_DIR

ZOO = {
    "fmnist32-pixel": PixelPrior,
    "fmnist32-sr3-x2": SR3Prior,
    "fmnist32-sr3-x4": SR3Prior,
    "fmnist32-latent": LatentDiffusionPrior,
}
MAX_BYTES = 20_000_000


@pytest.fixture(scope="module")
def test_images() -> torch.Tensor:
    return invdiff.data.get("fashion_mnist", split="test").images(range(0, 800, 100))


def test_every_prior_is_shipped():
    assert set(ZOO) <= set(invdiff.priors.names())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_prior_loads_with_its_card(name):
    folder = ZOO_DIR / name
    prior = invdiff.priors.load(name)
    assert type(prior) is ZOO[name]
    if isinstance(prior, LatentPrior):
        assert prior.image_shape == (1, 32, 32) and prior.in_shape == (4, 8, 8)
    else:
        assert prior.in_shape == (1, 32, 32)
    if isinstance(prior, SR3Prior):
        assert prior.factor == int(name[-1])
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < MAX_BYTES
    card = (folder / "README.md").read_text()
    for needle in (
        "Fashion-MNIST",
        "train split",
        "invdiff train",
        "seed",
        "wall time",
        "parameters",
        "samples.png",
    ):
        assert needle in card, needle
    assert (folder / "samples.png").is_file()
    info = json.loads((folder / "training.json").read_text())
    assert info["step"] > 0 and info["parameters"] > 0


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_denoiser_beats_the_identity(name, test_images):
    prior = invdiff.priors.load(name)
    x = test_images
    g = torch.Generator().manual_seed(0)
    cond = (
        prior.condition(downsample(x, prior.factor))
        if isinstance(prior, ConditionalPrior)
        else None
    )
    clean = prior.encode(x).detach() if isinstance(prior, LatentPrior) else x
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=g)
    with torch.no_grad():
        est = prior.x0(noisy, 0.5, cond)
    err_prior = (est - clean).pow(2).mean()
    err_identity = (noisy - clean).pow(2).mean()
    assert err_prior < 0.5 * err_identity
