#!/usr/bin/env python3
"""Two runs of one suite that differ in one thing (the prior, a precision, a code change),
compared row by row: per problem and solver, the mean of ``B - A`` over the images both runs
hold, with its 95 % Student-t interval (``invdiff.bench.compare.paired``).

    invdiff bench grey-priors --out runs/bench/grey-priors-eps
    invdiff bench grey-priors --prior invdiff/zoo/fmnist32-pixel-x0-minsnr \\
        --out runs/bench/grey-priors-x0
    python scripts/compare_runs.py runs/bench/grey-priors-eps runs/bench/grey-priors-x0

A difference whose interval excludes zero is marked ``B better`` or ``B worse`` (by the
metric's direction); otherwise ``n.s.``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from invdiff.bench import rows as rowio
from invdiff.bench.compare import paired
from invdiff.metrics.registry import METRICS


def read_rows(folder: Path) -> list[dict]:
    rows = list(rowio.read(folder / "rows.jsonl"))
    if not rows:
        raise SystemExit(f"{folder}: no rows (run `invdiff bench SUITE --out {folder}`)")
    return rows


def suite_sha(folder: Path) -> str | None:
    run = folder / "run.json"
    return json.loads(run.read_text()).get("suite_sha256") if run.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", type=Path, help="run folder A (the reference)")
    parser.add_argument("b", type=Path, help="run folder B")
    parser.add_argument("--metrics", nargs="+", default=["psnr", "lpips"])
    args = parser.parse_args(argv)
    if suite_sha(args.a) != suite_sha(args.b):
        print("warning: the two folders ran different suite files", file=sys.stderr)
    rows = []
    for tag, folder in (("A", args.a), ("B", args.b)):
        for r in read_rows(folder):
            rows.append({**r, "problem": f"{r['problem']}|{r['solver']}", "solver": tag})
    print(f"# A = {args.a}\n# B = {args.b}\n# mean of B - A over paired images, 95 % interval")
    header = f"{'problem':26s} {'solver':14s} " + " ".join(f"{m:>30s}" for m in args.metrics)
    print(header)
    cells: dict[tuple[str, str], list[str]] = {}
    for metric in args.metrics:
        higher = METRICS[metric].higher_is_better
        for p in paired(rows, metric):
            sign = 1 if p.a == "B" else -1  # paired() gives a - b in the labels' order
            d = p.difference
            verdict = "n.s."
            if p.significant:
                verdict = "B better" if (sign * d.mean > 0) == higher else "B worse"
            problem, solver = p.problem.split("|")
            text = f"{sign * d.mean:+.3f} ± {d.half_width:.3f} {verdict:8s} (n={d.n})"
            cells.setdefault((problem, solver), []).append(f"{text:>30s}")
    for (problem, solver), texts in sorted(cells.items()):
        print(f"{problem:26s} {solver:14s} " + " ".join(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
