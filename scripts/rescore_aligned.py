"""Score a finished run's reconstructions of one problem up to the operator's ambiguities.

Reads the saved reconstructions (``samples/<problem>/<solver>/seed<S>/batch*.npz`` of a
benchmark folder) and the truth images, and prints per solver label the mean plain and aligned
PSNR and LPIPS with 95 % intervals, all from the same saved uint8 images
(``invdiff.metrics.aligned``: the shift / flip nearest the truth by squared error). For runs
whose suite did not list ``lpips_aligned`` (phase retrieval is ambiguous up to shifts and the
180-degree rotation, so plain LPIPS penalises a correct but shifted reconstruction).

    python3 scripts/rescore_aligned.py runs/bench/paper --problem fmnist-phase-retrieval
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from invdiff import data, problems
from invdiff.bench.stats import mean_ci
from invdiff.images import from_uint8
from invdiff.metrics import lpips, lpips_aligned, psnr, psnr_aligned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a benchmark output folder")
    parser.add_argument("--problem", required=True)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ambiguities = problems.get(args.problem).operator("cpu").ambiguities
    dataset = data.get(args.dataset, split=args.split)
    root = args.folder / "samples" / args.problem
    if not root.is_dir():
        raise SystemExit(f"{root}: no saved reconstructions of {args.problem}")
    print(f"# {args.folder} {args.problem}; ambiguities {sorted(ambiguities)}; saved uint8 images")
    print(
        f"{'solver':22s} {'n':>4s} {'PSNR':>15s} {'aligned':>15s} {'LPIPS':>17s} {'aligned':>17s}"
    )
    for solver_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        scores: dict[str, list[float]] = {k: [] for k in ("psnr", "psnr_al", "lpips", "lpips_al")}
        for batch in sorted(solver_dir.glob("seed*/batch*.npz")):
            with np.load(batch, allow_pickle=False) as npz:
                images, indices = npz["images"], npz["indices"]
            xhat = from_uint8(torch.as_tensor(images).permute(0, 3, 1, 2))
            x = dataset.images([int(i) for i in indices])
            scores["psnr"] += psnr(xhat, x).tolist()
            scores["psnr_al"] += psnr_aligned(xhat, x, ambiguities).tolist()
            scores["lpips"] += lpips(xhat, x).tolist()
            scores["lpips_al"] += lpips_aligned(xhat, x, ambiguities).tolist()
        if not scores["psnr"]:
            continue
        e = {k: mean_ci(v) for k, v in scores.items()}
        print(
            f"{solver_dir.name:22s} {len(scores['psnr']):4d} "
            f"{e['psnr'].mean:7.2f} ± {e['psnr'].half_width:5.2f} "
            f"{e['psnr_al'].mean:7.2f} ± {e['psnr_al'].half_width:5.2f} "
            f"{e['lpips'].mean:8.4f} ± {e['lpips'].half_width:6.4f} "
            f"{e['lpips_al'].mean:8.4f} ± {e['lpips_al'].half_width:6.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
