"""Tune a solver's hyperparameters for one problem, prior and budget on a validation split.

    invdiff tune --solver ddrm --problem fmnist-random70 --nfe 20 --table tuned.json
    invdiff tune --solver dps --problem fmnist-sr4 --nfe 100 --images 16 --candidates 8 \\
        --table benchmarks/tuned/fmnist32.json

Successive halving (``invdiff.bench.tuning``) over the hyperparameters the solver declares
tunable (``invdiff list solvers`` shows their search spaces): ``--candidates`` settings, the
declared defaults first, scored by ``--objective`` (LPIPS, lower is better; PSNR reported) on
the first ``--images`` images of the validation split (``fashion_mnist`` ``val``: test images
9,000-9,999, which no table should report on). The chosen values, the search space, every
candidate's scores and the validation images are written as one entry of ``--table`` (JSON,
created or updated atomically); a suite entry with ``tuned = true`` runs with them.
``--set NAME=VALUE`` holds a hyperparameter fixed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--solver", required=True, help="solver name (invdiff list solvers)")
    parser.add_argument("--problem", required=True, help="problem preset (invdiff list problems)")
    parser.add_argument("--prior", help="prior name or folder (default: the problem's)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--nfe", type=int, help="budget in network evaluations")
    budget.add_argument("--steps", type=int, help="budget in the solver's own steps")
    parser.add_argument("--table", required=True, type=Path, help="tuned table (JSON) to update")
    parser.add_argument("--images", type=int, default=16, help="validation images (default 16)")
    parser.add_argument("--candidates", type=int, default=8, help="settings tried (default 8)")
    parser.add_argument("--objective", default="lpips", choices=("lpips", "psnr"))
    parser.add_argument("--split", default="val", help="validation split (default val)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the candidates and solver")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="hold a value fixed"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run(args: argparse.Namespace) -> int:
    import torch

    from invdiff import data, priors, problems, solvers
    from invdiff.bench.tuning import Budget, TunedTable, official_indices, tune
    from invdiff.cli.solve import _hyperparameters, _prior_kind, check_prior_fits
    from invdiff.io import check_writable
    from invdiff.priors.network import NetworkOptions

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("nfe", "steps", "images", "candidates", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    problem = problems.get(args.problem)
    solver = solvers.get(args.solver)
    fixed = _hyperparameters(args.set, solver.defaults)
    solver.hyperparameters(fixed)
    budget = Budget(nfe=args.nfe, steps=args.steps)
    table = TunedTable.load(args.table) if args.table.is_file() else TunedTable()
    check_writable(args.table.parent if args.table.parent != Path("") else Path("."))
    prior_name = args.prior or problem.priors.get(_prior_kind(solver))
    if prior_name is None:
        raise ValueError(f"problem {problem.name!r} names no prior for {args.solver}; pass --prior")
    info = priors.describe(prior_name)
    operator = problem.operator(args.device)
    solver.check(info.prior_type, operator, problem.noise)
    check_prior_fits(info, str(prior_name), problem, operator)
    dataset = data.get(problem.dataset, split=args.split)
    if args.images > len(dataset):
        raise ValueError(f"--images {args.images}: the {args.split} split has {len(dataset)}")
    indices = list(range(args.images))
    validation = {"dataset": problem.dataset, "split": args.split, "indices": indices}
    if args.split == "test" or not official_indices(
        problem.dataset, args.split, indices
    ).isdisjoint(official_indices(problem.dataset, "test", range(9000))):
        print(
            f"invdiff tune: warning: split {args.split!r} overlaps the test images tables "
            "report on; tune on `val`",
            file=sys.stderr,
        )
    prior = priors.load(prior_name, device=args.device)
    prior.configure(**dataclasses.asdict(NetworkOptions()))
    images = dataset.images(indices).to(args.device)

    def note(text: str) -> None:
        print(f"invdiff tune: {text}", file=sys.stderr)

    entry = tune(
        args.solver,
        problem,
        prior,
        str(prior_name),
        budget,
        images,
        indices,
        validation=validation,
        count=args.candidates,
        objective=args.objective,
        seed=args.seed,
        batch_size=args.batch_size,
        fixed=fixed,
        progress=note,
    )
    table.add(entry)
    table.save(args.table)
    print(
        f"{args.solver} on {problem.name} ({budget.key()}, prior {prior_name}): {entry.hyper}; "
        f"{entry.objective} {entry.score:.4f}, PSNR {entry.psnr:.2f} dB over {entry.images} "
        f"{args.split} images ({entry.nfe_spent:,} network evaluations spent); wrote {args.table}"
    )
    return 0
