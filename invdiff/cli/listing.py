"""List what is available: operators, priors (registered kinds and shipped checkpoints), solvers,
unconditional samplers, problem presets and data sets.

    invdiff list             # everything
    invdiff list solvers     # one kind
"""

from __future__ import annotations

import argparse

KINDS = ("operators", "priors", "solvers", "samplers", "problems", "datasets")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=KINDS, help="list only this kind (default: all)")


def sections() -> dict[str, list[str]]:
    """Kind -> sorted names, read from the registries and the zoo."""
    from invdiff import priors, problems, samplers
    from invdiff.registry import DATASETS, OPERATORS, PRIORS, SOLVERS

    shipped = [f"{n} (shipped)" for n in priors.names()]
    return {
        "operators": OPERATORS.names(),
        "priors": shipped + [f"{n} (class)" for n in PRIORS.names()],
        "solvers": SOLVERS.names(),
        "samplers": samplers.names(),
        "problems": problems.names(),
        "datasets": DATASETS.names(),
    }


def run(args: argparse.Namespace) -> int:
    for kind, names in sections().items():
        if args.what and args.what != kind:
            continue
        print(f"{kind} ({len(names)}):")
        for n in names:
            print(f"  {n}")
    return 0
