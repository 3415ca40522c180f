"""SR3 and latent diffusion priors: shapes, conditioning, save/load round trips, folder checks."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_unet
from diffusers import AutoencoderKL, DDPMScheduler

import invdiff
from invdiff.priors import ConditionalPrior, LatentPrior, PixelPrior
from invdiff.priors.checks import PriorFolderError
from invdiff.priors.latent import LatentDiffusionPrior
from invdiff.priors.sr3 import SR3Prior, downsample, sr3_condition, upsample


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)  # diffusers initialises from the global generator; tests only
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=8,
    )


@pytest.fixture
def sr3_prior() -> SR3Prior:
    return SR3Prior(tiny_unet(size=8, channels=1, in_channels=2), DDPMScheduler(), factor=2)


@pytest.fixture
def latent_prior() -> LatentDiffusionPrior:
    return LatentDiffusionPrior(
        tiny_unet(size=4, channels=4), DDPMScheduler(), tiny_vae(), scaling_factor=0.7
    )


def batch(generator, shape=(3, 1, 8, 8)) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * 2 - 1


def test_sr3_condition_is_bicubic_upsampling(sr3_prior, generator):
    x = batch(generator)
    y = downsample(x, 2)
    assert y.shape == (3, 1, 4, 4)
    cond = sr3_prior.condition(y)
    assert cond.shape == x.shape and cond.abs().max() <= 1
    torch.testing.assert_close(cond, upsample(y, (8, 8)))
    torch.testing.assert_close(sr3_condition(x, 2), cond)
    assert isinstance(sr3_prior, ConditionalPrior) and sr3_prior.low_res_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="low-resolution"):
        sr3_prior.condition(x)


def test_sr3_denoiser_needs_and_uses_the_condition(sr3_prior, generator):
    x, c1, c2 = batch(generator), batch(generator), batch(generator)
    with pytest.raises(ValueError, match="cond"):
        sr3_prior.x0(x, 0.5)
    with pytest.raises(ValueError, match="shape"):
        sr3_prior.x0(x, 0.5, c1[:, :, :4, :4])
    a, b = sr3_prior.x0(x, 0.5, c1), sr3_prior.x0(x, 0.5, c2)
    assert a.shape == x.shape and not torch.allclose(a, b)
    assert sr3_prior.x0(x, 0.5, c1[:1]).shape == a.shape  # one condition broadcasts over the batch
    with pytest.raises(ValueError, match="factor"):
        SR3Prior(tiny_unet(size=8, channels=1, in_channels=2), DDPMScheduler(), factor=3)
    with pytest.raises(ValueError, match="in_channels"):
        SR3Prior(tiny_unet(size=8, channels=1), DDPMScheduler(), factor=2)


def test_latent_prior_encodes_decodes_and_passes_gradients(latent_prior, generator):
    x = batch(generator)
    z = latent_prior.encode(x)
    assert isinstance(latent_prior, LatentPrior)
    assert (
        z.shape == (3, 4, 4, 4)
        and latent_prior.in_shape == (4, 4, 4)
        and latent_prior.image_shape == (1, 8, 8)
    )
    mean = latent_prior.vae.encode(x).latent_dist.mean
    torch.testing.assert_close(z, 0.7 * mean)
    zg = z.clone().requires_grad_(True)
    latent_prior.decode(zg).sum().backward()
    assert zg.grad is not None and zg.grad.abs().sum() > 0
    torch.testing.assert_close(latent_prior.decode(z), latent_prior.vae.decode(z / 0.7).sample)
    assert latent_prior.x0(z, 0.3).shape == z.shape
    with pytest.raises(ValueError, match="latent"):
        LatentDiffusionPrior(tiny_unet(size=8, channels=4), DDPMScheduler(), tiny_vae())


@pytest.mark.parametrize("kind", ["pixel", "sr3", "latent"])
def test_save_load_round_trip_is_exact(
    kind, tmp_path, generator, sr3_prior, latent_prior, tiny_pixel_prior
):
    prior = {"pixel": tiny_pixel_prior, "sr3": sr3_prior, "latent": latent_prior}[kind]
    prior.save(tmp_path / kind)
    loaded = invdiff.priors.load(tmp_path / kind)
    assert type(loaded) is type(prior)
    assert json.loads((tmp_path / kind / "prior.json").read_text())["kind"] == kind
    x = torch.randn((2, *prior.in_shape), generator=generator)
    cond = batch(generator, (2, 1, 8, 8)) if kind == "sr3" else None
    for sigma in (0.05, 0.7, 20.0):
        assert torch.equal(loaded.x0(x, sigma, cond), prior.x0(x, sigma, cond))
    if kind == "sr3":
        assert loaded.factor == 2
    if kind == "latent":
        assert loaded.scaling_factor == pytest.approx(0.7)
        img = batch(generator)
        assert torch.equal(loaded.encode(img), prior.encode(img))


def test_half_precision_save_loads_as_float32(tmp_path, sr3_prior):
    sr3_prior.save(tmp_path / "half", dtype=torch.float16)
    loaded = invdiff.priors.load(tmp_path / "half")
    assert next(loaded.unet.parameters()).dtype == torch.float32
    assert next(sr3_prior.unet.parameters()).dtype == torch.float32  # the original is untouched


def test_bad_folders_give_clear_errors(tmp_path, sr3_prior, latent_prior, tiny_pixel_prior):
    with pytest.raises(FileNotFoundError, match="no shipped prior named"):
        invdiff.priors.load(tmp_path / "nowhere")
    # missing weights
    tiny_pixel_prior.save(tmp_path / "p")
    (tmp_path / "p" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing unet/diffusion_pytorch_model.safetensors"):
        invdiff.priors.load(tmp_path / "p")
    # weights that do not match the config
    tiny_pixel_prior.save(tmp_path / "q")
    cfg_path = tmp_path / "q" / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [8, 32]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(PriorFolderError, match="wrong shape"):
        invdiff.priors.load(tmp_path / "q")
    # an unknown kind, and an SR3 folder without its factor
    sr3_prior.save(tmp_path / "s")
    meta_path = tmp_path / "s" / "prior.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "kind": "gan"}))
    with pytest.raises(PriorFolderError, match="unknown kind 'gan'"):
        invdiff.priors.load(tmp_path / "s")
    del meta["factor"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PriorFolderError, match="factor"):
        invdiff.priors.load(tmp_path / "s")
    # a latent folder without its autoencoder
    latent_prior.save(tmp_path / "l")
    (tmp_path / "l" / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="vae/config.json"):
        invdiff.priors.load(tmp_path / "l")
    # a pixel prior folder whose UNet is an SR3 UNet
    sr3_prior.save(tmp_path / "m")
    (tmp_path / "m" / "prior.json").write_text(json.dumps({"kind": "pixel"}))
    with pytest.raises(PriorFolderError, match="in_channels"):
        invdiff.priors.load(tmp_path / "m")
    # and a good folder still loads
    tiny_pixel_prior.save(tmp_path / "fresh")
    assert isinstance(invdiff.priors.load(tmp_path / "fresh"), PixelPrior)


# ------------------------------------------------- the SR3 degradation as an operator


def test_sr3_degradation_is_the_training_downsampling(sr3_prior, generator):
    """``SR3Prior.degradation`` applied to an image is exactly what training fed the network."""
    from invdiff.operators.resize import BicubicResize

    x = batch(generator)
    deg = sr3_prior.degradation
    assert isinstance(deg, BicubicResize) and deg.factor == 2 and deg.in_shape == (1, 8, 8)
    assert torch.equal(deg(x), downsample(x, sr3_prior.factor))
    assert torch.equal(sr3_prior.condition(deg(x)), sr3_condition(x, sr3_prior.factor))
    # the degradation is no part of the prior's weights
    assert all(k.startswith("unet.") for k in sr3_prior.state_dict())


def test_sr3_accepts_only_its_degradation(sr3_prior):
    get = invdiff.operators.get
    assert sr3_prior.accepts(get("bicubic_resize", in_shape=(1, 8, 8), factor=2))
    assert not sr3_prior.accepts(get("super_resolution", in_shape=(1, 8, 8), factor=2))
    assert not sr3_prior.accepts(get("bicubic_downsampling", in_shape=(1, 8, 8), factor=2))
    assert not sr3_prior.accepts(get("bicubic_resize", in_shape=(1, 8, 8), factor=4))
    assert not sr3_prior.accepts(get("bicubic_resize", in_shape=(1, 16, 16), factor=2))


def test_sr3_degradation_round_trips_through_prior_json(tmp_path, sr3_prior):
    sr3_prior.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "prior.json").read_text())
    assert meta["degradation"] == {"name": "bicubic_resize", "factor": 2}
    # a folder written before the field existed: the degradation is derived from the factor
    del meta["degradation"]
    (tmp_path / "s" / "prior.json").write_text(json.dumps(meta))
    loaded = invdiff.priors.load(tmp_path / "s")
    assert loaded.degradation_spec == sr3_prior.degradation_spec
    assert loaded.accepts(sr3_prior.degradation)


def test_sr3_degradation_must_be_a_registered_operator_of_its_factor():
    unet = tiny_unet(size=8, channels=1, in_channels=2)
    with pytest.raises(KeyError, match="unknown operator 'bilinear'"):
        SR3Prior(unet, DDPMScheduler(), factor=2, degradation={"name": "bilinear"})
    with pytest.raises(ValueError, match="factor 2"):
        SR3Prior(
            unet, DDPMScheduler(), factor=2, degradation={"name": "bicubic_resize", "factor": 4}
        )
    prior = SR3Prior(
        unet, DDPMScheduler(), factor=2, degradation={"name": "super_resolution", "factor": 2}
    )
    assert prior.accepts(invdiff.operators.get("super_resolution", in_shape=(1, 8, 8), factor=2))
