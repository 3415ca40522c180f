"""Distance of every solver's samples to the exact posterior on the Gaussian-mixture test bed.

For each registered solver that accepts the test bed (GMM prior, 16 dims / 4 components on
1 x 4 x 4 images; sigma_y = 0.05; half the pixels observed, or a dense 8 x 16 compressed-sensing
matrix), prints the sliced-Wasserstein distance of its ``n`` samples (one ``y`` repeated ``n``
times) to ``n`` exact posterior samples, beside the prior's distance (a solver that ignores
``y``) and the distance between two exact sample sets (the sampling-noise floor).

    python3 scripts/solver_posterior_report.py                 # all solvers, both operators
    python3 scripts/solver_posterior_report.py --solvers dps ddrm --n 512 --steps dps=250
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_testbed import OPERATOR_KINDS, make_problem, posterior_distance  # noqa: E402

import invdiff  # noqa: E402
from invdiff.solvers import SolverMismatchError  # noqa: E402

#: steps per solver: the paper's setting where it is affordable on a CPU, else fewer
DEFAULT_STEPS = {
    "dps": 1000,
    "repaint": 100,
    "ddrm": 20,
    "ddnm": 100,
    "pigdm": 100,
    "pinv": 1,
    "tikhonov": 100,
    "tv": 300,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--solvers", nargs="*", default=None, help="solver names (default: all registered)"
    )
    parser.add_argument(
        "--operators", nargs="*", default=list(OPERATOR_KINDS), choices=OPERATOR_KINDS
    )
    parser.add_argument("--n", type=int, default=256, help="samples per solver (one batch)")
    parser.add_argument(
        "--steps", nargs="*", default=[], metavar="NAME=STEPS", help="override steps per solver"
    )
    parser.add_argument(
        "--default-steps", type=int, default=100, help="steps for solvers not in the table"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = dict(DEFAULT_STEPS)
    for item in args.steps:
        name, _, value = item.partition("=")
        steps[name] = int(value)
    names = args.solvers or invdiff.solvers.names()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"{'solver':<12} {'operator':<11} {'steps':>5} {'SW solver':>10} {'SW prior':>9} "
        f"{'SW exact':>9} {'ratio':>6} {'time s':>7}"
    )
    for kind in args.operators:
        problem = make_problem(kind)
        for name in names:
            k = steps.get(name, args.default_steps)
            t0 = time.perf_counter()
            try:
                d = posterior_distance(
                    name, kind, n=args.n, steps=k, seed=args.seed, problem=problem
                )
            except SolverMismatchError as err:
                print(f"{name:<12} {kind:<11} {'-':>5} n/a: {str(err).splitlines()[0][:80]}")
                continue
            except Exception as err:  # a failing solver must not hide the others' figures
                print(f"{name:<12} {kind:<11} {k:>5} FAILED: {type(err).__name__}: {err}"[:120])
                continue
            dt = time.perf_counter() - t0
            print(
                f"{name:<12} {kind:<11} {k:>5} {d.solver:>10.4f} {d.prior:>9.4f} "
                f"{d.exact:>9.4f} {d.ratio:>6.3f} {dt:>7.1f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
