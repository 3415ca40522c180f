"""List what is registered: operators, solvers, priors (registered and shipped), problems, data sets."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "what",
        nargs="?",
        choices=["operators", "solvers", "priors", "problems", "datasets"],
        help="list only this kind (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    import invdiff
    from invdiff.registry import DATASETS, OPERATORS, PROBLEMS, SOLVERS

    sections = {
        "operators": OPERATORS.names(),
        "solvers": SOLVERS.names(),
        "priors": invdiff.priors.names(),
        "problems": invdiff.problems.names(),
        "datasets": DATASETS.names(),
    }
    for kind, names in sections.items():
        if args.what and args.what != kind:
            continue
        print(f"{kind} ({len(names)}):")
        for n in names:
            print(f"  {n}")
    return 0
