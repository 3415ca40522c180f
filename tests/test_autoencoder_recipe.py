"""The LDM autoencoder recipe: VQ or KL, LPIPS term, hinge patch-GAN with the adaptive weight of
Esser et al. 2021 (Eq. 7), each player's gradient going to its own network; a latent prior on a
VQ autoencoder."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import invdiff
from invdiff.training.adversarial import (
    PatchDiscriminator,
    adaptive_weight,
    adversarial_losses,
    hinge_discriminator_loss,
)


def test_adaptive_weight_is_the_ratio_of_the_gradient_norms():
    w = torch.tensor([1.0, 2.0, 2.0], requires_grad=True)
    rec = 3.0 * w.sum()  # gradient (3, 3, 3): norm 3 sqrt(3)
    gan = (w**2).sum()  # gradient 2 w = (2, 4, 4): norm 6
    lam = adaptive_weight(rec, gan, w)
    torch.testing.assert_close(lam, torch.tensor(3 * 3**0.5 / (6 + 1e-4)))
    assert not lam.requires_grad
    huge = adaptive_weight(1e9 * w.sum(), 1e-9 * w.sum(), w)
    assert float(huge) == 1e4  # clamped


def test_each_player_gets_its_own_gradient():
    torch.manual_seed(0)  # module initialisation; tests only
    critic = PatchDiscriminator(1, width=8, layers=1)
    decoder = nn.Conv2d(1, 1, 3, padding=1)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    code = torch.randn(4, 1, 16, 16)
    rec = decoder(code)
    rec_loss = (rec - x).abs().mean()
    total, terms = adversarial_losses(critic, x, rec, rec_loss, decoder.weight, weight=0.5)
    total.backward()
    got_critic = [p.grad.clone() for p in critic.parameters()]
    got_decoder = decoder.weight.grad.clone()

    # the discriminator's gradient is that of its hinge loss on detached reconstructions
    critic.zero_grad()
    rec2 = decoder(code)
    hinge_discriminator_loss(critic(x), critic(rec2.detach())).backward()
    for a, b in zip(got_critic, [p.grad for p in critic.parameters()]):
        torch.testing.assert_close(a, b)
    # the decoder's is lambda * weight * grad(-mean D(rec)), the discriminator held fixed
    decoder.zero_grad()
    gen = -critic(decoder(code)).mean()
    (0.5 * terms["gan_lambda"] * gen).backward()
    torch.testing.assert_close(got_decoder, decoder.weight.grad, rtol=1e-4, atol=1e-6)


def _tiny_autoencoder_config(tmp_path, name: str, **kw):
    from test_training import tiny_config

    values = dict(
        image_size=32,
        channels=(8, 16),
        attention=(False, False),
        latent_channels=2,
        batch_size=4,
        steps=3,
        checkpoint_every=3,
    )
    values.update(kw)
    return tiny_config(tmp_path, "autoencoder", name=name, **values)


def test_vq_autoencoder_with_lpips_and_gan_trains_and_carries_a_latent_prior(tmp_path):
    from diffusers import VQModel
    from test_training import tiny_config, tiny_data

    from invdiff.training.loop import train
    from invdiff.training.tasks import load_autoencoder

    data = tiny_data(n=16, size=32)
    cfg = _tiny_autoencoder_config(
        tmp_path,
        "vq",
        quantizer="vq",
        codebook_size=16,
        perceptual_weight=1.0,
        adversarial_weight=0.5,
        adversarial_start=1,
    )
    ae_run = train(cfg, progress=False, data=data)
    vae, scale = load_autoencoder(ae_run, torch.device("cpu"))
    assert isinstance(vae, VQModel) and scale > 0
    assert not (ae_run / "autoencoder" / "vae" / "critic").exists()
    names = (ae_run / "autoencoder" / "vae" / "config.json").read_text()
    assert "VQModel" in names and "critic" not in names
    lat = train(
        tiny_config(
            tmp_path,
            "latent",
            name="lat",
            image_size=32,
            autoencoder=str(ae_run),
            channels=(8, 16),
            attention=(False, False),
            batch_size=4,
            steps=2,
        ),
        progress=False,
        data=data,
    )
    prior = invdiff.priors.load(lat / "prior")
    assert prior.in_shape == (2, 16, 16)
    z = prior.encode(data[0][:2]).requires_grad_(True)
    prior.decode(z).sum().backward()  # the quantiser passes gradients straight through
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_autoencoder_settings_are_checked(tmp_path):
    from invdiff.training.config import TrainConfig

    with pytest.raises(ValueError, match="quantizer"):
        TrainConfig.preset("autoencoder", quantizer="gumbel")
    with pytest.raises(ValueError, match="autoencoder settings"):
        TrainConfig.preset("pixel", perceptual_weight=1.0)
    with pytest.raises(ValueError, match="adversarial_weight must be >= 0"):
        TrainConfig.preset("autoencoder", adversarial_weight=-1.0)
