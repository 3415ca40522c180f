"""The shipped zoo: every prior loads, has its card, and its denoiser beats the identity."""

from __future__ import annotations

import json

import pytest
import torch

import invdiff
from invdiff.priors import ConditionalPrior, ControlNetPrior, LatentPrior, PixelPrior
from invdiff.priors.latent import LatentDiffusionPrior
from invdiff.priors.sr3 import SR3Prior
from invdiff.priors.zoo import ZOO_DIR

ZOO = {
    "fmnist32-pixel": PixelPrior,
    "fmnist32-pixel-x0-minsnr": PixelPrior,
    "fmnist32-sr3-x2": SR3Prior,
    "fmnist32-sr3-x4": SR3Prior,
    "fmnist32-latent": LatentDiffusionPrior,
    "fmnist32-cfg": PixelPrior,
    "fmnist32-xattn": PixelPrior,
    "fmnist32-controlnet-sr4": ControlNetPrior,
    "fmnist32-controlnet-sr4-bicubic": ControlNetPrior,
    "fmnist32-latent-vq": LatentDiffusionPrior,
    "emoji32-pixel": PixelPrior,
    "emoji32-pixel-x0-minsnr": PixelPrior,
    "emoji32-sr3-x4": SR3Prior,
    "emoji32-latent": LatentDiffusionPrior,
}
#: each prior's image shape and what its card names as the data
SHAPE = {name: ((3, 32, 32) if name.startswith("emoji") else (1, 32, 32)) for name in ZOO}
DATA_NAME = {name: "emoji" if name.startswith("emoji") else "Fashion-MNIST" for name in ZOO}
MAX_BYTES = 20_000_000


def held_out(name: str) -> torch.Tensor:
    """8 test images of the data the prior was trained on."""
    c, size, _ = SHAPE[name]
    dataset = "emoji" if name.startswith("emoji") else "fashion_mnist"
    test = invdiff.data.for_shape(dataset, split="test", size=size, channels=c)
    return test.images(range(0, 8 * 40, 40))


def test_every_prior_is_shipped():
    assert set(ZOO) <= set(invdiff.priors.names())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_prior_loads_with_its_card(name):
    folder = ZOO_DIR / name
    prior = invdiff.priors.load(name)
    assert type(prior) is ZOO[name]
    if isinstance(prior, LatentPrior):
        assert prior.image_shape == SHAPE[name] and prior.in_shape == (4, 8, 8)
    else:
        assert prior.in_shape == SHAPE[name]
    if isinstance(prior, SR3Prior):
        assert prior.factor == int(name[-1])
    if name in ("fmnist32-cfg", "fmnist32-xattn"):  # class-conditional: 10 classes + null
        assert prior.null_label == 10
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < MAX_BYTES
    card = (folder / "README.md").read_text()
    for needle in (
        DATA_NAME[name],
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
def test_zoo_denoiser_beats_the_identity(name):
    """At every noise level of the model cards: the one-step Tweedie estimate on held-out
    images is closer to them than the noisy input (by half at sigma >= 0.5)."""
    prior = invdiff.priors.load(name)
    x = held_out(name)
    g = torch.Generator().manual_seed(0)
    # a conditional prior: A^+ y of its training operator (SR3: bicubic upsampling)
    cond = prior.condition(prior.degradation(x)) if isinstance(prior, ConditionalPrior) else None
    clean = prior.encode(x).detach() if isinstance(prior, LatentPrior) else x
    for sigma in (0.1, 0.2, 0.5, 1.0):
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        with torch.no_grad():
            est = prior.x0(noisy, sigma, cond)
        err_prior = (est - clean).pow(2).mean()
        err_identity = (noisy - clean).pow(2).mean()
        assert err_prior < (0.5 if sigma >= 0.5 else 1.0) * err_identity, sigma


# ------------------------------------------------------------------ kinds, resolved once


def test_every_prior_class_is_registered_under_its_kind():
    from invdiff.priors import (
        ControlNetPrior,
        GaussianMixturePrior,
        folder_kinds,
        kind_of,
        prior_class,
    )
    from invdiff.registry import PRIORS

    classes = {
        "pixel": PixelPrior,
        "sr3": SR3Prior,
        "latent": LatentDiffusionPrior,
        "gaussian_mixture": GaussianMixturePrior,
        "controlnet": ControlNetPrior,
    }
    assert set(PRIORS.names()) == set(classes)
    for kind, cls in classes.items():
        assert prior_class(kind) is cls and kind_of(cls) == kind
    assert set(folder_kinds()) == {"pixel", "sr3", "latent", "controlnet"}
    assert invdiff.problems.PRIOR_KINDS == folder_kinds()
    with pytest.raises(KeyError, match="unknown prior 'gan'"):
        prior_class("gan")
    with pytest.raises(TypeError, match="not a prior type"):
        kind_of(object())


def test_a_solvers_required_type_names_its_kind():
    from invdiff.bench.runner import solver_kind
    from invdiff.priors import Prior, kind_of

    assert kind_of(Prior) == "pixel"
    assert kind_of(ConditionalPrior) == "sr3" and kind_of(LatentPrior) == "latent"
    for name in invdiff.solvers.names():
        solver = invdiff.solvers.get(name)
        assert solver_kind(solver) == kind_of(solver.requires_prior)
    assert solver_kind(invdiff.solvers.get("sr3")) == "sr3"
    assert solver_kind(invdiff.solvers.get("psld")) == "latent"
    assert solver_kind(invdiff.solvers.get("dps")) == "pixel"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_kind_of_a_folder_is_its_prior_json_kind(name):
    from invdiff.priors import kind_of

    kind = json.loads((ZOO_DIR / name / "prior.json").read_text())["kind"]
    assert kind_of(name) == kind_of(ZOO_DIR / name) == kind
    info = invdiff.priors.describe(name)
    assert info.prior_type is invdiff.priors.prior_class(kind)
    if kind == "sr3":
        assert info.degradation == invdiff.priors.load(name).degradation_spec
