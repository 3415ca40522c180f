"""Calibration of every solver on the Gaussian-mixture test bed, beside the exact sampler.

For ``--truths`` clean images drawn from the mixture prior, each measured once (``y = A x + n``),
every solver draws ``--k`` posterior samples per measurement (``invdiff.solve(..., samples=K)``,
one batch). The table gives the coverage of the truth by the samples' central credible
intervals at 50 / 90 / 95 % (``invdiff.metrics.posterior.coverage``: the randomised PIT, so
an exact sampler is nominal for any K), the calibration error (mean |coverage - level| over
the levels 0.05 ... 0.95) and the spread (RMS per-pixel standard deviation over the exact
sampler's). ``exact`` draws from the closed-form posterior: it shows the nominal rates and the
sampling noise of the table (about ``sqrt(l (1 - l) / (truths x pixels))``, inflated by the
correlation between the pixels of an image).

    python3 scripts/solver_calibration_report.py                    # m16, four operators
    python3 scripts/solver_calibration_report.py --mixtures m24 --operators cs --sigmas 0.1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_posterior_report import LATENT_SOLVERS, SKIP, STEPS  # noqa: E402
from solver_testbed import MIXTURES, OPERATOR_KINDS, make_gmm_prior, make_operator  # noqa: E402

import invdiff  # noqa: E402
from invdiff.metrics.posterior import LEVELS, calibration_curve, coverage  # noqa: E402
from invdiff.noise import Gaussian  # noqa: E402
from invdiff.solvers import SolverMismatchError  # noqa: E402


def exact_samples(prior, op, y: torch.Tensor, sigma_y: float, k: int, seed: int) -> torch.Tensor:  # noqa: ANN001
    g = torch.Generator().manual_seed(seed)
    matrix = op.matrix()
    draws = [
        prior.posterior(matrix, sigma_y, y[i : i + 1]).sample(k, g).float()
        for i in range(y.shape[0])
    ]
    return torch.stack(draws).view(y.shape[0], k, *prior.in_shape)


def row(name: str, samples: torch.Tensor, x: torch.Tensor, exact_spread: float, secs: float) -> str:
    cover = coverage(samples, x).mean(0).tolist()
    levels, curve = calibration_curve(samples, x)
    error = sum(abs(a - b) for a, b in zip(levels, curve)) / len(levels)
    spread = samples.std(1).pow(2).mean().sqrt().item() / exact_spread
    cells = " ".join(f"{c:6.3f}" for c in cover)
    return f"{name:<9} {cells} {error:7.3f} {spread:7.2f}  ({secs:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--solvers", nargs="*", default=None, help="default: all that apply")
    parser.add_argument("--operators", nargs="*", default=list(OPERATOR_KINDS))
    parser.add_argument("--mixtures", nargs="*", default=["m16"], choices=list(MIXTURES))
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0.05])
    parser.add_argument("--truths", type=int, default=128, help="measurements per setting")
    parser.add_argument("--k", type=int, default=32, help="posterior samples per measurement")
    args = parser.parse_args(argv)
    # the latent solvers need a latent prior: the mixture test bed is pixel-space
    names = args.solvers or [
        n for n in invdiff.solvers.names() if n not in SKIP and n not in LATENT_SOLVERS
    ]
    names = [n for n in names if n not in ("pinv", "tikhonov", "tv")]  # point estimates
    torch.set_num_threads(1)
    levels = " ".join(f"{int(lv * 100):>5}%" for lv in LEVELS)
    print(f"# truths = {args.truths} measurements per setting, K = {args.k} samples each")
    print(f"# columns: coverage at {levels.strip()}, calibration error, spread / exact's")
    for mixture in args.mixtures:
        prior = make_gmm_prior(mixture)
        for kind in args.operators:
            op = make_operator(kind, prior.in_shape)
            for sigma_y in args.sigmas:
                noise = Gaussian(sigma_y)
                g = torch.Generator().manual_seed(7)
                x = prior.sample(args.truths, g)
                with torch.no_grad():
                    y = noise(op(x), g)
                print(f"\n## {mixture} {kind} sigma_y={sigma_y}")
                print(f"{'solver':<9} {levels} {'error':>7} {'spread':>7}")
                t0 = time.perf_counter()
                exact = exact_samples(prior, op, y, sigma_y, args.k, seed=1)
                exact_spread = exact.std(1).pow(2).mean().sqrt().item()
                print(row("exact", exact, x, exact_spread, time.perf_counter() - t0), flush=True)
                for name in names:
                    steps = STEPS.get(name, (50, 100))[0]
                    t0 = time.perf_counter()
                    try:
                        samples = invdiff.solve(
                            name,
                            prior=prior,
                            operator=op,
                            y=y,
                            noise=noise,
                            steps=steps,
                            samples=args.k,
                            generator=torch.Generator().manual_seed(0),
                        )
                    except SolverMismatchError:
                        print(f"{name:<9} n/a")
                        continue
                    secs = time.perf_counter() - t0
                    print(row(name, samples, x, exact_spread, secs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
