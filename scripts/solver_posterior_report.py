"""Every solver against the exact posterior on the Gaussian-mixture test bed, over a grid.

Settings: the mixtures of ``tests/solver_testbed.MIXTURES`` (16-d / 4 components and an
anisotropic 24-d / 6 components), four linear operators with different spreads of singular
values (random inpainting, a dense compressed-sensing matrix, 2x average pooling, a 3 x 3
Gaussian blur), and colorization on the colour mixture ``c24`` (3 x 2 x 4 images),
``sigma_y`` 0.01 / 0.05 / 0.1, and two step counts per solver. For each
setting and solver the report prints, from ``n`` samples for one ``y``:

* ``ratio``: sliced-Wasserstein distance to exact posterior samples over the prior's
  (0 is exact, 1 is as far as ignoring ``y``); ``floor`` is two exact sample sets';
* ``mean``: distance of the sample mean to the exact posterior mean over the prior mean's;
* ``spread``: RMS per-coordinate standard deviation over the exact posterior's;
* ``resid``: RMS ``A x - y`` over the exact samples' (below 1: over-fits the noise).

The latent solvers run on ``latent``, the linear-decoder latent mixture of
``solver_testbed.make_latent_prior`` (8-d latents decoded into 4 x 4 images, exact posterior);
``latent_dps:paper`` and ``psld:paper`` are their released steps (``likelihood="paper"``),
``latent_daps:sigma_y`` latent DAPS with ``tau = sigma_y`` and a step size for these latents.

    python3 scripts/solver_posterior_report.py                       # the full grid
    python3 scripts/solver_posterior_report.py --solvers pigdm --mixtures m24 --n 128
    python3 scripts/solver_posterior_report.py --mixtures latent     # the latent rows
    python3 scripts/solver_posterior_report.py --mixtures c24        # colorization rows
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_testbed import (  # noqa: E402
    MIXTURES,
    OPERATOR_KINDS,
    SIGMA_YS,
    image_shape,
    make_gmm_prior,
    make_latent_prior,
    make_problem,
    posterior_fit,
)

import invdiff  # noqa: E402
from invdiff.solvers import SolverMismatchError  # noqa: E402

#: two step counts per solver (the second doubles the first): its paper setting where a CPU
#: affords it, else fewer
STEPS = {
    "dps": (250, 500),
    "repaint": (25, 50),
    "ddrm": (20, 40),
    "ddnm": (50, 100),
    "pigdm": (50, 100),
    "diffpir": (50, 100),
    "daps": (50, 100),
    "red_diff": (100, 200),
    "pinv": (1,),
    "tikhonov": (100,),
    "tv": (300,),
    "latent_dps": (50, 100),
    "psld": (50, 100),
    "latent_daps": (20, 40),
}
#: solvers that need a prior this test bed does not have (conditional)
SKIP = ("sr3",)
#: the latent test double's mixture name, and the solvers run on it (with their variants)
LATENT = "latent"
LATENT_SOLVERS = ("latent_dps", "psld", "latent_daps")
#: row name -> (solver, hyperparameters): the released steps beside the defaults
VARIANTS = {
    "latent_dps:paper": ("latent_dps", {"likelihood": "paper"}),
    "psld:paper": ("psld", {"likelihood": "paper"}),
    # the likelihood at sigma_y with a Langevin step sized for these 8-d latents (the
    # defaults are the paper's, for 64 x 64 x 4 latents: the chain barely moves here)
    "latent_daps:sigma_y": (
        "latent_daps",
        {"tau": None, "lr": 4e-4, "ode_steps": 2, "langevin_steps": 50, "sigma_min": 0.02},
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--solvers", nargs="*", default=None, help="default: all that apply")
    parser.add_argument("--operators", nargs="*", default=[*OPERATOR_KINDS, "colorization"])
    parser.add_argument("--mixtures", nargs="*", default=[*MIXTURES, LATENT])
    parser.add_argument("--sigmas", nargs="*", type=float, default=list(SIGMA_YS))
    parser.add_argument("--n", type=int, default=256, help="samples per run (one batch)")
    parser.add_argument("--truth", type=int, default=1, help="which clean image / noise draw")
    args = parser.parse_args(argv)
    names = args.solvers or [n for n in invdiff.solvers.names() if n not in SKIP]
    names += [v for v, (base, _) in VARIANTS.items() if base in names and not args.solvers]
    torch.set_num_threads(1)
    width = max(9, *map(len, names))
    print(f"# n = {args.n} samples per run, truth {args.truth}; columns per step count")
    print(
        f"{'mixture':<4} {'operator':<10} {'sigma_y':>7} {'solver':<{width}} {'floor':>5}  "
        "steps: ratio mean spread resid"
    )
    for mixture in args.mixtures:
        prior = make_latent_prior() if mixture == LATENT else make_gmm_prior(mixture)
        for kind in args.operators:
            if (kind == "colorization") != (image_shape(prior)[0] == 3):
                continue  # colorization needs colour images; the colour mixture is for it
            for sigma_y in args.sigmas:
                problem = make_problem(kind, sigma_y, prior=prior, truth=args.truth)
                for row in names:
                    name, hyper = VARIANTS.get(row, (row, {}))
                    if (mixture == LATENT) != (name in LATENT_SOLVERS):
                        continue  # a latent solver needs the latent double, the rest pixels
                    cells, floor = [], float("nan")
                    t0 = time.perf_counter()
                    for steps in STEPS.get(name, (50, 100)):
                        try:
                            fit = posterior_fit(name, problem, n=args.n, steps=steps, **hyper)
                        except SolverMismatchError:
                            cells = ["n/a"]
                            break
                        floor = fit.floor
                        cells.append(
                            f"{steps:>4}: {fit.ratio:5.2f} {fit.mean_error:5.2f} "
                            f"{fit.spread:5.2f} {fit.residual:5.2f}"
                        )
                    print(
                        f"{mixture:<4} {kind:<10} {sigma_y:>7} {row:<{width}} {floor:5.2f}  "
                        + " | ".join(cells)
                        + f"  ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
