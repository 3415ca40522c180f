"""Solver overhead: a solver run's wall time over the time of the network evaluations it makes.

For each solver, one batch (16 Fashion-MNIST test images on CPU) is solved with ``--steps`` steps;
``prior.nfe`` counts the network evaluations. In the same run the network alone is timed for the
same count: ``prior.x0`` forward on a batch of the same shape (plus a backward through it for the
solvers that differentiate the prior, ``differentiates_prior``). The ratio is the solver's
overhead factor (target <= 1.15 on CPU: the solver's own arithmetic should cost little next to
the network). For the latent solvers the decoder and encoder calls they make are counted and
timed as network evaluations too.

    python scripts/bench_solver_speed.py                          # zoo/fmnist32-pixel if shipped
    python scripts/bench_solver_speed.py --prior runs/fmnist32-pixel/prior \
        --latent-prior runs/fmnist32-latent/prior
    python scripts/bench_solver_speed.py --solvers diffpir daps --steps 10 --batch 4
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import invdiff
from invdiff.noise import Gaussian
from invdiff.priors.base import ConditionalPrior, LatentPrior


def network_time(prior, shape, count: int, backward: bool, device) -> float:  # noqa: ANN001
    """Seconds for ``count`` evaluations of ``prior.x0`` (with a backward pass if asked)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=g).to(device)
    cond = torch.zeros_like(x) if isinstance(prior, ConditionalPrior) else None  # SR3's input
    sigmas = prior.sigmas.double().cpu()
    levels = sigmas[torch.linspace(len(sigmas) - 1, 0, max(count, 1)).round().long()].tolist()
    start = time.perf_counter()
    for s in levels[:count]:
        if backward:
            with torch.enable_grad():
                xi = x.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(prior.x0(xi, s, cond).square().sum(), xi)
        else:
            with torch.no_grad():
                prior.x0(x, s, cond)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def autoencoder_time(fn, x: torch.Tensor, forward_only: int, with_backward: int, device) -> float:  # noqa: ANN001
    """Seconds for ``forward_only`` calls of ``fn`` (the decoder or the encoder) and
    ``with_backward`` calls with a backward pass, on an input like ``x``."""
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(forward_only):
            fn(x)
    for _ in range(with_backward):
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            torch.autograd.grad(fn(xi).square().sum(), xi)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


class CallCounter:
    """Counts calls of a latent prior's ``decode`` or ``encode``, split by whether a backward
    pass will go through them (autograd recording on an input that requires grad)."""

    def __init__(self, prior, method: str):  # noqa: ANN001
        self.original = getattr(prior, method)
        self.forward_only = self.with_backward = 0
        setattr(prior, method, self)

    def __call__(self, x):  # noqa: ANN001, ANN204
        if torch.is_grad_enabled() and x.requires_grad:
            self.with_backward += 1
        else:
            self.forward_only += 1
        return self.original(x)

    def reset(self) -> None:
        self.forward_only = self.with_backward = 0


