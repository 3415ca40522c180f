"""Train a diffusion prior on the package's data: ``invdiff train KIND [options]``.

Kinds: ``pixel`` (unconditional DDPM; with --class-conditional the UNet also takes the class
label, see that option), ``sr3`` (super-resolution x2, x4 or x8, --factor), ``autoencoder``
(AutoencoderKL, f=4 with the default three levels), ``latent`` (DDPM on the latents of a
trained autoencoder, --autoencoder RUN_DIR) and ``controlnet`` (a ControlNet adapter on a
frozen pixel prior, --prior NAME, conditioned on A^+ y of a problem preset, --problem PRESET;
zero-initialised, so the run starts from the prior itself). ``pixel --cross-attention``
conditions on the class through learned tokens the UNet cross-attends to.
Data: Fashion-MNIST's train split (grey, 32x32) by default, or your own images with
--data DIR: every image file under DIR, centre-cropped and resized to --image-size, converted to
--image-channels (3 by default), split deterministically into train and validation parts
(--val-fraction); the run trains on the train part.
``--config small`` is sized for a CPU, ``--config full`` for a GPU; any flag overrides the
preset. The run folder (--out) collects config.json, loss.csv, samples/*.png (labelled grids),
checkpoint.safetensors and the exported EMA model (prior/ or autoencoder/, with README.md, its
model card stating data, size, channels and split), which `invdiff.priors.load` reads.

Examples:
  invdiff train pixel --config small --steps 3000 --out runs/pixel
  invdiff train pixel --out runs/pixel --steps 4000 --resume      # continue (or extend) a run
  invdiff train pixel --data ~/photos --image-size 64 --out runs/my-prior   # your images
  invdiff train sr3 --factor 4 --out runs/sr3-x4
  invdiff train autoencoder --out runs/ae && invdiff train latent --autoencoder runs/ae
  invdiff train autoencoder --quantizer vq --perceptual --adversarial --adversarial-start 1000
  invdiff train pixel --cross-attention --out runs/xattn       # then: invdiff solve --class 3
  invdiff train controlnet --prior fmnist32-pixel --problem fmnist-sr4 --out runs/cn-sr4
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from invdiff.argtypes import non_negative_float, non_negative_int, positive_float, positive_int
from invdiff.training.config import KINDS, PRESETS

SCHEDULE_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
        if any(v < 1 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 32,64,128, got {text!r}"
        ) from None


def _bools(text: str) -> tuple[bool, ...]:
    values = {"0": False, "1": True, "n": False, "y": True, "false": False, "true": True}
    try:
        return tuple(values[v.strip().lower()] for v in text.split(","))
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated 0/1 per level like 0,0,1, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("kind", choices=KINDS, help="what to train")
    parser.add_argument(
        "--config",
        choices=PRESETS,
        default="small",
        help="preset: small (CPU) or full (GPU); default small",
    )
    parser.add_argument("--out", help="run folder (default runs/KIND)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.safetensors (exactly; --steps may grow)",
    )
    parser.add_argument("--steps", type=positive_int, help="optimiser steps")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument(
        "--lr", type=positive_float, help="AdamW learning rate (after a linear warm-up)"
    )
    parser.add_argument("--warmup-steps", type=non_negative_int)
    parser.add_argument("--weight-decay", type=non_negative_float)
    parser.add_argument(
        "--ema-decay",
        type=non_negative_float,
        help="EMA decay of the weights used for sampling and export",
    )
    parser.add_argument("--grad-clip", type=positive_float, help="max global gradient norm")
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        help="seed of the run's generator (batches, noise, timesteps, init)",
    )
    parser.add_argument("--device", help="auto (default: cuda if available), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (torch.set_num_threads)"
    )
    bf16 = parser.add_mutually_exclusive_group()
    bf16.add_argument(
        "--bf16", dest="bf16", action="store_true", default=None, help="bf16 autocast"
    )
    bf16.add_argument(
        "--no-bf16", dest="bf16", action="store_false", help="fp32 (default of the small presets)"
    )
    bf16.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="fp32 (= --no-bf16) or bf16 autocast (= --bf16), as for solve and bench",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the network for the training steps (eager where it cannot)",
    )
    parser.add_argument(
        "--channels", type=_ints, help="UNet/encoder channels per level, e.g. 32,64,128"
    )
    parser.add_argument("--attention", type=_bools, help="attention per level, e.g. 0,0,1")
    parser.add_argument("--layers-per-block", type=positive_int)
    parser.add_argument("--norm-groups", type=positive_int)
    parser.add_argument(
        "--beta-schedule", choices=sorted(SCHEDULE_NAMES), help="DDPM betas (default linear)"
    )
    parser.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction", "sample"),
        help="what the network predicts: noise, velocity (Salimans & Ho 2022) or x0",
    )
    parser.add_argument(
        "--snr-weighting",
        help="loss weighting over noise levels: none (default) or min-snr-GAMMA, e.g. "
        "min-snr-5 (Hang et al. 2023)",
    )
    parser.add_argument("--num-train-timesteps", type=positive_int)
    parser.add_argument(
        "--class-conditional",
        action="store_true",
        default=None,
        help="pixel: the UNet also takes the class label (a null class replaces it with "
        "probability --label-dropout). Sample grids and every solver use the null class, i.e. "
        "the unconditional model; prior.conditioned(label, guidance=w) gives the class-"
        "conditional model with classifier-free guidance (invdiff solve --class N --guidance W)",
    )
    parser.add_argument(
        "--cross-attention",
        action="store_true",
        default=None,
        help="pixel: condition on the class label through cross-attention (Rombach et al. "
        "2022): a UNet2DConditionModel attends to --class-tokens learned tokens of width "
        "--token-dim per class (a null class replaces the label with probability "
        "--label-dropout); prior.conditioned(label or tokens=..., guidance=w)",
    )
    parser.add_argument(
        "--class-tokens", type=positive_int, help="cross-attention: tokens per class"
    )
    parser.add_argument("--token-dim", type=positive_int, help="cross-attention: token width")
    parser.add_argument("--label-dropout", type=non_negative_float)
    parser.add_argument(
        "--factor", type=int, choices=(2, 4, 8), help="sr3: super-resolution factor (2, 4 or 8)"
    )
    parser.add_argument("--autoencoder", help="latent: folder of a trained autoencoder run")
    parser.add_argument(
        "--prior", help="controlnet: the frozen pixel prior (zoo name or folder) it adapts"
    )
    parser.add_argument(
        "--problem",
        "--operator",
        dest="problem",
        help="controlnet: the problem preset whose measurements A^+ y condition it "
        "(e.g. fmnist-sr4); the prior refuses other operators",
    )
    parser.add_argument(
        "--encode-limit",
        type=non_negative_int,
        help="latent: encode only the first N training images (0: all)",
    )
    parser.add_argument(
        "--latent-channels", type=positive_int, help="autoencoder: latent channels (4 or 3)"
    )
    parser.add_argument("--recon-loss", choices=("l1", "l2"))
    parser.add_argument("--kl-weight", type=non_negative_float)
    parser.add_argument(
        "--quantizer",
        choices=("kl", "vq"),
        help="autoencoder: AutoencoderKL (kl, default) or VQModel (vq, Esser et al. 2021)",
    )
    parser.add_argument("--codebook-size", type=positive_int, help="autoencoder vq: entries")
    parser.add_argument(
        "--perceptual",
        dest="perceptual_weight",
        type=non_negative_float,
        nargs="?",
        const=1.0,
        metavar="W",
        help="autoencoder: add W x LPIPS(x, D(E(x))) to the loss (W = 1 if not given)",
    )
    parser.add_argument(
        "--adversarial",
        dest="adversarial_weight",
        type=non_negative_float,
        nargs="?",
        const=0.5,
        metavar="W",
        help="autoencoder: add a patch-GAN (hinge loss, adaptive weight, Esser et al. 2021) "
        "with weight W (0.5 if not given) after --adversarial-start steps",
    )
    parser.add_argument("--adversarial-start", type=non_negative_int)
    parser.add_argument(
        "--dataset", help="registered data set name (default fashion_mnist; see invdiff list)"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="train on the images under DIR (recursively: png, jpg, bmp, gif, tif, webp)",
    )
    parser.add_argument(
        "--image-size",
        type=positive_int,
        help="image size in pixels (default 32; images are resized)",
    )
    parser.add_argument(
        "--image-channels",
        type=int,
        choices=(1, 3),
        help="1 grey or 3 RGB (default: 3 with --data, else 1)",
    )
    parser.add_argument(
        "--val-fraction",
        type=non_negative_float,
        help="--data: fraction of the images held out for validation (default 0.1)",
    )
    parser.add_argument("--log-every", type=positive_int)
    parser.add_argument("--sample-every", type=positive_int)
    parser.add_argument("--checkpoint-every", type=positive_int)
    parser.add_argument("--num-samples", type=positive_int, help="images in each sample grid")
    parser.add_argument("--sample-steps", type=positive_int, help="DDIM steps for the sample grids")
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        help="stop (checkpoint + export) after this many minutes",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from invdiff.training.config import TrainConfig

    names = [
        "out",
        "steps",
        "batch_size",
        "lr",
        "warmup_steps",
        "weight_decay",
        "ema_decay",
        "grad_clip",
        "seed",
        "device",
        "bf16",
        "channels",
        "attention",
        "layers_per_block",
        "norm_groups",
        "prediction_type",
        "snr_weighting",
        "num_train_timesteps",
        "class_conditional",
        "cross_attention",
        "class_tokens",
        "token_dim",
        "label_dropout",
        "factor",
        "autoencoder",
        "prior",
        "problem",
        "encode_limit",
        "latent_channels",
        "recon_loss",
        "kl_weight",
        "quantizer",
        "codebook_size",
        "perceptual_weight",
        "adversarial_weight",
        "adversarial_start",
        "dataset",
        "image_size",
        "image_channels",
        "val_fraction",
        "log_every",
        "sample_every",
        "checkpoint_every",
        "num_samples",
        "sample_steps",
    ]
    overrides = {n: getattr(args, n, None) for n in names}
    if args.precision:
        overrides["bf16"] = args.precision == "bf16"
    if args.beta_schedule:
        overrides["beta_schedule"] = SCHEDULE_NAMES[args.beta_schedule]
    if args.channels and not args.attention:
        overrides["attention"] = (
            tuple([False] * (len(args.channels) - 1) + [True])
            if args.kind != "autoencoder"
            else (False,) * len(args.channels)
        )
    if getattr(args, "data", None):
        if args.dataset not in (None, "image_folder"):
            raise ValueError(f"--data DIR and --dataset {args.dataset} exclude each other")
        overrides["dataset"] = "image_folder"
        overrides["data"] = args.data
        if args.image_channels is None:
            overrides["image_channels"] = 3
    if args.kind == "sr3" and not args.out:
        overrides["out"] = f"runs/sr3-x{args.factor or 4}"
    overrides["command"] = "invdiff train " + shlex.join(
        sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "train" else [args.kind]
    )
    return TrainConfig.preset(args.kind, args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    import torch

    from invdiff.training.loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)  # errors are printed as one line by invdiff.cli.main
    if cfg.data and not Path(cfg.data).expanduser().is_dir():
        raise ValueError(f"--data: no such folder {cfg.data}")
    limit = args.time_limit * 60 if args.time_limit is not None else None
    out = train(
        cfg,
        resume=args.resume,
        progress=not args.no_progress,
        time_limit_s=limit,
        compile=args.compile,
    )
    print(f"done: {out}")
    return 0
