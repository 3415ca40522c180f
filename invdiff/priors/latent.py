"""Latent diffusion prior (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models", Sec. 3-4): a DDPM on the scaled latents of an ``AutoencoderKL`` (or of a
``VQModel``: the continuous latent before its quantiser, ``encoder_output``).

``encode(x) = s * mu_phi(x)`` (the mean of the encoder's posterior) and
``decode(z) = D(z / s)``, with the scaling factor ``s = 1 / std(mu_phi(x))`` measured on the
training set (Sec. 4.3.2), so the latents have roughly unit variance like the images the VP
chain was designed for. The denoiser is the ``PixelPrior`` adapter applied to latents; gradients
flow through ``decode`` (latent DPS / PSLD need them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from invdiff.priors.base import LatentPrior
from invdiff.priors.kinds import register
from invdiff.priors.network import NetworkOptions, NetworkRunner, weight_dtype
from invdiff.priors.pixel import PixelPrior


def _decoded(out) -> Tensor:  # noqa: ANN001 - a diffusers DecoderOutput
    return out.sample


def _latent_mean(out) -> Tensor:  # noqa: ANN001 - a diffusers AutoencoderKLOutput
    return out.latent_dist.mean


def _pre_quantization(out) -> Tensor:  # noqa: ANN001 - a diffusers VQEncoderOutput
    return out.latents


def encoder_output(vae) -> Callable:  # noqa: ANN001 - a diffusers autoencoder
    """What ``encode`` keeps of the autoencoder's output: the posterior mean of an
    ``AutoencoderKL``; the continuous latent before quantisation of a ``VQModel`` (LDM's
    VQ-regularised models, Rombach et al. 2022, Sec. 3: the quantiser is part of the decoder,
    which snaps its input to the codebook, with straight-through gradients)."""
    from diffusers import VQModel

    return _pre_quantization if isinstance(vae, VQModel) else _latent_mean


@register
class LatentDiffusionPrior(PixelPrior, LatentPrior):
    """Sigma-space prior on latents ``z``; ``in_shape`` is the latent (C, h, w), ``image_shape``
    the decoded image (C, H, W)."""

    kind = "latent"

    def __init__(
        self, unet, scheduler, vae, *, scaling_factor: float | None = None, name: str = ""
    ):  # noqa: ANN001
        super().__init__(unet, scheduler, name=name)
        self.vae = vae.eval()
        for p in self.vae.parameters():
            p.requires_grad_(False)
        # the autoencoder is evaluated under the prior's options too: latent DPS and PSLD
        # differentiate through decode, so it is checkpointed and cast like the UNet
        self._decode_runner = NetworkRunner(self.vae, "VAE decoder", fn=self.vae.decode)
        self._encode_runner = NetworkRunner(self.vae, "VAE encoder", fn=self.vae.encode)
        cfg = vae.config
        self.scaling_factor = float(
            scaling_factor if scaling_factor is not None else cfg.scaling_factor
        )
        if not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be positive, got {self.scaling_factor}")
        down = 2 ** (len(cfg.block_out_channels) - 1)
        size = int(cfg.sample_size)
        self.image_shape = (int(cfg.in_channels), size, size)
        expected = (int(cfg.latent_channels), size // down, size // down)
        if tuple(self.in_shape) != expected:
            raise ValueError(
                f"the latent UNet models {self.in_shape} "
                f"but the autoencoder's latents are {expected} "
                "(latent_channels, H/f, W/f); train the latent UNet on this autoencoder"
            )

    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1, 1] ``N x C x H x W`` -> scaled latent mean ``N x c x h x w``."""
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"x must be N x {self.image_shape}, got {tuple(x.shape)}")
        mean = self._encode_runner(x.to(weight_dtype(self.vae)), output=encoder_output(self.vae))
        return (mean * self.scaling_factor).to(x.dtype)

    def decode(self, z: Tensor) -> Tensor:
        """Scaled latent -> image in [-1, 1] (not clamped, so gradients stay informative)."""
        if tuple(z.shape[1:]) != tuple(self.in_shape):
            raise ValueError(f"z must be N x {tuple(self.in_shape)}, got {tuple(z.shape)}")
        out = self._decode_runner(
            (z / self.scaling_factor).to(weight_dtype(self.vae)), output=_decoded
        )
        return out.to(z.dtype)

    def _apply_network_options(self, options: NetworkOptions) -> None:
        super()._apply_network_options(options)
        self._decode_runner.configure(options)
        self._encode_runner.configure(options)

    def metadata(self) -> dict:
        return {
            **super().metadata(),
            "image_shape": list(self.image_shape),
            "image_size": self.image_shape[-1],
            "scaling_factor": self.scaling_factor,
        }

    def save(self, folder: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """``unet/``, ``scheduler/``, ``vae/`` (diffusers save_pretrained) and ``prior.json``."""
        import copy

        folder = super().save(folder, dtype=dtype)
        vae = copy.deepcopy(self.vae).to("cpu", dtype) if dtype is not None else self.vae
        vae.register_to_config(scaling_factor=self.scaling_factor)
        vae.save_pretrained(Path(folder) / "vae")
        return Path(folder)

    @classmethod
    def from_folder(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", name: str = ""
    ) -> LatentDiffusionPrior:
        """Load ``unet/``, ``scheduler/`` and ``vae/`` from a latent prior folder."""
        from invdiff.priors.checks import load_unet_and_scheduler, load_vae, read_prior_json

        folder = Path(folder)
        meta = read_prior_json(folder, required=("scaling_factor",))
        unet, scheduler = load_unet_and_scheduler(folder, device=device)
        vae = load_vae(folder / "vae", device=device)
        return cls(
            unet,
            scheduler,
            vae,
            scaling_factor=float(meta["scaling_factor"]),
            name=name or folder.name,
        )
