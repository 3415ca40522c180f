"""Tune a solver's hyperparameters for one problem, prior and budget on a validation split.

    invdiff tune --solver ddrm --problem fmnist-random70 --nfe 20 --table tuned.json
    invdiff tune --solver dps --problem fmnist-sr4 --nfe 100 --images 16 --candidates 8 \\
        --table benchmarks/tuned/fmnist32.json
    invdiff tune --suite paper          # every tuned = true entry of a suite, into its table

Successive halving (``invdiff.bench.tuning``) over the hyperparameters the solver declares
tunable (``invdiff list solvers`` shows their search spaces): ``--candidates`` settings, the
declared defaults first, scored by ``--objective`` (LPIPS, lower is better; PSNR reported) on
the first ``--images`` images of the validation split (``fashion_mnist`` ``val``: test images
9,000-9,999, which no table should report on). The chosen values, the search space, every
candidate's scores and the validation images are written as one entry of ``--table`` (JSON,
created or updated atomically); a suite entry with ``tuned = true`` runs with them.
``--set NAME=VALUE`` holds a hyperparameter fixed.

``--suite`` tunes every (solver, problem, budget) a suite runs with ``tuned = true`` (the
suite's hyperparameters held fixed, its ``tuned_table`` written after each one), skipping the
ones the table already holds: an interrupted run resumes where it stopped. With ``--suite``,
``--solver`` and ``--problem`` (comma-separated names) narrow the run to those entries, e.g.
to share the work between machines or to re-tune one solver after a change
(``--retune`` replaces the entries the table holds instead of skipping them).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--solver", help="solver name (invdiff list solvers)")
    parser.add_argument("--problem", help="problem preset (invdiff list problems)")
    parser.add_argument("--suite", help="tune every tuned = true entry of this suite instead")
    parser.add_argument("--prior", help="prior name or folder (default: the problem's)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--nfe", type=int, help="budget in network evaluations")
    budget.add_argument("--steps", type=int, help="budget in the solver's own steps")
    parser.add_argument("--table", type=Path, help="tuned table (JSON) to update")
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
    parser.add_argument(
        "--retune", action="store_true", help="with --suite: replace entries already tuned"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from invdiff import problems, solvers
    from invdiff.bench.tuning import Budget
    from invdiff.cli.solve import _hyperparameters

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("nfe", "steps", "images", "candidates", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.suite is not None:
        if args.nfe or args.steps or args.set:
            raise ValueError(
                "--suite takes the budgets and fixed values from the suite "
                "(--solver and --problem narrow it to some of its entries)"
            )
        return _tune_suite(args)
    missing = [o for o, v in (("--solver", args.solver), ("--problem", args.problem)) if not v]
    missing += ["--nfe or --steps"] if args.nfe is None and args.steps is None else []
    missing += ["--table"] if args.table is None else []
    if missing:
        raise ValueError(f"give {', '.join(missing)} (or --suite NAME)")
    problem = problems.get(args.problem)
    solver = solvers.get(args.solver)
    fixed = _hyperparameters(args.set, solver.defaults)
    solver.hyperparameters(fixed)
    budget = Budget(nfe=args.nfe, steps=args.steps)
    _tune_one(args, problem, args.solver, args.prior, budget, fixed, args.table)
    return 0


def _tune_suite(args: argparse.Namespace) -> int:
    """Every (solver, problem, budget) of the suite with ``tuned = true``, into its table."""
    from invdiff import solvers
    from invdiff.bench.suite import load
    from invdiff.bench.tuning import Budget, TunedTable
    from invdiff.cli.solve import _prior_kind
    from invdiff.problems import PRIOR_KINDS
    from invdiff.solvers.base import SolverMismatchError

    suite = load(args.suite)
    if suite.tuned_table is None:
        raise ValueError(f"suite {suite.name!r} names no tuned_table")
    only_solvers = _names(args.solver, {s.name for s in suite.solvers if s.tuned}, "solver")
    only_problems = _names(args.problem, {p.name for p in suite.problems}, "problem")
    done = skipped = 0
    loaded: dict[str, Any] = {}  # prior name -> the prior, loaded once for all its pairs
    for spec in (s for s in suite.solvers if s.tuned):
        if only_solvers is not None and spec.name not in only_solvers:
            continue
        solver = solvers.get(spec.name)
        budget = Budget(nfe=spec.nfe, steps=spec.steps)
        for problem in suite.problems:
            if spec.problems is not None and problem.name not in spec.problems:
                continue
            if only_problems is not None and problem.name not in only_problems:
                continue
            if spec.prior is not None and spec.prior not in PRIOR_KINDS:
                prior_name = spec.prior  # a prior named by the entry itself
            else:
                kind = spec.prior or _prior_kind(solver)
                source = suite.priors.get(kind)
                source = source.get(problem.name) if isinstance(source, dict) else source
                prior_name = source or problem.priors.get(kind)
            table = (
                TunedTable.load(suite.tuned_table) if suite.tuned_table.is_file() else TunedTable()
            )
            key = (spec.name, problem.name, str(prior_name), budget.key())
            if key in table.entries and not args.retune:
                skipped += 1
                continue
            try:
                solver.check(_prior_type(prior_name), problem.operator(), problem.noise)
            except SolverMismatchError:
                continue  # the suite leaves this pair out (skip_incompatible)
            fixed = spec.hyper_for(problem.name)
            _tune_one(
                args, problem, spec.name, prior_name, budget, fixed, suite.tuned_table, loaded
            )
            done += 1
    print(f"tuned {done} setting(s); {skipped} already in {suite.tuned_table}")
    return 0


def _names(given: str | None, known: set[str], what: str) -> set[str] | None:
    """The comma-separated ``given`` names, each one the suite tunes; None for all."""
    if not given:
        return None
    names = {n.strip() for n in given.split(",") if n.strip()}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(
            f"the suite tunes no {what} {', '.join(unknown)}; it tunes {', '.join(sorted(known))}"
        )
    return names


def _prior_type(prior_name: str | None):  # noqa: ANN202 - a Prior class
    from invdiff import priors

    if prior_name is None:
        raise ValueError("no prior for this pair: name one in the suite's [priors]")
    return priors.describe(prior_name).prior_type


def _tune_one(
    args: argparse.Namespace,
    problem: Any,
    solver_name: str,
    prior_arg: str | None,
    budget: Any,
    fixed: dict[str, Any],
    table_path: Path,
    loaded: dict[str, Any] | None = None,
) -> None:
    """One tuning run, its entry written to ``table_path``; ``loaded`` keeps the priors a
    ``--suite`` run has loaded, so that each is read once."""
    from invdiff import data, priors, solvers
    from invdiff.bench.tuning import TunedTable, official_indices, tune
    from invdiff.cli.solve import _prior_kind, check_prior_fits
    from invdiff.io import check_writable
    from invdiff.priors.network import NetworkOptions

    solver = solvers.get(solver_name)
    if table_path.is_file():
        TunedTable.load(table_path)  # a broken table is reported before the search, not after
    check_writable(table_path.parent if table_path.parent != Path("") else Path("."))
    prior_name = prior_arg or problem.priors.get(_prior_kind(solver))
    if prior_name is None:
        raise ValueError(f"problem {problem.name!r} names no prior for {solver_name}; pass --prior")
    info = priors.describe(prior_name)
    operator = problem.operator(args.device)
    solver.check(info.prior_type, operator, problem.noise)
    check_prior_fits(info, str(prior_name), problem, operator)
    dataset = data.for_shape(
        problem.dataset, split=args.split, size=problem.image_size, channels=problem.channels
    )
    if args.images > len(dataset):
        raise ValueError(f"--images {args.images}: the {args.split} split has {len(dataset)}")
    indices = list(range(args.images))
    validation = {"dataset": problem.dataset, "split": args.split, "indices": indices}
    tested = official_indices(problem.dataset, "test", range(9000))
    if not official_indices(problem.dataset, args.split, indices).isdisjoint(tested):
        print(
            f"invdiff tune: warning: split {args.split!r} overlaps the test images tables "
            "report on; tune on `val`",
            file=sys.stderr,
        )
    loaded = {} if loaded is None else loaded
    if str(prior_name) not in loaded:
        loaded[str(prior_name)] = priors.load(prior_name, device=args.device)
        loaded[str(prior_name)].configure(**dataclasses.asdict(NetworkOptions()))
    prior = loaded[str(prior_name)]
    images = dataset.images(indices).to(args.device)

    def note(text: str) -> None:
        print(f"invdiff tune: {text}", file=sys.stderr)

    entry = tune(
        solver_name,
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
    # read again just before writing: another run (a second process, a second machine on a
    # shared folder) may have added entries while this one searched
    table = TunedTable.load(table_path) if table_path.is_file() else TunedTable()
    table.add(entry)
    table.save(table_path)
    print(
        f"{solver_name} on {problem.name} ({budget.key()}, prior {prior_name}): {entry.hyper}; "
        f"{entry.objective} {entry.score:.4f}, PSNR {entry.psnr:.2f} dB over {entry.images} "
        f"{args.split} images ({entry.nfe_spent:,} batched network evaluations); wrote "
        f"{table_path}"
    )
