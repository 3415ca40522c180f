"""How solvers weigh the components of a multimodal posterior (Gaussian-mixture test bed).

The exact posterior of a Gaussian mixture is a mixture with reweighted components
(``GaussianMixturePrior.posterior``). This prints, per setting, the exact posterior weights
and, for each solver, the share of its samples that the prior mixture assigns to each
component (the most likely component per sample). Solvers that approximate ``p(y | x_t)`` by a
Gaussian around the denoiser's mean choose the mode at high noise levels, where that
approximation is loose, and cannot reweigh modes afterwards; this is where they stay far from
the exact posterior (``benchmarks/results/posterior/grid.txt``, ``m16 sr2``).

    python3 scripts/posterior_modes.py --mixture m16 --operator sr2 --sigmas 0.01 0.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from solver_testbed import make_gmm_prior, make_problem, run_solver  # noqa: E402

#: solver -> steps (the larger step count of the posterior report)
STEPS = {"ddrm": 40, "ddnm": 100, "pigdm": 100, "diffpir": 100, "dps": 500, "daps": 100}


def component_shares(prior, x: torch.Tensor) -> list[float]:
    """The share of samples whose most likely prior component is each component."""
    mix = prior.mixture
    flat = x.flatten(1).double()
    logp = (
        torch.stack(
            [
                torch.distributions.MultivariateNormal(
                    mix.means[k].double(), mix.covs[k].double()
                ).log_prob(flat)
                for k in range(len(mix.weights))
            ],
            1,
        )
        + mix.weights.double().log()
    )
    best = logp.argmax(1)
    return [float((best == k).double().mean()) for k in range(len(mix.weights))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mixture", default="m16")
    parser.add_argument("--operator", default="sr2")
    parser.add_argument("--sigmas", nargs="*", type=float, default=[0.01, 0.05, 0.1])
    parser.add_argument("--solvers", nargs="*", default=list(STEPS))
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args(argv)
    prior = make_gmm_prior(args.mixture)
    print(
        f"# python3 scripts/posterior_modes.py --mixture {args.mixture} --operator "
        f"{args.operator}  (n = {args.n}, truth 1)"
    )
    for sigma_y in args.sigmas:
        problem = make_problem(args.operator, sigma_y, prior=prior, truth=1)
        post = prior.posterior(problem.matrix, sigma_y, problem.y)
        exact = problem.posterior_samples(args.n, seed=1000)
        print(
            f"sigma_y {sigma_y}: prior weights "
            f"{' '.join(f'{float(w):.3f}' for w in prior.mixture.weights)}"
        )
        print(f"  {'exact weights':<16}{' '.join(f'{float(w):.3f}' for w in post.weights)}")
        rows = [("exact samples", exact)]
        rows += [
            (f"{s} ({STEPS[s]})", run_solver(s, problem, args.n, STEPS[s])) for s in args.solvers
        ]
        for label, x in rows:
            print(f"  {label:<16}{' '.join(f'{w:.3f}' for w in component_shares(prior, x))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
