"""What each kind of training run builds, optimises, draws and exports.

* ``pixel``: the DDPM objective (Ho et al. 2020, Eq. 14) on images,
  ``E_{t, x0, eps} || f_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) - target ||^2`` with
  ``target = eps`` or ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022, Sec. 4);
  optionally class-conditional with the label dropout of classifier-free guidance training (Ho &
  Salimans 2022, Alg. 1: a dropped label becomes the extra "null" class ``num_classes``),
  the label entering through a class embedding (``class_conditional``) or as learned tokens
  the UNet cross-attends to (``cross_attention``, ``invdiff.priors.tokens``); the exported
  prior samples with guidance through ``PixelPrior.conditioned``.
* ``sr3``: the same objective with ``concat(x_t, up(down(x0)))`` as network input (Saharia et
  al. 2021, Eq. 6).
* ``autoencoder``: an ``AutoencoderKL`` or ``VQModel`` with ``f = 4`` trained on
  ``|x - D(z)|_1 (or _2^2)`` + the KL or codebook term, optionally + LPIPS + a patch-GAN with
  adaptive weight (Rombach et al. 2022, App. G; Esser et al. 2021); its export records
  ``scaling_factor = 1 / std`` of the latents a latent prior diffuses.
* ``latent``: the DDPM objective on the scaled posterior means of a trained autoencoder.
* ``controlnet``: the DDPM objective of a frozen pixel prior with a trainable ControlNet
  adapter (Zhang et al. 2023) conditioned on ``A^+ (A x0 + n)``, the measurement of a problem
  preset mapped to image space (``invdiff.priors.controlnet``); only the adapter learns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invdiff.priors.base import Prior
from invdiff.priors.pixel import training_target, vp_noisy
from invdiff.training.config import TrainConfig, min_snr_gamma
from invdiff.training.data import draw_batch


def build_unet(
    cfg: TrainConfig, sample_size: int, in_channels: int, out_channels: int
) -> nn.Module:
    """A ``UNet2DModel``, or for ``cross_attention`` a ``UNet2DConditionModel`` whose attention
    levels (and middle block) attend to learned class tokens (``CrossAttentionUNet``)."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    if cfg.cross_attention:
        from invdiff.priors.tokens import ClassTokens, CrossAttentionUNet

        unet = UNet2DConditionModel(
            sample_size=sample_size,
            in_channels=in_channels,
            out_channels=out_channels,
            block_out_channels=tuple(cfg.channels),
            down_block_types=tuple(
                "CrossAttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention
            ),
            up_block_types=tuple(
                "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention)
            ),
            mid_block_type="UNetMidBlock2DCrossAttn",
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_groups,
            cross_attention_dim=cfg.token_dim,
            attention_head_dim=min(32, cfg.channels[-1]),
        )
        return CrossAttentionUNet(
            unet, ClassTokens(cfg.num_classes + 1, cfg.class_tokens, cfg.token_dim)
        )
    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in cfg.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(cfg.attention))
    num_class_embeds = (
        cfg.num_classes + 1 if (cfg.kind == "pixel" and cfg.class_conditional) else None
    )
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=tuple(cfg.channels),
        down_block_types=down,
        up_block_types=up,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_groups,
        attention_head_dim=min(32, cfg.channels[-1]),
        num_class_embeds=num_class_embeds,
    )


def build_scheduler(cfg: TrainConfig):  # noqa: ANN201 - a diffusers DDPMScheduler
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def make_grid(x: Tensor, nrow: int) -> Tensor:
    """Tile ``N x C x H x W`` images into one ``1 x C x H' x W'`` image (white 2 px gaps)."""
    from torchvision.utils import make_grid as tv_make_grid

    return tv_make_grid(x.detach().float().cpu().clamp(-1, 1), nrow=nrow, padding=2, pad_value=1.0)[
        None
    ]