def pick_operator(solver, image_size: int, channels: int, device):  # noqa: ANN001
    """The first of super-resolution x2 / random inpainting that the solver accepts."""
    shape = (channels, image_size, image_size)
    candidates = [
        invdiff.operators.get("super_resolution", in_shape=shape, factor=2),
        invdiff.operators.get(
            "inpainting_random", in_shape=shape, generator=torch.Generator().manual_seed(0)
        ),
    ]
    for op in candidates:
        if isinstance(op, solver.requires_operator) and (
            solver.registry_name != "repaint" or type(op).is_inpainting
        ):
            return op.to(device)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prior", default="fmnist32-pixel", help="pixel prior (zoo name or folder)"
    )
    parser.add_argument(
        "--latent-prior", default=None, help="latent prior for latent_dps/psld/latent_daps"
    )
    parser.add_argument("--sr3-prior", default=None, help="SR3 prior (factor 2) for sr3")
    parser.add_argument(
        "--solvers", nargs="*", default=None, help="solvers to time (default: all that fit)"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=2, help="timings repeated, the minimum kept")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    priors = {"pixel": invdiff.priors.load(args.prior, device=device)}
    decodes = encodes = None
    if args.latent_prior:
        priors["latent"] = invdiff.priors.load(args.latent_prior, device=device)
        decodes = CallCounter(priors["latent"], "decode")
        encodes = CallCounter(priors["latent"], "encode")
    if args.sr3_prior:
        priors["sr3"] = invdiff.priors.load(args.sr3_prior, device=device)
    pixel = priors["pixel"]
    c, size = pixel.in_shape[0], pixel.in_shape[-1]
    data = invdiff.data.get("fashion_mnist", split="test")
    x = data.images(range(args.batch)).to(device)
    noise = Gaussian(0.05)
    # per-solver settings that keep one run short while exercising the solver's loop
    hyper = {
        "daps": {"ode_steps": 2, "langevin_steps": 20},
        "latent_daps": {"ode_steps": 2, "langevin_steps": 20},
    }

    print(
        f"# device={device} threads={torch.get_num_threads()} batch={args.batch} steps={args.steps}"
    )
    print(f"{'solver':<12} {'nfe':>5} {'solver_s':>9} {'network_s':>9} {'ratio':>6}")
    names = args.solvers or invdiff.solvers.names()
    worst = 0.0
    for name in names:
        solver = invdiff.solvers.get(name)
        req = solver.requires_prior
        kind = (
            "sr3"
            if issubclass(req, ConditionalPrior)
            else "latent"
            if issubclass(req, LatentPrior)
            else "pixel"
        )
        if kind not in priors:
            print(f"{name:<12} skipped (no {kind} prior given)")
            continue
        prior = priors[kind]
        op = pick_operator(solver, size, c, device)
        if op is None:
            print(f"{name:<12} skipped (needs an operator this benchmark does not build)")
            continue
        with torch.no_grad():
            y = noise(op(x), torch.Generator(device="cpu").manual_seed(1).manual_seed(1))
        kw = hyper.get(name, {})

        def run(steps: int, name=name, prior=prior, op=op, y=y, kw=kw):  # noqa: ANN001, ANN202
            return invdiff.solve(
                name,
                prior=prior,
                operator=op,
                y=y,
                noise=noise,
                steps=steps,
                generator=torch.Generator(device=device).manual_seed(0),
                **kw,
            )

        try:
            run(2)  # warm-up (allocations, lazy initialisation)
        except Exception as err:  # noqa: BLE001 - a benchmark reports and moves on
            print(f"{name:<12} failed: {type(err).__name__}: {err}")
            continue
        solver_s = net_s = math.inf
        gen = torch.Generator(device="cpu").manual_seed(0)
        for _ in range(args.repeats):  # the minimum of a few runs: the machine may be shared
            prior.nfe = 0
            if decodes is not None:
                decodes.reset()
                encodes.reset()
            start = time.perf_counter()
            run(args.steps)
            if device.type == "cuda":
                torch.cuda.synchronize()
            solver_s = min(solver_s, time.perf_counter() - start)
            nfe = prior.nfe
            if nfe == 0:
                break
            net = network_time(
                prior, (args.batch, *prior.in_shape), nfe, solver.differentiates_prior, device
            )
            if kind == "latent":  # the autoencoder is a network too: time the calls made
                z = torch.randn((args.batch, *prior.in_shape), generator=gen).to(device)
                net += autoencoder_time(
                    decodes.original, z, decodes.forward_only, decodes.with_backward, device
                )
                xs = torch.randn((args.batch, *prior.image_shape), generator=gen).to(device)
                net += autoencoder_time(
                    encodes.original, xs, encodes.forward_only, encodes.with_backward, device
                )
            net_s = min(net_s, net)
        if nfe == 0:
            print(f"{name:<12} {nfe:>5} {solver_s:>9.3f} {'-':>9} {'-':>6}  (no network)")
            continue
        ratio = solver_s / net_s
        worst = max(worst, ratio)
        flag = "" if ratio <= 1.15 else "  > 1.15"
        print(f"{name:<12} {nfe:>5} {solver_s:>9.3f} {net_s:>9.3f} {ratio:>6.2f}{flag}", flush=True)
    print(f"# worst ratio {worst:.2f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
