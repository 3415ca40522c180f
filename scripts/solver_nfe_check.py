"""One solver on held-out images at several budgets: does more NFE help?

PSNR (with its 95 % Student-t half-width over the images) and LPIPS of one solver, at each
budget in network evaluations, on the first ``--images`` images of the Fashion-MNIST ``val``
split (test images 9,000-9,999, which no table reports on); the measurement of each image is
the benchmark's (``Problem.measure``), the generator the same at every budget.

    python3 scripts/solver_nfe_check.py ddrm fmnist-gaussian-deblur --nfe 20 100 200
    python3 scripts/solver_nfe_check.py ddrm fmnist-gaussian-deblur --nfe 20 200 --set eta=1.0
"""

from __future__ import annotations

import argparse

import torch

import invdiff
from invdiff import data, priors, problems
from invdiff.bench.stats import mean_ci
from invdiff.cli.solve import _hyperparameters
from invdiff.metrics.fidelity import psnr
from invdiff.metrics.perceptual import lpips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("solver")
    parser.add_argument("problems", nargs="+", help="problem presets")
    parser.add_argument("--nfe", nargs="+", type=int, default=[20, 50, 100])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--prior", default="fmnist32-pixel")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    solver = invdiff.solvers.get(args.solver)
    hyper = _hyperparameters(args.set, solver.defaults)
    prior = priors.load(args.prior)
    indices = list(range(args.images))
    x = data.get("fashion_mnist", split="val").images(indices)
    print(f"# {args.solver} {hyper or '(defaults)'}; {args.images} val images; prior {args.prior}")
    for name in args.problems:
        problem = problems.get(name)
        op = problem.operator("cpu")
        y = problem.measure(x, indices)
        cells = []
        for nfe in args.nfe:
            out = invdiff.solve(
                args.solver,
                prior=prior,
                operator=op,
                y=y,
                noise=problem.noise,
                nfe=nfe,
                generator=0,
                **hyper,
            )
            p = mean_ci(psnr(out, x).tolist())
            q = float(lpips(out, x).mean())
            cells.append(f"{nfe} NFE: {p.mean:.2f} ± {p.half_width:.2f} dB, LPIPS {q:.4f}")
        print(f"{name:26s} " + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
