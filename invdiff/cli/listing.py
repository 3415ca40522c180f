"""List what is available: operators, priors (registered kinds and shipped checkpoints), solvers,
unconditional samplers, problem presets and data sets.

    invdiff list             # everything
    invdiff list solvers     # one kind; for solvers, with their declared needs and
                             # hyperparameters (default, valid values, meaning)
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


def solver_lines(name: str) -> list[str]:
    """What a solver needs and its hyperparameters, as ``invdiff list solvers`` prints them."""
    from invdiff.solvers import get

    solver = get(name)
    noise = "/".join(t.__name__ for t in solver.requires_noise)
    needs = f"{solver.requires_operator.__name__}, {solver.requires_prior.__name__}, {noise}"
    lines = [f"  {name}  (needs {needs})"]
    for key, default, valid, doc in solver.describe():
        lines.append(f"      {key} = {default!r}: {valid}; {doc}")
    return lines


def run(args: argparse.Namespace) -> int:
    for kind, names in sections().items():
        if args.what and args.what != kind:
            continue
        print(f"{kind} ({len(names)}):")
        for n in names:
            if kind == "solvers" and args.what == "solvers":
                print("\n".join(solver_lines(n)))
            else:
                print(f"  {n}")
    return 0
