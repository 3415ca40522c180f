"""Solver overhead: a solver run's wall time over the time of the network evaluations it makes.

For each solver, one batch (16 Fashion-MNIST test images on CPU) is solved with ``--steps`` steps;
``prior.nfe`` counts the network evaluations. In the same run the network alone is timed for the
same count: ``prior.x0`` forward on a batch of the same shape (plus a backward through it for the
solvers that differentiate the prior, ``differentiates_prior``), right after the solver run, in
``--repeats`` rounds; the ratio is the median over the rounds of each round's solver time over its
network time (the range over rounds beside it), the solver's
overhead factor (target <= 1.05 on CPU: the solver's own arithmetic should cost little next to
the network). For the latent solvers the decoder and encoder calls they make are counted and
timed as network evaluations too.

    python scripts/bench_solver_speed.py                          # zoo/fmnist32-pixel if shipped
    python scripts/bench_solver_speed.py --prior runs/fmnist32-pixel/prior \
        --latent-prior runs/fmnist32-latent/prior
    python scripts/bench_solver_speed.py --solvers diffpir daps --steps 10 --batch 4
    python scripts/bench_solver_speed.py --precision bf16        # the same table in bf16
    python scripts/bench_solver_speed.py --unet256 --solvers     # only the 256x256 table

``--unet256`` adds a table on a 256x256 UNet of the size of the FFHQ-256 models the papers use
(random weights: time and memory only, quality is not meaningful): time per network evaluation
and peak memory of DPS (fp32 / bf16, with and without gradient checkpointing) and DDRM (fp32 /
bf16), each a short real solver run. The variants run interleaved in rounds (order reversed
every other round) and the median is kept. Peak memory is the resident set on the CPU (reset
per run through ``/proc/self/clear_refs``, so it includes the weights and the libraries) and
the allocator's peak on a GPU.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

import invdiff
from invdiff.bench import memory
from invdiff.noise import Gaussian
from invdiff.priors import ConditionalPrior, kind_of
from invdiff.solvers import SolverMismatchError


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


def pick_operator(solver, prior, noise, image_size: int, channels: int, device):  # noqa: ANN001
    """The first of super-resolution x2 (average pooling, then SR3's bicubic resizing) / random
    inpainting that the solver accepts with this prior and noise (its declared ``check``)."""
    shape = (channels, image_size, image_size)
    candidates = [
        invdiff.operators.get("super_resolution", in_shape=shape, factor=2),
        invdiff.operators.get("bicubic_resize", in_shape=shape, factor=2),
        invdiff.operators.get(
            "inpainting_random", in_shape=shape, generator=torch.Generator().manual_seed(0)
        ),
    ]
    for op in candidates:
        try:
            solver.check(prior, op, noise)
        except SolverMismatchError:
            continue
        return op.to(device)
    return None


def ffhq256_unet():  # noqa: ANN201 - a diffusers UNet2DModel
    """A UNet of the FFHQ-256 models' size with random weights: 6 levels of 128-128-256-256-512-512
    channels, attention at 16x16, 2 residual blocks per level (the layout of diffusers' DDPM
    CelebA-HQ / FFHQ 256 checkpoints)."""
    from diffusers import UNet2DModel

    torch.manual_seed(0)  # diffusers initialises from the global generator; a script
    return UNet2DModel(
        sample_size=256,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 128, 256, 256, 512, 512),
        layers_per_block=2,
        down_block_types=(
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "DownBlock2D",
            "AttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "AttnUpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
            "UpBlock2D",
        ),
    )


def _unet256_problem(args: argparse.Namespace, device: torch.device):  # noqa: ANN202
    from diffusers import DDPMScheduler

    from invdiff.priors.pixel import PixelPrior

    unet = ffhq256_unet().to(device)
    prior = PixelPrior(unet, DDPMScheduler(num_train_timesteps=1000), name="ffhq256-random")
    shape = (3, 256, 256)
    op = invdiff.operators.get(
        "inpainting_random", in_shape=shape, generator=torch.Generator().manual_seed(0)
    ).to(device)
    x = torch.rand((args.unet256_batch, *shape), generator=torch.Generator().manual_seed(0))
    x = (x * 2 - 1).to(device)
    noise = Gaussian(0.05)
    with torch.no_grad():
        y = noise(op(x), torch.Generator(device="cpu").manual_seed(1))
    return prior, op, y, noise


def _unet256_run(prior, op, y, noise, variant: tuple, steps: int, device) -> tuple[float, int]:  # noqa: ANN001
    solver, precision, ckpt = variant
    prior.configure(precision=precision, gradient_checkpointing=ckpt)
    prior.nfe = 0
    start = time.perf_counter()
    invdiff.solve(
        solver,
        prior=prior,
        operator=op,
        y=y,
        noise=noise,
        steps=steps,
        generator=torch.Generator(device=device).manual_seed(0),
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, prior.nfe


def memory_probe(args: argparse.Namespace, device: torch.device) -> None:
    """One solver step of one variant in this (fresh) process; prints the resident set before
    the solve (weights, libraries, data) and its peak, or the device allocator's figures.

    A fresh process per variant because the C allocator keeps freed memory mapped: in a process
    that ran another variant before, the resident peak would show that variant's high water."""
    solver, precision, ckpt = args.memory_probe
    prior, op, y, noise = _unet256_problem(args, device)
    memory.reset_peak(device)  # the peak restarts at what is resident now
    base = memory.peak_mb(device)
    _unet256_run(prior, op, y, noise, (solver, precision, ckpt == "1"), 1, device)
    print(f"probe {base:.1f} {memory.peak_mb(device):.1f}")


def unet256_table(args: argparse.Namespace, device: torch.device) -> None:
    """Time per NFE and peak memory of DPS and DDRM on the 256x256 network (module docstring)."""
    import subprocess

    prior, op, y, noise = _unet256_problem(args, device)
    params = sum(p.numel() for p in prior.unet.parameters())
    variants = [
        ("dps", "fp32", False),
        ("dps", "fp32", True),
        ("dps", "bf16", False),
        ("dps", "bf16", True),
        ("ddrm", "fp32", False),
        ("ddrm", "bf16", False),
    ]
    print(
        f"# 256x256 UNet, random weights, {params / 1e6:.1f}M parameters; batch "
        f"{args.unet256_batch}, {args.unet256_steps} steps per timed run, {args.repeats} "
        "interleaved rounds (median); random 70% inpainting, sigma_y = 0.05"
    )
    for v in (variants[0], variants[2], variants[4], variants[5]):  # warm-up per dtype
        _unet256_run(prior, op, y, noise, v, 1, device)
    walls: dict[tuple, list[float]] = {v: [] for v in variants}
    nfes: dict[tuple, int] = {}
    for r in range(args.repeats):
        for v in variants if r % 2 == 0 else list(reversed(variants)):
            wall, nfe = _unet256_run(prior, op, y, noise, v, args.unet256_steps, device)
            walls[v].append(wall / max(nfe, 1))
            nfes[v] = nfe
    del prior
    base, peaks = {}, {}
    for v in variants:  # memory: one step per variant, each in a fresh process
        solver, precision, ckpt = v
        cmd = [sys.executable, __file__, "--memory-probe", solver, precision, str(int(ckpt))]
        cmd += ["--device", str(device), "--unet256-batch", str(args.unet256_batch)]
        cmd += ["--threads", str(torch.get_num_threads())]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in done.stdout.splitlines() if x.startswith("probe ")), None)
        if line is None:
            print(f"# memory probe {v} failed: {done.stderr.strip().splitlines()[-1:]}")
            base[v] = peaks[v] = math.nan
            continue
        base[v], peaks[v] = (float(a) for a in line.split()[1:])
    what = "allocated" if device.type == "cuda" else "resident"
    print(
        f"{'solver':<6} {'precision':<9} {'ckpt':<5} {'nfe':>4} {'s/NFE':>7} "
        f"{'peak_MB':>8} {'step_MB':>8}   ({what}; step_MB = peak - before the solve)"
    )
    for v in variants:
        solver, precision, ckpt = v
        print(
            f"{solver:<6} {precision:<9} {'yes' if ckpt else 'no':<5} {nfes[v]:>4} "
            f"{statistics.median(walls[v]):>7.2f} {peaks[v]:>8.0f} {peaks[v] - base[v]:>8.0f}",
            flush=True,
        )
    for precision in ("fp32", "bf16"):
        a, b = ("dps", precision, False), ("dps", precision, True)
        print(
            f"# DPS {precision}: with checkpointing a step needs {peaks[b] - base[b]:.0f} MB "
            f"over the resident weights vs {peaks[a] - base[a]:.0f} MB without; time per NFE "
            f"x{statistics.median(walls[b]) / statistics.median(walls[a]):.2f}"
        )


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
    parser.add_argument("--repeats", type=int, default=3, help="timings repeated, the minimum kept")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="the priors' precision"
    )
    parser.add_argument("--unet256", action="store_true", help="add the 256x256 UNet table")
    parser.add_argument("--unet256-batch", type=int, default=1, help="batch of that table")
    parser.add_argument("--unet256-steps", type=int, default=2, help="solver steps per run")
    parser.add_argument("--memory-probe", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_probe:
        memory_probe(args, device)
        return 0
    if args.solvers == []:  # `--solvers` with no name: only the 256x256 table
        if args.unet256:
            unet256_table(args, device)
        return 0
    priors = {"pixel": invdiff.priors.load(args.prior, device=device)}
    decodes = encodes = None
    if args.latent_prior:
        priors["latent"] = invdiff.priors.load(args.latent_prior, device=device)
        decodes = CallCounter(priors["latent"], "decode")
        encodes = CallCounter(priors["latent"], "encode")
    if args.sr3_prior:
        priors["sr3"] = invdiff.priors.load(args.sr3_prior, device=device)
    for p in priors.values():
        p.configure(precision=args.precision)
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
        f"# device={device} threads={torch.get_num_threads()} batch={args.batch} "
        f"steps={args.steps} precision={args.precision}"
    )
    print(f"{'solver':<12} {'nfe':>5} {'solver_s':>9} {'network_s':>9} {'ratio':>6} {'rounds':>10}")
    names = args.solvers or invdiff.solvers.names()
    worst = 0.0
    for name in names:
        solver = invdiff.solvers.get(name)
        req = solver.requires_prior
        kind = kind_of(req)
        if kind not in priors:
            print(f"{name:<12} skipped (no {kind} prior given)")
            continue
        prior = priors[kind]
        op = pick_operator(solver, prior, noise, size, c, device)
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
        ratios: list[float] = []  # per round: the solver and its network timed back to back
        gen = torch.Generator(device="cpu").manual_seed(0)
        for _ in range(args.repeats):  # several rounds: the machine may be shared
            prior.nfe = 0
            if decodes is not None:
                decodes.reset()
                encodes.reset()
            start = time.perf_counter()
            run(args.steps)
            if device.type == "cuda":
                torch.cuda.synchronize()
            run_s = time.perf_counter() - start
            solver_s = min(solver_s, run_s)
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
            ratios.append(run_s / net)
        if nfe == 0:
            print(f"{name:<12} {nfe:>5} {solver_s:>9.3f} {'-':>9} {'-':>6}  (no network)")
            continue
        # the median over rounds of each round's ratio: a slow moment of a shared machine
        # lands on one round's pair, not on the minimum of one side only
        ratio = statistics.median(ratios)
        worst = max(worst, ratio)
        flag = "" if ratio <= 1.05 else "  > 1.05"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(
            f"{name:<12} {nfe:>5} {solver_s:>9.3f} {net_s:>9.3f} {ratio:>6.2f} {spread:>10}{flag}",
            flush=True,
        )
    print(f"# worst ratio {worst:.2f} (target <= 1.05)")
    if args.unet256:
        unet256_table(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
