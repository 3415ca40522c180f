"""Each pixel diffusion solver on each noise grid (``grid`` = ddpm, linear, karras), on held-out
images, to choose the solvers' default grid.

The images are a fixed slice of the Fashion-MNIST *training* split, never the test split that
the benchmarks report on: the data set has no validation split (train 60,000 / test 10,000), so
the last ``--images`` training images (59,968-59,999 for 32) stand in for one. The shipped
prior ``fmnist32-pixel`` was trained on the whole training split for about 1.5 epochs, so it
has seen them; that favours no grid over another. Every run of a cell uses the same ``y`` (the
problem's own noise draw for those indices) and the same solver seed, so the grids are
compared on paired samples; ``dPSNR`` is the mean paired difference to the ``ddpm`` grid with
its standard error over the images.

    python scripts/tune_grids.py --images 16 --threads 1 \\
        --out benchmarks/results/grids/grids-validation.txt

Rows are written as they finish (the file is rewritten atomically through ``invdiff.io``), so
an interrupted run keeps what it measured. ``--solvers`` and ``--problems`` pick a subset.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from datetime import date

import torch

import invdiff
from invdiff.diffusion.schedules import GRIDS
from invdiff.io import write_text

SOLVERS = ("ddrm", "diffpir", "ddnm", "pigdm", "red_diff", "dps", "repaint")
PROBLEMS = ("fmnist-random70", "fmnist-sr4", "fmnist-gaussian-deblur")
TRAIN_SIZE = 60_000


def steps_for(solver: invdiff.solvers.Solver, nfe: int, prior: invdiff.priors.Prior) -> int:
    """The most steps whose declared cost is at most ``nfe`` network evaluations."""
    steps = 1
    while True:
        cost = solver.nfe(steps + 1, prior=prior)
        if cost is None or cost > nfe:
            return steps
        steps += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default="fmnist32-pixel")
    parser.add_argument("--images", type=int, default=16, help="held-out training images")
    parser.add_argument("--nfe", type=int, nargs="*", default=[20, 50, 100])
    parser.add_argument("--solvers", nargs="*", default=list(SOLVERS))
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    parser.add_argument("--grids", nargs="*", default=list(GRIDS))
    parser.add_argument(
        "--sigma-max",
        type=float,
        nargs="*",
        default=None,
        help="start levels to try for the linear and karras grids (default: each grid's own)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="text file for the table (atomic rewrites)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    prior = invdiff.priors.load(args.prior)
    start = TRAIN_SIZE - args.images
    header = [
        f"# python {shlex.join(['scripts/tune_grids.py', *(argv or sys.argv[1:])])}"
        f"   ({date.today().isoformat()}, threads={torch.get_num_threads()}, CPU)",
        f"# prior={args.prior}; images: Fashion-MNIST train[{start}:{TRAIN_SIZE}] (held out from "
        "the test split the benchmarks report); sigma_y as in each problem (0.05)",
        "# psnr / lpips: mean over the images; dPSNR: paired mean difference to the first row "
        "of the cell (the ddpm grid) +- its standard error; grid:S = that grid from sigma_max "
        "S, else each grid's default start",
        f"{'solver':<9} {'problem':<23} {'nfe':>4} {'steps':>5} {'grid':<7} {'psnr':>6} "
        f"{'lpips':>6} {'dPSNR':>14} {'wall_s':>7}",
    ]
    lines = list(header)

    def flush() -> None:
        text = "\n".join(lines) + "\n"
        if args.out:
            write_text(args.out, text)

    lp = invdiff.metrics.lpips
    for name in args.solvers:
        solver = invdiff.solvers.get(name)
        for problem_name in args.problems:
            problem = invdiff.problems.get(problem_name)
            op = problem.operator("cpu")
            try:
                solver.check(prior, op, problem.noise)
            except invdiff.solvers.SolverMismatchError:
                continue
            x = invdiff.data.get(problem.dataset, split="train").images(range(start, TRAIN_SIZE))
            y = problem.measure(x, index=start, seed=args.seed, operator=op)
            for nfe in args.nfe:
                steps = steps_for(solver, nfe, prior)
                base = None
                runs = [
                    (grid, sigma_max)
                    for grid in args.grids
                    for sigma_max in (
                        args.sigma_max if args.sigma_max and grid != "ddpm" else [None]
                    )
                ]
                for grid, sigma_max in runs:
                    t0 = time.perf_counter()
                    out = invdiff.solve(
                        name,
                        prior=prior,
                        operator=op,
                        y=y,
                        noise=problem.noise,
                        steps=steps,
                        generator=torch.Generator().manual_seed(args.seed),
                        grid=grid,
                        sigma_max=sigma_max,
                    ).clamp(-1, 1)
                    wall = time.perf_counter() - t0
                    psnr = invdiff.metrics.psnr(out, x)
                    lpips = float(lp(out, x).mean())
                    if base is None:
                        base = psnr
                    diff = psnr - base
                    se = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
                    label = grid if sigma_max is None else f"{grid}:{sigma_max:g}"
                    row = (
                        f"{name:<9} {problem_name:<23} {solver.nfe(steps, prior=prior):>4} "
                        f"{steps:>5} {label:<9} {float(psnr.mean()):>6.2f} {lpips:>6.3f} "
                        f"{f'{float(diff.mean()):+.2f} +- {se:.2f}':>14} {wall:>7.1f}"
                    )
                    print(row, flush=True)
                    lines.append(row)
                    flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
