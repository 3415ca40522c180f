"""Run a benchmark suite: ``invdiff bench SUITE [--out DIR] [--data DIR --prior DIR] [--limit N]``.

A suite (TOML, see ``benchmarks/quick.toml``) names the images, problems, solvers with their
steps and hyperparameters, priors, metrics and seeds. The whole suite is checked (names,
files, solver/operator/prior pairings) before any solving. One JSON line per (image, problem,
solver, seed) goes to ``OUT/rows.jsonl``; a killed run resumes where it stopped when started
again with the same ``--out``. At the end: ``summary.csv``, ``summary.md``, ``table.tex``,
FID/KID (``distribution.csv``), ``figures/*.png`` and ``manifest.json``.

Across processes or GPUs: ``torchrun --nproc_per_node=N -m invdiff bench SUITE`` (images are
sharded by rank; rank 0 merges and writes the tables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from invdiff.priors.network import add_network_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "suite",
        help="suite TOML file, or the name of one in benchmarks/ (quick, standard, peers, ffhq256)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/bench/<suite name>)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="use this folder of images as the data set (image_folder)",
    )
    parser.add_argument(
        "--prior",
        type=Path,
        default=None,
        help="use this prior folder (diffusers DDPM) as the pixel prior",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="only the first N images of the suite"
    )
    parser.add_argument(
        "--solver",
        help="only these solvers of the suite (comma-separated names): share a suite between "
        "machines or run part of it into the same --out; a later run without it does the rest",
    )
    parser.add_argument(
        "--device", default=None, help="override the suite's device (cpu, cuda, cuda:1, auto)"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard the results already in --out instead of resuming",
    )
    add_network_arguments(parser, checkpointing=True)
    parser.add_argument("--no-figures", action="store_true", help="skip the figure grids")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from invdiff.bench import runner
    from invdiff.bench.suite import load

    # errors (SuiteError lists every problem found) are printed by invdiff.cli.main, exit 2
    suite = load(
        args.suite,
        data_dir=args.data,
        prior_dir=args.prior,
        limit=args.limit,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        checkpointing=args.checkpointing,
    )
    if args.solver:
        _keep_solvers(suite, args.solver)
    out = args.out or Path("runs") / "bench" / suite.name
    result = runner.run(
        suite, out, restart=args.restart, progress=not args.quiet, figures=not args.no_figures
    )
    if "rank" in result:  # a non-zero rank: rank 0 reports
        return 1 if result.get("errors") else 0
    print(
        f"wrote {out}/summary.md, summary.csv, table.tex, manifest.json "
        f"({result['rows']}/{result['expected_rows']} rows, {result['wall_s']:.1f} s)"
    )
    if result["failed_batches"]:
        print(
            f"{result['failed_batches']} batch(es) failed: see {out}/errors.jsonl", file=sys.stderr
        )
        return 1
    return 0 if result["rows"] == result["expected_rows"] else 1


def _keep_solvers(suite: Any, names: str) -> None:
    """Narrow the suite to the solvers named (its file, and so its run folder, unchanged)."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    known = {s.name for s in suite.solvers}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"--solver {', '.join(unknown)}: the suite runs {', '.join(sorted(known))}"
        )
    suite.solvers = [s for s in suite.solvers if s.name in wanted]
