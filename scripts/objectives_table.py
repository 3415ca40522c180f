"""Training objectives at an equal budget: epsilon, v and x0 (sample) prediction, each with
and without min-SNR-gamma weighting (Hang et al. 2023), on the same pixel UNet, data, seed and
number of steps; then denoising PSNR at sigma 0.1 / 0.5 / 1.0 (the prior's x0 estimate against
the identity) and FID / KID of DDIM samples against the test split.

Each run is an ordinary ``invdiff train pixel`` run under ``--out/<objective>`` (resumable: an
interrupted table picks up where it stopped), so a row can be reproduced alone. Its figures are
kept in ``--out/<objective>/row.json``; ``--only`` measures some objectives (two processes on
two cores can share the table), and every call writes ``--out/objectives.json`` from all the
rows measured so far with the same settings. The table reports what the runs show at this
budget, no winner beyond it.

    python scripts/objectives_table.py --steps 3000 --out runs/objectives --n-fid 1000
    python scripts/objectives_table.py --only sample-none sample-min-snr-5 ...  # a share
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from prior_quality import denoising, fid_kid, sample_images

import invdiff
from invdiff.io import write_text
from invdiff.training.config import TrainConfig
from invdiff.training.loop import train

OBJECTIVES = [
    (prediction, weighting)
    for prediction in ("epsilon", "v_prediction", "sample")
    for weighting in ("none", "min-snr-5")
]
NAMES = [f"{prediction}-{weighting}" for prediction, weighting in OBJECTIVES]


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
    parser.add_argument(
        "--only", nargs="+", choices=NAMES, default=NAMES, help="measure these objectives"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {
        key: getattr(args, key)
        for key in ("steps", "config", "n_denoise", "n_fid", "sample_steps", "seed")
    }
    test = invdiff.data.get("fashion_mnist", split="test")
    x_den = test.images(range(args.n_denoise))
    real = None
    for prediction, weighting in OBJECTIVES:
        name = f"{prediction}-{weighting}"
        row_file = Path(args.out) / name / "row.json"
        if name not in args.only or measured(row_file, settings):
            continue
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
        if real is None:
            metric = invdiff.metrics.InceptionDistance(progress=False)
            metric.update(test.images(range(args.n_fid)), real=True)
            real = metric.features(True)
        row = {
            "prediction": prediction,
            "weighting": weighting,
            "settings": settings,
            "steps": args.steps,
            "denoise_psnr": {s: v["prior"] for s, v in den.items() if s in ("0.1", "0.5", "1.0")},
            "identity_psnr": {s: v["identity"] for s, v in den.items()},
            **fid_kid(real, fake),
        }
        write_text(row_file, json.dumps(row, indent=2) + "\n")
        print(
            f"{prediction:<13} {weighting:<10} "
            + " ".join(f"{s}:{p:6.2f}" for s, p in row["denoise_psnr"].items())
            + f"  FID {row['fid']:7.2f}  KID {row['kid']:.5f}",
            flush=True,
        )
    rows, missing = [], []
    for name in NAMES:
        row_file = Path(args.out) / name / "row.json"
        if measured(row_file, settings):
            rows.append(json.loads(row_file.read_text()))
        else:
            missing.append(name)
    if missing:
        print(f"not measured yet at these settings: {', '.join(missing)}")
    table = {"command": " ".join(sys.argv), "settings": settings, "rows": rows}
    write_text(Path(args.out) / "objectives.json", json.dumps(table, indent=2) + "\n")
    write_text(Path(args.out) / "objectives.md", markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    """The table as Markdown: one row per objective, best value per column in bold."""
    columns = [
        (f"PSNR sigma {s}", lambda r, s=s: r["denoise_psnr"][s], max, "{:.2f}")
        for s in ("0.1", "0.5", "1.0")
    ]
    columns += [
        ("FID", lambda r: r["fid"], min, "{:.1f}"),
        ("KID", lambda r: r["kid"], min, "{:.4f}"),
    ]
    best = {name: pick(get(r) for r in rows) for name, get, pick, _ in columns}
    lines = [
        "| prediction | weighting | " + " | ".join(name for name, *_ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for r in rows:
        cells = []
        for name, get, _, fmt in columns:
            text = fmt.format(get(r))
            if name == "KID":
                text += f" ± {r['kid_std']:.4f}"
            cells.append(f"**{text}**" if get(r) == best[name] else text)
        lines.append(f"| {r['prediction']} | {r['weighting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def measured(row_file: Path, settings: dict) -> bool:
    """Whether ``row_file`` holds a row measured with exactly these settings."""
    if not row_file.is_file():
        return False
    return json.loads(row_file.read_text()).get("settings") == settings


if __name__ == "__main__":
    sys.exit(main())
