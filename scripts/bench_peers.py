"""invdiff against a peer library: DPS, DDRM and DiffPIR of invdiff and of deepinv 0.5.0.

Both sides use the same network (our pixel prior: the zoo's ``fmnist32-pixel`` or a folder),
the same Fashion-MNIST test images, the same problem (``fmnist-random70`` by default: 70 % of the
pixels missing, sigma_y = 0.05 on [-1, 1]) and the same number of network evaluations (counted
by a forward hook on the UNet, so both libraries are measured the same way). deepinv sees the
network through ``deepinv.models.DiffusersDenoiserWrapper`` on the local folder, or (if that
cannot load offline) through ``InvdiffDenoiser``, a thin deepinv ``Denoiser`` calling our prior.
deepinv works on [0, 1] images: y and sigma_y are converted (``sigma_01 = sigma / 2``) and
its outputs mapped back to [-1, 1] before the metrics.

    python scripts/bench_peers.py --prior runs/fmnist32-pixel/prior --images 4 --steps 50

Prints PSNR / LPIPS (mean over images), wall time and peak memory per solver and variant, and
the ratios to deepinv. Variants: invdiff's prior evaluated in fp32, in bf16 autocast and compiled
(``torch.compile``; the compilation is done in an untimed warm-up and reported on its own), and
deepinv with its own loop, unmodified, on the same fp32 network. The runs are interleaved: each
round runs every variant once, in an order reversed every other round, so that drift of a
shared machine falls on all variants alike; the median wall time over ``--repeats`` rounds is
reported. Peak memory is the resident set on the CPU (reset per run through
``/proc/self/clear_refs``) and the allocator's peak on a GPU.

    python scripts/bench_peers.py --images 16 --steps 50 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import torch

import invdiff
from invdiff.bench import memory
from invdiff.images import from_unit, to_unit


class NFECounter:
    """Counts forward calls of a module (the UNet), whoever calls it."""

    def __init__(self, module: torch.nn.Module):
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1


def deepinv_denoiser(folder: str, prior, device):  # noqa: ANN001, ANN201
    """deepinv's diffusers wrapper on the local folder; our thin wrapper if that fails."""
    import deepinv as dinv

    try:
        den = dinv.models.DiffusersDenoiserWrapper(mode_id=str(folder), device=device)
        from diffusers import UNet2DModel

        unet = next(m for m in den.modules() if isinstance(m, UNet2DModel))
        return den, unet, "DiffusersDenoiserWrapper"
    except Exception as err:  # noqa: BLE001 - fall back and say why
        print(
            f"# DiffusersDenoiserWrapper failed ({type(err).__name__}: {err}); "
            "using InvdiffDenoiser"
        )

    class InvdiffDenoiser(dinv.models.Denoiser):
        """deepinv's [0, 1] denoiser convention on top of our [-1, 1] sigma-space prior."""

        def forward(self, x, sigma, *args, **kwargs):  # noqa: ANN001, ANN201
            s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1) * 2
            s = s.expand(x.shape[0]) if s.numel() == 1 else s
            return to_unit(prior.x0(from_unit(x), s.clamp_min(prior.sigma_min)))

    return InvdiffDenoiser().to(device), prior.unet, "InvdiffDenoiser"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", default="fmnist32-pixel", help="pixel prior: zoo name or folder")
    parser.add_argument("--problem", default="fmnist-random70", help="an inpainting problem preset")
    parser.add_argument("--images", type=int, default=16, help="number of test images (one batch)")
    parser.add_argument("--steps", type=int, default=50, help="network evaluations per solver")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=["fp32", "bf16", "compile", "deepinv"],
        help="fp32, bf16, compile, channels_last and '+' joins (bf16+compile), deepinv",
    )
    parser.add_argument("--solvers", nargs="*", default=["dps", "ddrm", "diffpir"])
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    import deepinv as dinv
    import numpy as np

    from invdiff.priors.zoo import ZOO_DIR

    device = torch.device(args.device)
    folder = ZOO_DIR / args.prior if args.prior in invdiff.priors.names() else args.prior
    problem = invdiff.problems.get(args.problem)
    op = problem.operator(device)
    if not type(op).is_inpainting:
        raise SystemExit(
            f"{args.problem}: deepinv's Inpainting physics needs an inpainting problem"
        )
    noise = problem.noise
    x = invdiff.data.get(problem.dataset, split="test").images(range(args.images)).to(device)
    y = problem.measure(x, index=0, seed=args.seed, operator=op)
    mask = op.mask.to(device).expand(1, *x.shape[1:])[0]

    # one prior per invdiff variant, each from the same folder (the same weights)
    priors = {}
    for v in args.variants:
        if v == "deepinv":
            continue
        parts = v.split("+")  # e.g. bf16+compile, compile, fp32+channels_last
        precision = parts[0] if parts[0] in ("fp32", "bf16") else "fp32"
        priors[v] = invdiff.priors.load(folder, device=device).configure(
            precision=precision, compile="compile" in parts, channels_last="channels_last" in parts
        )
    physics = dinv.physics.Inpainting(
        img_size=tuple(x.shape[1:]),
        mask=mask,
        noise_model=dinv.physics.GaussianNoise(sigma=noise.sigma / 2),
        device=device,
    )
    y01 = mask * to_unit(y)  # deepinv's y: the masked [0, 1] image
    fallback = priors.get("fp32") or invdiff.priors.load(folder, device=device)
    den, unet, how = deepinv_denoiser(folder, fallback, device)
    theirs_count = NFECounter(unet)
    print(
        f"# prior={folder} problem={args.problem} images={args.images} (one batch) "
        f"steps={args.steps} repeats={args.repeats} threads={torch.get_num_threads()} "
        f"device={device} deepinv via {how} (fp32)"
    )

    lp = None
    if not args.no_lpips:
        try:
            lp = invdiff.metrics.lpips
            lp(x[:1], x[:1])
        except Exception as err:  # noqa: BLE001
            print(f"# LPIPS unavailable: {err}")
            lp = None

    def ours(prior, name: str, steps: int, **hyper):  # noqa: ANN001, ANN202
        return invdiff.solve(
            name,
            prior=prior,
            operator=op,
            y=y,
            noise=noise,
            steps=steps,
            generator=torch.Generator(device=device).manual_seed(args.seed),
            **hyper,
        )

    def theirs(name: str, steps: int):  # noqa: ANN202
        if name == "dps":
            model = dinv.sampling.DPS(den, num_steps=steps, device=device, dtype=torch.float32)
            return from_unit(model(y01, physics, seed=args.seed, denoise_output=False))
        torch.manual_seed(args.seed)  # deepinv's DDRM and DiffPIR draw from the global generator
        if name == "ddrm":
            model = dinv.sampling.DDRM(den, sigmas=np.linspace(1, 0, steps))
            return from_unit(model(y01, physics, seed=args.seed))
        model = dinv.sampling.DiffPIR(
            den,
            dinv.optim.data_fidelity.L2(),
            sigma=noise.sigma / 2,
            max_iter=steps,
            zeta=0.3,
            lambda_=7.0,
            device=device,
        )
        return from_unit(model(y01, physics, seed=args.seed))

    hyper = {"diffpir": {"zeta": 0.3, "lam": 7.0}}

    def runner(variant: str, name: str, steps: int):  # noqa: ANN202
        if variant == "deepinv":
            return lambda: theirs(name, steps)
        return lambda: ours(priors[variant], name, steps, **hyper.get(name, {}))

    def timed(variant: str, name: str, steps: int) -> tuple[torch.Tensor, float, float, int]:
        fn = runner(variant, name, steps)
        if variant == "deepinv":
            theirs_count.count = 0
        else:
            priors[variant].nfe = 0
        memory.reset_peak(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.no_grad() if name != "dps" else torch.enable_grad():
            out = fn().detach().clamp(-1, 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
        nfe = theirs_count.count if variant == "deepinv" else priors[variant].nfe
        return out, wall, memory.peak_mb(device), nfe

    print(
        f"{'solver':<8} {'variant':<14} {'nfe':>4} {'psnr':>6} {'lpips':>6} {'wall_s':>7} "
        f"{'min_s':>7} {'peak_MB':>8} {'vs_deepinv':>10} {'dPSNR_fp32':>10} {'dLPIPS_fp32':>11}"
    )
    for name in args.solvers:
        # warm-up: allocations, lazy initialisation and, for the compiled variants, compilation
        for v in args.variants:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    timed(v, name, 2 if "compile" not in v else args.steps)
                except Exception as err:  # noqa: BLE001 - report and go on
                    print(f"# {name} {v}: warm-up failed: {type(err).__name__}: {err}")
            for w in caught:
                print(f"# {name} {v}: {w.message}")
            if "compile" in v:
                print(
                    f"# {name} {v}: warm-up incl. compilation {time.perf_counter() - start:.1f} s"
                )
        walls: dict[str, list[float]] = {v: [] for v in args.variants}
        results: dict[str, tuple[torch.Tensor, float, int]] = {}
        for r in range(args.repeats):
            order = args.variants if r % 2 == 0 else list(reversed(args.variants))
            for v in order:
                try:
                    out, wall, peak, nfe = timed(v, name, args.steps)
                except Exception as err:  # noqa: BLE001
                    print(f"# {name} {v}: failed: {type(err).__name__}: {err}")
                    continue
                walls[v].append(wall)
                prev = results.get(v)
                results[v] = (out, max(peak, prev[1]) if prev else peak, nfe)
        rows = {}
        for v in args.variants:
            if v not in results:
                continue
            out, peak, nfe = results[v]
            psnr = float(invdiff.metrics.psnr(out, x).mean())
            lpips = float(lp(out, x).mean()) if lp is not None else math.nan
            rows[v] = (psnr, lpips, statistics.median(walls[v]), min(walls[v]), peak, nfe)
        ref = rows.get("deepinv")
        base = rows.get("fp32")
        for v, (psnr, lpips, wall, wmin, peak, nfe) in rows.items():
            ratio = f"{wall / ref[2]:.2f}x" if ref and v != "deepinv" else "-"
            dp = f"{psnr - base[0]:+.3f}" if base and v not in ("fp32", "deepinv") else "-"
            dl = f"{lpips - base[1]:+.4f}" if base and v not in ("fp32", "deepinv") else "-"
            print(
                f"{name:<8} {v:<14} {nfe:>4} {psnr:>6.2f} {lpips:>6.3f} {wall:>7.2f} "
                f"{wmin:>7.2f} {peak:>8.0f} {ratio:>10} {dp:>10} {dl:>11}",
                flush=True,
            )
    print(
        "# wall_s: median over the rounds; min_s: the fastest round; vs_deepinv: median wall "
        "over deepinv's; dPSNR/dLPIPS: against invdiff fp32 on the same images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
