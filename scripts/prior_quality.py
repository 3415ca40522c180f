#!/usr/bin/env python3
"""Quality of the shipped priors (a benchmark, not a test): writes JSON and the model cards.

For each zoo prior, on the test split of the data set it was trained on (its training.json;
Fashion-MNIST, or the colour emoji set, whose test split has 339 images: N real is stated):
* FID and KID (Inception-2015-12-05 pool3, ``invdiff.metrics``) of N unconditional DDIM samples
  against N test images (pixel and latent priors; N is reported: FID at small N is biased up);
* denoising PSNR of the one-step Tweedie estimate ``x0(x + sigma eps, sigma)`` against the noisy
  input (identity) at sigma in {0.1, 0.2, 0.5, 1.0} (in [-1, 1] units; for the latent prior the
  noise is added to the scaled latents and both are decoded);
* SR3: PSNR / SSIM / LPIPS of DDIM samples against bicubic upsampling of the bicubic-downsampled
  test image (the SR3 training degradation);
* latent prior: autoencoder reconstruction PSNR.

    python scripts/prior_quality.py --update-cards   # all four, into invdiff/zoo/quality.json
    python scripts/prior_quality.py --names emoji32-pixel --update-cards
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

import invdiff
from invdiff.priors import ConditionalPrior, LatentPrior
from invdiff.priors.sr3 import SR3Prior
from invdiff.training.tasks import ddim_sample

SIGMAS = (0.1, 0.2, 0.5, 1.0)
DEFAULT_NAMES = ("fmnist32-pixel", "fmnist32-sr3-x2", "fmnist32-sr3-x4", "fmnist32-latent")


def mean(t: torch.Tensor) -> float:
    return float(t.float().mean())


@torch.no_grad()
def denoising(prior, x: torch.Tensor, generator: torch.Generator) -> dict:
    out = {}
    cond = None
    if isinstance(prior, ConditionalPrior):  # A^+ y of its training operator (SR3: bicubic)
        cond = prior.condition(prior.degradation(x))
    clean = prior.encode(x) if isinstance(prior, LatentPrior) else x
    for s in SIGMAS:
        noisy = clean + s * torch.randn(clean.shape, generator=generator)
        est = prior.x0(noisy, s, cond)
        latent_gain = None
        if isinstance(prior, LatentPrior):
            # the diffusion model's own gain, where the autoencoder's error does not enter
            latent_gain = 10 * torch.log10(
                (noisy - clean).pow(2).mean() / (est - clean).pow(2).mean()
            )
            noisy, est = prior.decode(noisy), prior.decode(est)
        out[str(s)] = {
            "identity": mean(invdiff.metrics.psnr(noisy.clamp(-1, 1), x)),
            "prior": mean(invdiff.metrics.psnr(est.clamp(-1, 1), x)),
        }
        if latent_gain is not None:
            out[str(s)]["latent_gain_db"] = float(latent_gain)
    return {"n": len(x), "by_sigma": out}


def sample_images(prior, n: int, steps: int, seed: int, batch: int = 100) -> torch.Tensor:
    chunks = []
    for i in range(0, n, batch):
        g = torch.Generator().manual_seed(seed + i)
        if isinstance(prior, LatentPrior):
            chunks.append(prior.decode(ddim_sample(prior, min(batch, n - i), steps, g)))
        else:
            chunks.append(ddim_sample(prior, min(batch, n - i), steps, g, clip=True))
    return torch.cat(chunks).clamp(-1, 1)


def fid_kid(real_features: torch.Tensor, fake: torch.Tensor) -> dict:
    metric = invdiff.metrics.InceptionDistance(progress=False)
    metric.update_features(real_features, real=True)
    metric.update(fake, real=False)
    subset = min(len(fake) // 2, 1000)  # subsets smaller than N, so the KID spread means something
    scores = metric.compute(kid_subsets=100, kid_subset_size=subset, generator=0)
    return {
        "fid": scores.fid,
        "kid": scores.kid,
        "kid_std": scores.kid_std,
        "kid_subset": subset,
        "n": len(fake),
    }


@torch.no_grad()
def super_resolution(prior, x: torch.Tensor, steps: int, seed: int) -> dict:
    from invdiff.priors.sr3 import downsample

    cond = prior.condition(downsample(x, prior.factor))
    g = torch.Generator().manual_seed(seed)
    sr = ddim_sample(prior, len(x), steps, g, cond=cond, clip=True).clamp(-1, 1)
    m = invdiff.metrics
    return {
        "factor": prior.factor,
        "n": len(x),
        "sampler": f"DDIM {steps} steps, x0 clipped",
        "sr3": {
            "psnr": mean(m.psnr(sr, x)),
            "ssim": mean(m.ssim(sr, x)),
            "lpips": mean(m.lpips(sr, x)),
        },
        "bicubic": {
            "psnr": mean(m.psnr(cond, x)),
            "ssim": mean(m.ssim(cond, x)),
            "lpips": mean(m.lpips(cond, x)),
        },
    }


@torch.no_grad()
def conditional_sampling(prior, x: torch.Tensor, steps: int, seed: int) -> dict:
    """A conditional prior (ControlNet) sampled given ``A^+ y`` of its training operator's
    noiseless measurements, against that condition itself."""
    op = prior.degradation
    cond = prior.condition(op(x))
    g = torch.Generator().manual_seed(seed)
    sample = ddim_sample(prior, len(x), steps, g, cond=cond, clip=True).clamp(-1, 1)
    m = invdiff.metrics
    return {
        "operator": type(op).__name__,
        "n": len(x),
        "sampler": f"DDIM {steps} steps, x0 clipped",
        **{
            key: {
                "psnr": mean(m.psnr(v, x)),
                "ssim": mean(m.ssim(v, x)),
                "lpips": mean(m.lpips(v, x)),
            }
            for key, v in (("sample", sample), ("condition", cond))
        },
    }


def training_data(folder: Path) -> tuple[str, int, int]:
    """(data set, image size, channels) a prior folder was trained on (its training.json)."""
    config = json.loads((folder / "training.json").read_text())["config"]
    return config["dataset"], config["image_size"], config.get("image_channels", 1)


def test_images(folder: Path, seed: int) -> torch.Tensor:
    """The test split of the prior's data set, in a fixed random order."""
    name, size, channels = training_data(folder)
    x_all = invdiff.data.for_shape(name, split="test", size=size, channels=channels).images()
    return x_all[torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--names", nargs="+", default=list(DEFAULT_NAMES), help="zoo names or folders"
    )
    parser.add_argument(
        "--n-fid", type=int, default=1000, help="samples (and test images) for FID/KID"
    )
    parser.add_argument("--n-denoise", type=int, default=100, help="test images for denoising PSNR")
    parser.add_argument("--n-sr", type=int, default=32, help="test images for super-resolution")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", default="invdiff/zoo/quality.json", help="JSON (merged per prior)")
    parser.add_argument(
        "--denoise-only",
        action="store_true",
        help="measure denoising only; keep the other figures of the folder's quality.json",
    )
    parser.add_argument(
        "--update-cards",
        action="store_true",
        help="write quality.json + README.md in each zoo folder",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python scripts/prior_quality.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )

    real_features: dict[tuple, torch.Tensor] = {}  # per (data set, size, channels)
    results = {
        "command": command,
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "priors": {},
    }
    for name in args.names:
        t0 = time.perf_counter()
        prior = invdiff.priors.load(name)
        folder = (
            Path(invdiff.priors.zoo.ZOO_DIR / name)
            if name in invdiff.priors.names()
            else Path(name)
        )
        x_all = test_images(folder, args.seed)
        x_den, x_sr, x_fid = x_all[: args.n_denoise], x_all[: args.n_sr], x_all[: args.n_fid]
        q = {
            "command": command,
            "data": "{} test split, {} px, {} channel(s)".format(*training_data(folder)),
            "denoise": denoising(prior, x_den, torch.Generator().manual_seed(args.seed)),
        }
        if args.denoise_only:
            earlier = folder / "quality.json"
            kept = json.loads(earlier.read_text()) if earlier.is_file() else {}
            q = {**kept, "denoise": q["denoise"], "data": q["data"]}
            before = kept.get("command")
            q["command"] = f"{before}; denoising: {command}" if before else command
        elif isinstance(prior, SR3Prior):
            q["sr"] = super_resolution(prior, x_sr, args.steps, args.seed)
        elif isinstance(prior, ConditionalPrior):
            q["conditional"] = conditional_sampling(prior, x_sr, args.steps, args.seed)
        else:
            data_key = training_data(folder)
            if data_key not in real_features:
                metric = invdiff.metrics.InceptionDistance(progress=False)
                metric.update(x_fid, real=True)
                real_features[data_key] = metric.features(True)
            fake = sample_images(prior, args.n_fid, args.steps, args.seed)
            clipped = "" if isinstance(prior, LatentPrior) else ", x0 clipped"
            q["fid"] = {
                **fid_kid(real_features[data_key], fake),
                "n_real": len(x_fid),
                "sampler": f"DDIM {args.steps} steps{clipped}",
            }
        if isinstance(prior, LatentPrior) and not args.denoise_only:
            with torch.no_grad():
                rec = prior.decode(prior.encode(x_den)).clamp(-1, 1)
            q["autoencoder"] = {"psnr": mean(invdiff.metrics.psnr(rec, x_den)), "n": len(x_den)}
        if not args.denoise_only:
            q["seconds"] = round(time.perf_counter() - t0, 1)
        results["priors"][name] = q
        print(name, json.dumps(q, indent=1), flush=True)
        if args.update_cards:
            from invdiff.io import write_text
            from invdiff.training.export import write_card

            write_text(folder / "quality.json", json.dumps(q, indent=2) + "\n")
            write_card(folder)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file():  # keep the figures of priors measured by an earlier call
        earlier = json.loads(out.read_text()).get("priors", {})
        results["priors"] = {**earlier, **results["priors"]}
    from invdiff.io import write_text

    write_text(out, json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
