"""Training configuration: one dataclass, ``small`` (CPU) and ``full`` (GPU) presets per kind.

``TrainConfig.preset(kind, config, **overrides)`` starts from the preset and replaces the given
fields; the command line maps its flags onto the same fields, so a run is fully described by
the ``config.json`` it writes next to its checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("pixel", "sr3", "autoencoder", "latent", "controlnet")
PRESETS = ("small", "full")
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
#: loss weighting over noise levels: none, or min-SNR-gamma (Hang et al. 2023) as "min-snr-G"
SNR_WEIGHTING_HELP = "none, or min-snr-GAMMA (e.g. min-snr-5)"


@dataclass
class TrainConfig:
    kind: str = "pixel"
    preset_name: str = "small"  # the preset the run started from
    out: str = "runs/pixel"
    dataset: str = "fashion_mnist"
    split: str = "train"
    data: str = ""  # a folder of the user's images (dataset "image_folder")
    val_fraction: float = 0.1  # image folders: the held-out validation part
    image_size: int = 32
    image_channels: int = 1  # 1 grey, 3 RGB
    seed: int = 0
    device: str = "auto"
    steps: int = 3000
    batch_size: int = 64
    lr: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    bf16: bool = False
    log_every: int = 25
    sample_every: int = 500
    checkpoint_every: int = 250
    num_samples: int = 16
    sample_steps: int = 50
    # networks
    channels: tuple[int, ...] = (32, 64, 128)
    attention: tuple[bool, ...] = (False, False, True)
    layers_per_block: int = 2
    norm_groups: int = 8
    # diffusion
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction_type: str = "epsilon"
    snr_weighting: str = "none"  # none | min-snr-GAMMA (training.tasks.snr_loss_weight)
    class_conditional: bool = False
    cross_attention: bool = False  # pixel: class tokens through UNet2DConditionModel
    class_tokens: int = 4  # cross_attention: learned tokens per class
    token_dim: int = 64  # cross_attention: token width (the UNet's cross_attention_dim)
    num_classes: int = 10
    label_dropout: float = 0.1
    factor: int = 4  # sr3
    autoencoder: str = ""  # latent: folder of a trained autoencoder run (or its autoencoder/)
    encode_limit: int = 0  # latent: encode only the first N training images (0: all)
    prior: str = ""  # controlnet: the frozen pixel prior (zoo name or folder)
    problem: str = ""  # controlnet: the problem preset whose measurements condition it
    # autoencoder
    latent_channels: int = 4
    recon_loss: str = "l1"
    kl_weight: float = 1e-4
    quantizer: str = "kl"  # kl (AutoencoderKL) | vq (VQModel, Esser et al. 2021)
    codebook_size: int = 256  # vq: codebook entries
    perceptual_weight: float = 0.0  # weight of the LPIPS term (0: off)
    adversarial_weight: float = 0.0  # weight of the patch-GAN term (0: off)
    adversarial_start: int = 0  # steps of reconstruction-only warm-up before the GAN term
    # free text recorded in the model card
    command: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, kind: str, preset: str = "small", **overrides) -> TrainConfig:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if preset not in PRESETS:
            raise ValueError(f"config must be one of {', '.join(PRESETS)}, got {preset!r}")
        values = {
            "kind": kind,
            "preset_name": preset,
            "out": f"runs/{kind}",
            **PRESET_VALUES[kind][preset],
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        need(self.kind in KINDS, f"kind must be one of {KINDS}, got {self.kind!r}")
        self._check_types()
        need(
            self.image_channels in (1, 3),
            f"image_channels must be 1 (grey) or 3 (RGB), got {self.image_channels!r}",
        )
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        need(
            self.dataset != "image_folder" or bool(self.data),
            "dataset 'image_folder' needs the folder of images: --data DIR",
        )
        need(
            not self.data or self.dataset == "image_folder",
            f"data={self.data!r} is an image folder: dataset must be 'image_folder', "
            f"got {self.dataset!r}",
        )
        for name in (
            "steps",
            "batch_size",
            "log_every",
            "sample_every",
            "checkpoint_every",
            "num_samples",
            "sample_steps",
            "layers_per_block",
            "norm_groups",
            "image_size",
            "num_classes",
            "latent_channels",
            "class_tokens",
            "token_dim",
            "codebook_size",
        ):
            value = getattr(self, name)
            need(value >= 1, f"{name} must be >= 1, got {value}")
        for name in ("seed", "warmup_steps", "encode_limit", "adversarial_start"):
            value = getattr(self, name)
            need(value >= 0, f"{name} must be >= 0, got {value}")
        need(
            self.num_train_timesteps >= 2,
            f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}",
        )
        need(
            len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
            f"channels must be one or more positive counts, got {self.channels}",
        )
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(
            self.grad_clip > 0,
            f"grad_clip must be > 0 (the largest gradient norm), got {self.grad_clip}",
        )
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.kl_weight >= 0, f"kl_weight must be >= 0, got {self.kl_weight}")
        need(
            self.quantizer in ("kl", "vq"),
            f"quantizer must be 'kl' or 'vq', got {self.quantizer!r}",
        )
        for name in ("perceptual_weight", "adversarial_weight"):
            value = getattr(self, name)
            need(value >= 0, f"{name} must be >= 0, got {value}")
        need(
            self.kind == "autoencoder"
            or (
                self.quantizer == "kl"
                and not self.perceptual_weight
                and not self.adversarial_weight
            ),
            "quantizer, perceptual_weight and adversarial_weight are autoencoder settings",
        )
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(
            self.beta_schedule in BETA_SCHEDULES,
            f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}",
        )
        need(
            self.prediction_type in PREDICTION_TYPES,
            f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}",
        )
        need(
            self.snr_weighting == "none" or _min_snr_gamma(self.snr_weighting) is not None,
            f"snr_weighting must be {SNR_WEIGHTING_HELP}, got {self.snr_weighting!r}",
        )
        need(
            len(self.channels) == len(self.attention),
            f"channels {self.channels} and attention {self.attention} need one entry per level",
        )
        need(
            all(c % self.norm_groups == 0 for c in self.channels),
            f"every channel count {self.channels} must be divisible by "
            f"norm_groups={self.norm_groups}",
        )
        need(
            self.image_size % 2 ** (len(self.channels) - 1) == 0,
            f"image_size {self.image_size} must be divisible by 2^(levels-1)",
        )
        need(
            self.recon_loss in ("l1", "l2"),
            f"recon_loss must be 'l1' or 'l2', got {self.recon_loss!r}",
        )
        need(
            0 <= self.label_dropout < 1,
            f"label_dropout must be in [0, 1), got {self.label_dropout}",
        )
        need(
            not (self.class_conditional and self.cross_attention),
            "class_conditional (a class embedding) and cross_attention (class tokens) are two "
            "ways to condition on the label: choose one",
        )
        need(
            self.kind == "pixel" or not (self.class_conditional or self.cross_attention),
            f"class_conditional / cross_attention train pixel priors, not {self.kind!r}",
        )
        if self.kind == "sr3":
            need(self.factor in (2, 4, 8), f"factor must be 2, 4 or 8, got {self.factor}")
        if self.kind == "controlnet":
            need(
                bool(self.prior) and bool(self.problem),
                "a ControlNet needs the frozen prior and the problem it learns to invert: "
                "--prior NAME --problem PRESET (e.g. --prior fmnist32-pixel --problem fmnist-sr4)",
            )
        if self.kind == "latent":
            need(
                bool(self.autoencoder),
                "a latent prior needs --autoencoder DIR "
                "(a trained `invdiff train autoencoder` run)",
            )

    def _check_types(self) -> None:
        """Every field has its declared type (a bool is not a number, 32.7 is not a size)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type))
            if kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
                what = "an integer"
            elif kind is float:
                ok = (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and math.isfinite(value)
                )
                what = "a finite number"
            elif kind is bool:
                ok, what = isinstance(value, bool), "true or false"
            elif kind is str:
                ok, what = isinstance(value, str), "a string"
            elif f.name == "channels":
                ok = isinstance(value, tuple) and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in value
                )
                what = "a tuple of integers"
            elif f.name == "attention":
                ok = isinstance(value, tuple) and all(isinstance(v, bool) for v in value)
                what = "a tuple of true/false"
            else:
                continue
            if not ok:
                raise ValueError(f"{f.name} must be {what}, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        for k in ("channels", "attention"):
            d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESET_VALUES: dict[str, dict[str, dict]] = {
    "controlnet": {
        # the network is a copy of the frozen prior's encoder: only the run's length is set here
        "small": {"steps": 2000, "batch_size": 32, "lr": 2e-4, "ema_decay": 0.995},
        "full": {
            "steps": 30_000,
            "batch_size": 128,
            "lr": 1e-4,
            "ema_decay": 0.9999,
            "bf16": True,
            "sample_every": 5000,
            "checkpoint_every": 2500,
            "log_every": 100,
        },
    },
    "pixel": {
        # ~2.7M parameters: channels 32/64/128, attention at 8x8 (CPU, about 0.3-0.8 step/s)
        "small": {
            "channels": (32, 64, 128),
            "attention": (False, False, True),
            "layers_per_block": 1,
            "steps": 3000,
            "batch_size": 64,
            "lr": 5e-4,
            "ema_decay": 0.999,
        },
        "full": {
            "channels": (64, 128, 256),
            "attention": (False, True, True),
            "layers_per_block": 2,
            "norm_groups": 32,
            "steps": 100_000,
            "batch_size": 128,
            "lr": 2e-4,
            "ema_decay": 0.9999,
            "bf16": True,
            "sample_every": 5000,
            "checkpoint_every": 2500,
            "log_every": 100,
        },
    },
    "sr3": {
        # v-prediction: x0 = sqrt(abar) x_t - sqrt(1 - abar) v does not amplify the network's
        # error by sigma at high noise as epsilon prediction does (it matters for short runs)
        "small": {
            "channels": (32, 64, 64),
            "attention": (False, False, False),
            "layers_per_block": 1,
            "steps": 2000,
            "batch_size": 32,
            "lr": 5e-4,
            "ema_decay": 0.995,
            "prediction_type": "v_prediction",
        },
        "full": {
            "channels": (64, 128, 256),
            "attention": (False, False, True),
            "layers_per_block": 2,
            "norm_groups": 32,
            "steps": 50_000,
            "batch_size": 128,
            "lr": 2e-4,
            "ema_decay": 0.9999,
            "bf16": True,
            "sample_every": 5000,
            "checkpoint_every": 2500,
            "log_every": 100,
        },
    },
    "autoencoder": {
        # f = 4: 32x32x1 -> 8x8x4
        "small": {
            "channels": (32, 64, 64),
            "attention": (False, False, False),
            "layers_per_block": 1,
            "steps": 2000,
            "batch_size": 32,
            "lr": 1e-3,
            "ema_decay": 0.995,
            "sample_every": 500,
        },
        "full": {
            "channels": (64, 128, 128),
            "attention": (False, False, False),
            "layers_per_block": 2,
            "norm_groups": 32,
            "steps": 30_000,
            "batch_size": 128,
            "lr": 5e-4,
            "ema_decay": 0.999,
            "sample_every": 5000,
            "checkpoint_every": 2500,
            "log_every": 100,
        },
    },
    "latent": {
        # on 8x8x4 latents: two levels (8x8, 4x4), attention at 4x4
        "small": {
            "channels": (64, 128),
            "attention": (False, True),
            "layers_per_block": 2,
            "encode_limit": 20_000,
            "prediction_type": "v_prediction",
            "steps": 4000,
            "batch_size": 64,
            "lr": 5e-4,
            "ema_decay": 0.999,
        },
        "full": {
            "channels": (128, 256),
            "attention": (True, True),
            "layers_per_block": 2,
            "norm_groups": 32,
            "steps": 100_000,
            "batch_size": 256,
            "lr": 2e-4,
            "ema_decay": 0.9999,
            "bf16": True,
            "sample_every": 5000,
            "checkpoint_every": 2500,
            "log_every": 100,
        },
    },
}


def _min_snr_gamma(text: str) -> float | None:
    """``gamma`` of ``min-snr-GAMMA`` (a positive number), None for anything else."""
    match = re.fullmatch(r"min-snr-(\d+(?:\.\d+)?)", text)
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def min_snr_gamma(cfg: TrainConfig) -> float | None:
    """The run's min-SNR ``gamma``, or None when the loss is unweighted."""
    return None if cfg.snr_weighting == "none" else _min_snr_gamma(cfg.snr_weighting)
