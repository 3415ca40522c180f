"""Training objectives at an equal budget: epsilon, v and x0 (sample) prediction, each with
and without min-SNR-gamma weighting (Hang et al. 2023), on the same pixel UNet, data, seed and
number of steps; then denoising PSNR at sigma 0.1 / 0.5 / 1.0 (the prior's x0 estimate against
the identity) and FID / KID of DDIM samples against the test split.

Each run is an ordinary ``invdiff train pixel`` run under ``--out/<objective>`` (resumable: an
interrupted table picks up where it stopped), so a row can be reproduced alone. The table
reports what the runs show at this budget, no winner beyond it.

    python scripts/objectives_table.py --steps 3000 --out runs/objectives --n-fid 1000
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from prior_quality import denoising, fid_kid, sample_images

import invdiff
from invdiff.training.config import TrainConfig
from invdiff.training.loop import train

OBJECTIVES = [
    (prediction, weighting)
    for prediction in ("epsilon", "v_prediction", "sample")
    for weighting in ("none", "min-snr-5")
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--config", default="small", choices=("small", "full"))
    parser.add_argument("--out", default="runs/objectives")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n-denoise", type=int, default=500)
    parser.add_argument("--n-fid", type=int, default=1000)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    test = invdiff.data.get("fashion_mnist", split="test")
    x_den = test.images(range(args.n_denoise))
    metric = invdiff.metrics.InceptionDistance(progress=False)
    metric.update(test.images(range(args.n_fid)), real=True)
    real = metric.features(True)
    rows = []
    for prediction, weighting in OBJECTIVES:
        name = f"{prediction}-{weighting}"
        cfg = TrainConfig.preset(
            "pixel",
            args.config,
            out=str(Path(args.out) / name),
            steps=args.steps,
            prediction_type=prediction,
            snr_weighting=weighting,
            seed=args.seed,
            device=args.device,
        )
        resume = (Path(cfg.out) / "checkpoint.safetensors").is_file()
        run = train(cfg, resume=resume)
        prior = invdiff.priors.load(run / "prior")
        den = denoising(prior, x_den, torch.Generator().manual_seed(args.seed))["by_sigma"]
        fake = sample_images(prior, args.n_fid, args.sample_steps, args.seed)
        row = {
            "prediction": prediction,
            "weighting": weighting,
            "steps": args.steps,
            "denoise_psnr": {s: v["prior"] for s, v in den.items() if s in ("0.1", "0.5", "1.0")},
            "identity_psnr": {s: v["identity"] for s, v in den.items()},
            **fid_kid(real, fake),
        }
        rows.append(row)
        print(
            f"{prediction:<13} {weighting:<10} "
            + " ".join(f"{s}:{p:6.2f}" for s, p in row["denoise_psnr"].items())
            + f"  FID {row['fid']:7.2f}  KID {row['kid']:.5f}",
            flush=True,
        )
    out = Path(args.out) / "objectives.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