def snr_loss_weight(prediction_type: str, abar: Tensor, gamma: float) -> Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    Weighting Strategy", Eq. 7 and Sec. 3.4) for the loss of ``prediction_type``.

    With ``SNR = abar / (1 - abar)`` (Kingma et al. 2021's view of the noise level), the
    weight on the error in ``x0`` is ``min(SNR, gamma)``: low-noise steps, whose ``x0`` error is
    tiny but weighted by a huge SNR, stop dominating the gradient. The errors of the three
    targets are ``|x0 err|^2 = |eps err|^2 / SNR = |v err|^2 / (SNR + 1)``, so the loss on

        eps:     min(SNR, gamma) / SNR
        v:       min(SNR, gamma) / (SNR + 1)
        sample:  min(SNR, gamma)
    """
    snr = abar / (1 - abar)
    clipped = snr.clamp(max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "v_prediction":
        return clipped / (snr + 1)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def labelled(grid: Tensor, title: str, rows: list[str] | None = None) -> Tensor:
    """``grid`` (``1 x C x H x W``, rows of equal height) with a title band on top and, when
    ``rows`` is given, one label per row on the left; white text on black, in [-1, 1]."""
    from PIL import Image, ImageDraw, ImageFont

    from invdiff.images import from_uint8, to_uint8

    a = to_uint8(grid.clamp(-1, 1))[0]
    image = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(image)
    text_h = max(draw.textbbox((0, 0), "Ag", font=font)[3], 8) + 4
    left = 0
    if rows:
        left = max(draw.textlength(r, font=font) for r in rows) + 6
    width = max(int(left) + image.width, int(draw.textlength(title, font=font)) + 4)
    out = Image.new(image.mode, (width, text_h + image.height), 0)
    out.paste(image, (int(left), text_h))
    draw = ImageDraw.Draw(out)
    white = 255 if out.mode == "L" else (255, 255, 255)
    draw.text((2, 1), title, fill=white, font=font)
    if rows:
        row_h = image.height / len(rows)
        for i, label in enumerate(rows):
            draw.text(
                (2, text_h + i * row_h + row_h / 2 - text_h / 2 + 2), label, fill=white, font=font
            )
    return from_uint8(np.asarray(out))


@torch.no_grad()
def ddim_sample(
    prior: Prior,
    n: int,
    steps: int,
    generator: torch.Generator,
    cond: Tensor | None = None,
    clip: bool = False,
) -> Tensor:
    """Deterministic DDIM (Song et al. 2021, Eq. 12 with eta = 0) on the prior's own sigma grid
    (``invdiff.diffusion.ddim_step``), for the run's preview grids.

    ``clip`` clamps each ``x0`` estimate to [-1, 1] (the "clipped" sampler of Ho et al. 2020's
    code, for pixel priors): an epsilon-prediction network's ``x0 = x - sigma eps`` magnifies
    its error by ``sigma``.
    """
    from invdiff.diffusion import ddim_step, vp_sigmas_for_steps

    sig = vp_sigmas_for_steps(prior, steps).tolist()
    z = torch.randn((n, *prior.in_shape), generator=generator).to(prior.device)
    x = z * math.sqrt(1 + sig[0] ** 2)
    x0 = x
    for i, s in enumerate(sig):
        x0 = prior.x0(x, s, cond)
        if clip:
            x0 = x0.clamp(-1, 1)
        if i + 1 < len(sig):
            x = ddim_step(x, x0, s, sig[i + 1], 0.0, 0.0)
    return x0


class DiffusionTask:
    """A DDPM UNet on images (``pixel``); subclasses add a condition or work on latents."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.scheduler = build_scheduler(cfg)
        self.abar = self.scheduler.alphas_cumprod.float().to(device)
        self.data: Tensor | None = None
        self.labels: Tensor | None = None

    # shapes of the modelled tensors
    def model_shape(self) -> tuple[int, int, int]:
        return (self.cfg.image_channels, self.cfg.image_size, self.cfg.image_size)

    def cond_channels(self) -> int:
        return 0

    def build_model(self) -> nn.Module:
        c, h, _ = self.model_shape()
        return build_unet(self.cfg, h, c + self.cond_channels(), c)

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        self.data, self.labels = images, labels
        if self.model_shape()[0] != images.shape[1]:
            raise ValueError(
                f"the data has {images.shape[1]} channel(s), "
                f"the model expects {self.model_shape()[0]}"
            )

    def condition(self, x0: Tensor) -> Tensor | None:
        return None

    def loss(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        cfg = self.cfg
        idx = draw_batch(len(self.data), cfg.batch_size, generator)
        x0 = self.data[idx].to(self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), generator=generator).to(
            self.device
        )
        kwargs = {}
        if cfg.class_conditional or cfg.cross_attention:
            labels = self.labels[idx].clone()
            drop = torch.rand(cfg.batch_size, generator=generator) < cfg.label_dropout
            labels[drop] = cfg.num_classes  # the null class of classifier-free guidance
            kwargs["class_labels"] = labels.to(self.device)
        a = self.abar[t].view(-1, 1, 1, 1)
        xt = vp_noisy(x0, noise, a)
        target = training_target(cfg.prediction_type, x0, noise, a)
        cond = self.condition(x0)
        inp = xt if cond is None else torch.cat([xt, cond], dim=1)
        pred = model(inp, t, **kwargs).sample
        gamma = min_snr_gamma(cfg)
        if gamma is None:
            return F.mse_loss(pred.float(), target)
        weight = snr_loss_weight(cfg.prediction_type, a.flatten(), gamma)
        per_sample = (pred.float() - target).pow(2).flatten(1).mean(1)
        return (weight * per_sample).mean()

    def prior(self, model: nn.Module) -> Prior:
        from invdiff.priors.pixel import PixelPrior
        from invdiff.priors.tokens import CrossAttentionUNet

        if isinstance(model, CrossAttentionUNet):
            return PixelPrior(model.unet, self.scheduler, class_tokens=model.tokens)
        return PixelPrior(model, self.scheduler)

    #: what the rows of ``grid`` show, top to bottom (None: every row is samples)
    grid_rows: list[str] | None = None

    #: the guidance weight of the preview grids of a class-conditional run
    grid_guidance = 3.0

    def conditional(self) -> bool:
        return self.cfg.kind == "pixel" and (self.cfg.class_conditional or self.cfg.cross_attention)

    def grid_title(self) -> str:
        classes = (
            f", class = column, guidance w={self.grid_guidance:g}" if self.conditional() else ""
        )
        return (
            f"{self.cfg.kind}: EMA samples, DDIM {self.cfg.sample_steps} steps"
            + (", x0 clipped" if self.cfg.kind == "pixel" else "")
            + classes
        )

    def grid(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        prior, n = self.prior(model), self.cfg.num_samples
        nrow = int(n**0.5 + 0.5)
        if self.conditional():
            # one class per column: the grid shows whether the label is followed
            nrow = min(self.cfg.num_classes, n)
            labels = torch.arange(n, device=self.device) % nrow
            prior = prior.conditioned(labels, guidance=self.grid_guidance)
        x = ddim_sample(prior, n, self.cfg.sample_steps, generator, clip=True)
        return make_grid(x, nrow=nrow)

    def export(self, model: nn.Module, folder: Path) -> None:
        self.prior(model).save(folder)


class SR3Task(DiffusionTask):
    """SR3: the bicubic-upsampled low-resolution image is concatenated to the noisy input."""

    grid_rows = ["bicubic", "SR3", "truth"]

    def grid_title(self) -> str:
        return f"sr3 x{self.cfg.factor}: DDIM {self.cfg.sample_steps} steps, training images"

    def cond_channels(self) -> int:
        return self.model_shape()[0]

    def condition(self, x0: Tensor) -> Tensor:
        from invdiff.priors.sr3 import sr3_condition

        return sr3_condition(x0, self.cfg.factor)

    def prior(self, model: nn.Module) -> Prior:
        from invdiff.priors.sr3 import SR3Prior

        return SR3Prior(model, self.scheduler, factor=self.cfg.factor)

    def grid(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        n = min(8, len(self.data))  # a small folder may hold fewer images
        truth = self.data[:n].to(self.device)
        cond = self.condition(truth)
        x = ddim_sample(
            self.prior(model), n, self.cfg.sample_steps, generator, cond=cond, clip=True
        )
        return make_grid(torch.cat([cond, x, truth]), nrow=n)  # rows: bicubic, SR3, truth


def load_autoencoder(folder: str | Path, device: torch.device):  # noqa: ANN201
    """``(vae, scaling_factor)`` from an autoencoder run (``RUN/`` or ``RUN/autoencoder/``)."""
    from invdiff.priors.checks import load_vae, read_json, require_folder

    folder = Path(folder)
    if (folder / "autoencoder").is_dir():
        folder = folder / "autoencoder"
    require_folder(folder, ["vae/config.json", "autoencoder.json"])
    meta = read_json(folder / "autoencoder.json")
    vae = load_vae(folder / "vae", device=device).eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae, float(meta["scaling_factor"])


class LatentTask(DiffusionTask):
    """A DDPM on ``s * mu(x)``, the scaled posterior means of a trained autoencoder."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        super().__init__(cfg, device)
        self.vae, self.scaling_factor = load_autoencoder(cfg.autoencoder, device)
        vc = self.vae.config
        down = 2 ** (len(vc.block_out_channels) - 1)
        self.latent_shape = (
            int(vc.latent_channels),
            cfg.image_size // down,
            cfg.image_size // down,
        )

    def model_shape(self) -> tuple[int, int, int]:
        return self.latent_shape

    @torch.no_grad()
    def prepare(self, images: Tensor, labels: Tensor) -> None:
        from tqdm import tqdm

        if images.shape[1] != int(self.vae.config.in_channels):
            raise ValueError(
                f"the data has {images.shape[1]} channel(s), the autoencoder "
                f"{self.cfg.autoencoder} encodes {self.vae.config.in_channels}; pass the "
                "--image-channels it was trained with"
            )
        from invdiff.priors.latent import encoder_output

        keep = encoder_output(self.vae)
        chunks = []
        if self.cfg.encode_limit:
            # encoding is the slow part on a CPU; a subset is plenty for a short run
            images, labels = images[: self.cfg.encode_limit], labels[: self.cfg.encode_limit]
        for i in tqdm(range(0, len(images), 500), desc="encoding latents", leave=False):
            mean = keep(self.vae.encode(images[i : i + 500].to(self.device)))
            chunks.append((mean * self.scaling_factor).cpu())
        self.data, self.labels = torch.cat(chunks), labels
        self.images = images

    def prior(self, model: nn.Module) -> Prior:
        from invdiff.priors.latent import LatentDiffusionPrior

        return LatentDiffusionPrior(
            model, self.scheduler, self.vae, scaling_factor=self.scaling_factor
        )

    @torch.no_grad()
    def grid(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        prior = self.prior(model)
        z = ddim_sample(prior, self.cfg.num_samples, self.cfg.sample_steps, generator)
        return make_grid(prior.decode(z), nrow=int(self.cfg.num_samples**0.5 + 0.5))


class AutoencoderWithCritic(nn.Module):
    """An autoencoder and the patch discriminator that judges its reconstructions: one module,
    so one optimiser, EMA and checkpoint hold both (``invdiff.training.adversarial``)."""

    def __init__(self, autoencoder: nn.Module, critic: nn.Module) -> None:
        super().__init__()
        self.autoencoder, self.critic = autoencoder, critic


def autoencoder_of(model: nn.Module) -> nn.Module:
    return model.autoencoder if isinstance(model, AutoencoderWithCritic) else model


class AutoencoderTask:
    """The LDM first stage (Rombach et al. 2022, App. G; Esser et al. 2021): an
    ``AutoencoderKL`` (``quantizer = kl``) or ``VQModel`` (``vq``) with ``f = 2^(levels - 1)``,
    trained on

        |x - D(E(x))|_1 (or _2^2)  + w_KL KL(q(z|x) || N(0, I))   (kl)
                                   + ||sg[E(x)] - z_q||^2 + beta ||E(x) - sg[z_q]||^2   (vq)
                                   + w_P LPIPS(x, D(E(x)))        (perceptual_weight > 0)
                                   + w_G lambda L_G + L_D         (adversarial_weight > 0)

    with the hinge patch-GAN and adaptive weight ``lambda`` of ``invdiff.training.adversarial``,
    switched on after ``adversarial_start`` steps. The exported folder holds the autoencoder
    only."""

    grid_rows = ["input", "recon"]

    def grid_title(self) -> str:
        return f"autoencoder ({self.cfg.quantizer}): training images and reconstructions (EMA)"

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.device = device
        self.data: Tensor | None = None
        self.step = 0  # the loop sets it before every loss (the GAN warm-up reads it)

    def build_model(self) -> nn.Module:
        from diffusers import AutoencoderKL, VQModel

        cfg = self.cfg
        n = len(cfg.channels)
        common = dict(
            in_channels=cfg.image_channels,
            out_channels=cfg.image_channels,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(cfg.channels),
            layers_per_block=cfg.layers_per_block,
            latent_channels=cfg.latent_channels,
            norm_num_groups=cfg.norm_groups,
            sample_size=cfg.image_size,
        )
        if cfg.quantizer == "vq":
            model = VQModel(
                **common, num_vq_embeddings=cfg.codebook_size, vq_embed_dim=cfg.latent_channels
            )
        else:
            model = AutoencoderKL(**common)
        if cfg.adversarial_weight > 0:
            from invdiff.training.adversarial import PatchDiscriminator

            model = AutoencoderWithCritic(model, PatchDiscriminator(cfg.image_channels))
        return model

    def prepare(self, images: Tensor, labels: Tensor) -> None:
        self.data = images

    def loss(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        cfg = self.cfg
        ae = autoencoder_of(model)
        x = self.data[draw_batch(len(self.data), cfg.batch_size, generator)].to(self.device)
        if cfg.quantizer == "vq":
            out = ae.decode(ae.encode(x).latents)
            rec, reg = out.sample.float(), out.commit_loss.float().mean()
        else:
            posterior = ae.encode(x).latent_dist
            eps = torch.randn(posterior.mean.shape, generator=generator).to(self.device)
            rec = ae.decode(posterior.mean + posterior.std * eps).sample.float()
            # per pixel, like the reconstruction term
            reg = cfg.kl_weight * posterior.kl().float().mean() / x[0].numel()
        rec_loss = (rec - x).abs().mean() if cfg.recon_loss == "l1" else F.mse_loss(rec, x)
        if cfg.perceptual_weight > 0:
            from invdiff.metrics.perceptual import lpips_network

            rec_loss = (
                rec_loss + cfg.perceptual_weight * lpips_network("alex", x.device)(rec, x).mean()
            )
        total = rec_loss + reg
        if isinstance(model, AutoencoderWithCritic) and self.step >= cfg.adversarial_start:
            from invdiff.training.adversarial import adversarial_losses

            gan, _ = adversarial_losses(
                model.critic,
                x,
                rec,
                rec_loss,
                ae.decoder.conv_out.weight,
                cfg.adversarial_weight,
            )
            total = total + gan
        return total

    @torch.no_grad()
    def scaling_factor(self, model: nn.Module, n: int = 2048) -> float:
        """``1 / std`` of the latents ``encode`` keeps over the first ``n`` training images."""
        from invdiff.priors.latent import encoder_output

        ae = autoencoder_of(model)
        keep = encoder_output(ae)
        n = min(n, len(self.data))
        latents = [
            keep(ae.encode(self.data[i : min(i + 512, n)].to(self.device)))
            for i in range(0, n, 512)
        ]
        return float(1.0 / torch.cat(latents).float().std())

    @torch.no_grad()
    def grid(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        from invdiff.priors.latent import encoder_output

        ae = autoencoder_of(model)
        x = self.data[:8].to(self.device)
        rec = ae.decode(encoder_output(ae)(ae.encode(x))).sample
        return make_grid(torch.cat([x, rec]), nrow=8)  # rows: input, reconstruction

    def export(self, model: nn.Module, folder: Path) -> None:
        ae = autoencoder_of(model)
        s = self.scaling_factor(model)
        ae.register_to_config(scaling_factor=s)
        ae.save_pretrained(folder / "vae")
        (folder / "autoencoder.json").write_text(
            json.dumps(
                {"kind": "autoencoder", "scaling_factor": s, "quantizer": self.cfg.quantizer},
                indent=2,
            )
            + "\n"
        )


class ControlNetTask(DiffusionTask):
    """A ControlNet adapter on a frozen pixel prior, for one problem's measurements."""

    grid_rows = ["A^+ y", "ControlNet", "truth"]

    def __init__(self, cfg: TrainConfig, device: torch.device):
        from invdiff.priors import load
        from invdiff.priors.pixel import PixelPrior
        from invdiff.problems import get as get_problem

        super().__init__(cfg, device)
        base = load(cfg.prior, device=device)
        if type(base) is not PixelPrior:
            raise ValueError(
                f"--prior {cfg.prior}: a ControlNet adapts an unconditional pixel prior, got a "
                f"{type(base).__name__}"
            )
        self.base = base
        # the frozen network's own noise schedule and parameterisation
        self.scheduler = base.scheduler
        self.abar = self.scheduler.alphas_cumprod.float().to(device)
        self.prediction_type = base.prediction_type
        self.problem = get_problem(cfg.problem)
        if tuple(self.problem.in_shape) != tuple(base.in_shape):
            raise ValueError(
                f"problem {cfg.problem} has images of shape {self.problem.in_shape}, the prior "
                f"{cfg.prior} models {base.in_shape}"
            )
        self.operator = self.problem.operator(device)
        bank = self.problem.bank
        where = {} if bank is None else {"bank": bank, "index": self.problem.bank_index or 0}
        # the preset's own arguments (a plain seed, not the generator the factory gets)
        self.degradation = {
            "name": self.problem.operator_name,
            **self.problem.operator_params,
            **where,
        }
        self.noise_sigma = float(getattr(self.problem.noise, "sigma", 0.0))

    def model_shape(self) -> tuple[int, int, int]:
        return tuple(self.base.in_shape)

    def build_model(self) -> nn.Module:
        import copy

        from invdiff.priors.controlnet import ControlledUNet, ControlNetAdapter

        unet = copy.deepcopy(self.base.unet)
        return ControlledUNet(unet, ControlNetAdapter(unet, self.model_shape()[0]))

    def measure(self, x0: Tensor, generator: torch.Generator) -> Tensor:
        """``A^+ (A x0 + n)``, clamped to [-1, 1]: the condition the adapter reads."""
        with torch.no_grad():
            y = self.operator(x0)
            y = y + self.noise_sigma * torch.randn(y.shape, generator=generator).to(y.device)
            return self.operator.pinv(y).clamp(-1, 1)

    def loss(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        cfg = self.cfg
        idx = draw_batch(len(self.data), cfg.batch_size, generator)
        x0 = self.data[idx].to(self.device)
        noise = torch.randn(x0.shape, generator=generator).to(self.device)
        t = torch.randint(0, len(self.abar), (cfg.batch_size,), generator=generator).to(self.device)
        cond = self.measure(x0, generator)
        a = self.abar[t].view(-1, 1, 1, 1)
        labels = None
        if self.base.null_label is not None:
            labels = torch.full((cfg.batch_size,), self.base.null_label, device=self.device)
        pred = model(vp_noisy(x0, noise, a), t, cond=cond, class_labels=labels).sample
        target = training_target(self.prediction_type, x0, noise, a)
        return F.mse_loss(pred.float(), target)

    def prior(self, model: nn.Module) -> Prior:
        from invdiff.priors.controlnet import ControlNetPrior

        return ControlNetPrior(
            model.unet,
            self.scheduler,
            model.adapter,
            degradation=self.degradation,
            noise_sigma=self.noise_sigma,
            base=self.cfg.prior,
        )

    def grid_title(self) -> str:
        return f"controlnet on {self.cfg.problem}: DDIM {self.cfg.sample_steps} steps"

    def grid(self, model: nn.Module, generator: torch.Generator) -> Tensor:
        n = min(8, len(self.data))
        truth = self.data[:n].to(self.device)
        cond = self.measure(truth, generator)
        x = ddim_sample(
            self.prior(model), n, self.cfg.sample_steps, generator, cond=cond, clip=True
        )
        return make_grid(torch.cat([cond, x, truth]), nrow=n)


TASKS = {
    "controlnet": ControlNetTask,
    "pixel": DiffusionTask,
    "sr3": SR3Task,
    "latent": LatentTask,
    "autoencoder": AutoencoderTask,
}
