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

Prints PSNR / LPIPS (mean over images) and wall time per solver pair, and the ratios.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

import invdiff
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
    parser.add_argument("--images", type=int, default=32, help="number of test images")
    parser.add_argument("--steps", type=int, default=50, help="network evaluations per solver")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    args = parser.parse_args(argv)

    import deepinv as dinv
    import numpy as np

    from invdiff.priors.zoo import ZOO_DIR

    device = torch.device(args.device)
    folder = ZOO_DIR / args.prior if args.prior in invdiff.priors.names() else args.prior
    prior = invdiff.priors.load(folder, device=device)
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

    physics = dinv.physics.Inpainting(
        img_size=tuple(x.shape[1:]),
        mask=mask,
        noise_model=dinv.physics.GaussianNoise(sigma=noise.sigma / 2),
        device=device,
    )
    y01 = mask * to_unit(y)  # deepinv's y: the masked [0, 1] image
    den, unet, how = deepinv_denoiser(folder, prior, device)
    theirs_count = NFECounter(unet)
    ours_count = NFECounter(prior.unet) if unet is not prior.unet else theirs_count
    print(
        f"# prior={folder} problem={args.problem} images={args.images} steps={args.steps} "
        f"deepinv via {how}"
    )

    lp = None
    if not args.no_lpips:
        try:
            lp = invdiff.metrics.lpips
            lp(x[:1], x[:1])
        except Exception as err:  # noqa: BLE001
            print(f"# LPIPS unavailable: {err}")
            lp = None

    def ours(name: str, **hyper):  # noqa: ANN202
        return invdiff.solve(
            name,
            prior=prior,
            operator=op,
            y=y,
            noise=noise,
            steps=args.steps,
            generator=torch.Generator(device=device).manual_seed(args.seed),
            **hyper,
        )

    def theirs_dps():  # noqa: ANN202
        model = dinv.sampling.DPS(den, num_steps=args.steps, device=device, dtype=torch.float32)
        return from_unit(model(y01, physics, seed=args.seed, denoise_output=False))

    def theirs_ddrm():  # noqa: ANN202
        torch.manual_seed(args.seed)  # deepinv's DDRM draws from the global generator
        model = dinv.sampling.DDRM(den, sigmas=np.linspace(1, 0, args.steps))
        return from_unit(model(y01, physics, seed=args.seed))

    def theirs_diffpir():  # noqa: ANN202
        torch.manual_seed(args.seed)
        model = dinv.sampling.DiffPIR(
            den,
            dinv.optim.data_fidelity.L2(),
            sigma=noise.sigma / 2,
            max_iter=args.steps,
            zeta=0.3,
            lambda_=7.0,
            device=device,
        )
        return from_unit(model(y01, physics, seed=args.seed))

    pairs = [
        ("dps", lambda: ours("dps"), theirs_dps),
        ("ddrm", lambda: ours("ddrm"), theirs_ddrm),
        ("diffpir", lambda: ours("diffpir", zeta=0.3, lam=7.0), theirs_diffpir),
    ]
    print(f"{'solver':<8} {'lib':<8} {'nfe':>5} {'psnr':>6} {'lpips':>6} {'wall_s':>7}")
    for name, a, b in pairs:
        row = {}
        for lib, fn in (("invdiff", a), ("deepinv", b)):
            counter = ours_count if lib == "invdiff" else theirs_count
            counter.count = 0
            start = time.perf_counter()
            try:
                with torch.no_grad() if name != "dps" else torch.enable_grad():
                    out = fn().detach().clamp(-1, 1)
            except Exception as err:  # noqa: BLE001 - report and go on
                print(f"{name:<8} {lib:<8} failed: {type(err).__name__}: {err}")
                continue
            wall = time.perf_counter() - start
            psnr = float(invdiff.metrics.psnr(out, x).mean())
            lpips = float(lp(out, x).mean()) if lp is not None else math.nan
            row[lib] = (psnr, lpips, wall)
            print(
                f"{name:<8} {lib:<8} {counter.count:>5} {psnr:>6.2f} {lpips:>6.3f} {wall:>7.2f}",
                flush=True,
            )
        if len(row) == 2:
            (p1, l1, w1), (p2, l2, w2) = row["invdiff"], row["deepinv"]
            print(
                f"{name:<8} ratio    dPSNR={p1 - p2:+.2f} dB  LPIPS {l1 / l2:.2f}x  "
                f"wall {w1 / w2:.2f}x (invdiff/deepinv)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
