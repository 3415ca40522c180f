"""The adversarial part of the LDM autoencoder recipe (Esser, Rombach & Ommer 2021, "Taming
Transformers for High-Resolution Image Synthesis", Sec. 3.2, Eq. 4-7; Rombach et al. 2022,
App. G): a patch-based discriminator, the hinge loss, and the adaptive weight that balances
the adversarial term against the reconstruction term.

* ``PatchDiscriminator``: the PatchGAN of Isola et al. 2017 ("Image-to-Image Translation with
  Conditional Adversarial Networks", Sec. 3.2.2): strided 4 x 4 convolutions, each logit judging
  one overlapping patch of the image (taming's ``NLayerDiscriminator``, batch norm and all).
* Hinge loss (Lim & Ye 2017): ``L_D = E[relu(1 - D(x))] + E[relu(1 + D(x_hat))]`` for the
  discriminator, ``L_G = -E[D(x_hat)]`` for the autoencoder.
* Adaptive weight (Esser et al. 2021, Eq. 7): ``lambda = ||grad_{G_L} L_rec|| /
  (||grad_{G_L} L_G|| + 1e-4)``, clamped to ``[0, 1e4]``, with ``G_L`` the decoder's last layer;
  the adversarial term is switched on after a warm-up (``adversarial_start`` steps), when the
  reconstructions are good enough for the discriminator's judgement to help.

``adversarial_losses`` returns both players' losses as one sum whose gradients go to the right
places: the autoencoder's term is taken through a frozen copy of the discriminator's weights
(``torch.func.functional_call`` with detached parameters), the discriminator's on detached
reconstructions. So the training loop's single optimiser step updates both networks at once,
and EMA, checkpointing and exact resume need nothing new.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``layers`` strided convolutions (4 x 4, stride 2), then two stride-1 ones;
    one logit per patch."""

    def __init__(self, channels: int, width: int = 32, layers: int = 2) -> None:
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        ]
        c = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [
                nn.Conv2d(c, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            c = out
        blocks.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)
        for m in self.modules():  # taming's weights_init: N(0, 0.02), batch norm N(1, 0.02)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def hinge_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``E[relu(1 - D(x))] + E[relu(1 + D(x_hat))]`` (halved, as in taming)."""
    return 0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, last_layer: Tensor) -> Tensor:
    """Esser et al. 2021, Eq. 7: the ratio of the gradient norms of the two terms at the
    decoder's last layer (detached: a weight, not a path for gradients)."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def adversarial_losses(
    critic: PatchDiscriminator,
    x: Tensor,
    rec: Tensor,
    rec_loss: Tensor,
    last_layer: Tensor,
    weight: float,
) -> tuple[Tensor, dict[str, float]]:
    """``lambda * weight * L_G + L_D`` (module docstring) and the terms for the log."""
    frozen = {k: v.detach() for k, v in critic.named_parameters()}
    buffers = dict(critic.named_buffers())
    logits_fake = torch.func.functional_call(critic, {**frozen, **buffers}, (rec,))
    gen = -logits_fake.mean()
    lam = adaptive_weight(rec_loss, gen, last_layer)
    disc = hinge_discriminator_loss(critic(x), critic(rec.detach()))
    return weight * lam * gen + disc, {
        "gan_g": float(gen.detach()),
        "gan_d": float(disc.detach()),
        "gan_lambda": float(lam),
    }
