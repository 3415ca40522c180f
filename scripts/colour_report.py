#!/usr/bin/env python3
"""How much colour a colour benchmark's reconstructions have (a report, not a test).

Per problem and solver of a finished ``invdiff bench`` run on a colour data set: the mean
chroma of the reconstructions beside that of the truth, and the PSNR of the chroma itself.
The chroma of a pixel is its distance from the grey axis, ``c = x - mean_RGB(x)`` (3 numbers
per pixel, [-1, 1] units); its size is ``|c|`` averaged over the pixels. A reconstruction that
stays grey (chroma 0) scores ``chroma ratio`` 0, the truth's colour 1; ``chroma PSNR`` compares
``c`` with the truth's ``c`` (peak 2), which a grey output cannot win. Colorization is the
problem where this matters: its measurement is grey, so the colour comes from the prior alone.

    python scripts/colour_report.py benchmarks/results/quick-colour-cpu --problem emoji-colorization
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

import invdiff
from invdiff.bench.store import RunStore


def chroma(x: torch.Tensor) -> torch.Tensor:
    """The part of each pixel off the grey axis: ``x - mean over RGB``, ``N x 3 x H x W``."""
    return x - x.mean(dim=1, keepdim=True)


def chroma_size(x: torch.Tensor) -> float:
    return float(chroma(x).norm(dim=1).mean())


def chroma_psnr(xhat: torch.Tensor, x: torch.Tensor) -> float:
    mse = float((chroma(xhat) - chroma(x)).pow(2).mean())
    return math.inf if mse == 0 else 10 * math.log10(4 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished bench run folder (rows.jsonl beside)")
    parser.add_argument("--problem", nargs="*", help="only these problems (default: all)")
    args = parser.parse_args(argv)

    manifest = json.loads((args.run / "manifest.json").read_text())
    suite = invdiff.bench.suite.load(args.run / "suite.toml")
    data = {k: v for k, v in suite.data.items() if k not in ("dataset", "start", "count")}
    dataset = invdiff.data.get(suite.data["dataset"], **data)
    store = RunStore(args.run)
    problems = args.problem or [p.name for p in suite.problems]
    solvers = [s["label"] if isinstance(s, dict) else s for s in manifest["solvers"]]
    print(f"# {args.run}: chroma |x - mean_RGB(x)| per pixel ([-1, 1] units), mean over images")
    print(
        f"{'problem':32s} {'solver':14s} {'n':>3s} {'chroma':>7s} {'truth':>7s} "
        f"{'ratio':>6s} {'chromaPSNR':>10s}"
    )
    for problem in problems:
        for solver in solvers:
            found = store.load_samples(problem, solver, suite.seeds[0])
            if not found:
                continue
            indices = sorted(found)
            xhat = torch.cat([found[i][0] for i in indices])
            if xhat.shape[1] != 3:
                continue
            x = dataset.images(indices)
            ratio = chroma_size(xhat) / max(chroma_size(x), 1e-12)
            print(
                f"{problem:32s} {solver:14s} {len(indices):3d} {chroma_size(xhat):7.4f} "
                f"{chroma_size(x):7.4f} {ratio:6.2f} {chroma_psnr(xhat, x):10.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
