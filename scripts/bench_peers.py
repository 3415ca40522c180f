"""invdiff against a peer library: DPS, DDRM and DiffPIR of invdiff and of deepinv 0.5.0.

Both sides use the same network (our pixel prior: the problem's, e.g. the zoo's
``fmnist32-pixel``, or ``emoji32-pixel`` for the colour ``emoji-*`` problems, or a folder), the
same test images, the same problem (``fmnist-random70`` by default: 70 % of the pixels missing,
sigma_y = 0.05 on [-1, 1]) and the same number of network evaluations (counted
by a forward hook on the UNet, so both libraries are measured the same way). deepinv sees the
network through ``deepinv.models.DiffusersDenoiserWrapper`` on the local folder, or (if that
cannot load offline) through ``InvdiffDenoiser``, a thin deepinv ``Denoiser`` calling our prior.
deepinv works on [0, 1] images. For a linear ``A`` the exact map of the measurement is
``y01 = (y + A(1)) / 2`` (``x = 2 x01 - 1`` gives ``y = 2 A(x01) - A(1) + n``), so deepinv
sees the same ``A`` on [0, 1] images with noise of std ``sigma_01 = sigma / 2``; its outputs
are mapped back to [-1, 1] before the metrics. (Clamping ``(y + 1) / 2`` to [0, 1] instead
changed 33 % of the observed entries on random70 and cut their noise std from 0.025 to 0.019.)
deepinv's own ``Inpainting`` physics is used for an inpainting problem; any other problem's
SVD operator is handed to deepinv as a ``DecomposablePhysics`` with our ``U``, ``V`` and
singular values (``SVDPhysics``), so both sides solve with the same ``A``.

DiffPIR's data weight: deepinv's proximal step ``prox_{gamma f}`` with ``f = ||A x - y||^2 / 2``
and ``gamma = 1 / (2 rho)``, ``rho = lambda_ sigma_01^2 / sigma_t^2``, is our
``argmin ||y - A x||^2 + rho_t ||x - x0||^2`` with ``rho_t = lambda_ sigma_y^2 / (2 sigma_t^2)``
(the [0, 1] / [-1, 1] scales cancel), while ours is ``rho_t = lam sigma_y^2 / r_t^2`` with
``r_t ~ sigma_t`` at low noise: deepinv's ``lambda_`` is ``2 lam``. ``--diffpir-lam`` sets
invdiff's ``lam`` and deepinv gets ``lambda_ = 2 lam`` (the paper's ``lambda_ = 7`` is
``lam = 3.5``); ``--diffpir-zeta`` goes to both.

``--set NAME=VALUE`` (or ``--set SOLVER.NAME=VALUE``) overrides a hyperparameter of invdiff's
solvers, e.g. ``--set grid=linear`` for the noise grid; deepinv's side is unchanged (its DDRM
walks sigma linearly from 1 to 0 on [0, 1] images, ``grid=linear`` here; its DiffPIR strides
the DDPM grid quadratically in the timestep). ``--problem`` and ``--steps`` take several
values; every (problem, steps) pair is one table block. The variant ``deepinv_full_noise`` runs
deepinv's DDRM with the noise of the paper's Eq. 7-8: deepinv draws it with ``std / sqrt(2)``
while it gives the denoiser the full level, which raises PSNR and not LPIPS.

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
    python scripts/bench_peers.py --images 32 --steps 20 50 100 --repeats 1 --threads 1 \
        --variants fp32 deepinv --solvers ddrm diffpir \
        --problem fmnist-random70 fmnist-sr4 fmnist-gaussian-deblur
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
from invdiff.cli.solve import _hyperparameters
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


class _FullNoiseNumpy:
    """numpy, except ``sqrt(2.0) = 1``: deepinv's DDRM with the paper's noise level (the
    ``deepinv_full_noise`` variant). Its only other ``np.sqrt`` is ``sqrt(1 - eta^2)``."""

    def __getattr__(self, name: str):  # noqa: ANN204
        import numpy

        return getattr(numpy, name)

    @staticmethod
    def sqrt(value):  # noqa: ANN001, ANN205
        import numpy

        return 1.0 if value == 2.0 else numpy.sqrt(value)


def svd_physics(op, sigma01: float, device):  # noqa: ANN001, ANN201
    """Our ``SVDOperator`` as a deepinv ``DecomposablePhysics``: ``A = U diag(s) V^T`` with the
    spectral coordinates kept at the input size ``n`` (``s`` padded with zeros), the layout
    deepinv's DDRM indexes (``U^T y``, ``V^T x`` and the mask share one shape)."""
    import deepinv as dinv

    m = op.num_measurements
    mask = op.pad_spectral(op.singular_values.to(device).reshape(1, -1).float())
    return dinv.physics.DecomposablePhysics(
        U=lambda z: op.U(z[:, :m]),
        U_adjoint=lambda y: op.pad_spectral(op.Ut(y)),
        V=op.V,
        V_adjoint=op.Vt,
        mask=mask,
        noise_model=dinv.physics.GaussianNoise(sigma=sigma01),
        device=device,
    )


def solver_settings(items: list[str], solvers: list[str]) -> dict[str, dict]:
    """``--set`` items (``NAME=VALUE`` for every solver, ``SOLVER.NAME=VALUE`` for one) parsed
    to each solver's declared types; a name a solver does not declare is an error."""
    out: dict[str, dict] = {}
    for name in solvers:
        defaults = invdiff.solvers.get(name).defaults
        mine = []
        for item in items:
            key = item.partition("=")[0]
            target, dot, short = key.rpartition(".")
            if dot and target != name:
                continue
            mine.append(item[len(target) + 1 :] if dot else item)
        out[name] = _hyperparameters(mine, defaults)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prior",
        default=None,
        help="pixel prior: zoo name or folder (default: the first problem's pixel prior, e.g. "
        "emoji32-pixel for the colour emoji-* problems)",
    )
    parser.add_argument(
        "--problem",
        nargs="+",
        default=["fmnist-random70"],
        help="problem presets with an SVD operator (one block each)",
    )
    parser.add_argument("--images", type=int, default=16, help="number of test images (one batch)")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=[50], help="network evaluations per solver"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=["fp32", "bf16", "compile", "deepinv"],
        help="fp32, bf16, compile, channels_last and '+' joins (bf16+compile), deepinv, "
        "deepinv_full_noise (deepinv's DDRM without its 1/sqrt(2) noise factor)",
    )
    parser.add_argument("--solvers", nargs="*", default=["dps", "ddrm", "diffpir"])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[SOLVER.]NAME=VALUE",
        help="an invdiff solver hyperparameter (repeatable), e.g. --set grid=linear",
    )
    parser.add_argument(
        "--diffpir-lam",
        type=float,
        default=3.5,
        help="invdiff DiffPIR's lam; deepinv gets lambda_ = 2 lam (3.5: the paper's 7)",
    )
    parser.add_argument("--diffpir-zeta", type=float, default=0.3, help="DiffPIR's zeta, both")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = solver_settings(args.set, args.solvers)
    if "diffpir" in settings:
        settings["diffpir"] = {
            "zeta": args.diffpir_zeta,
            "lam": args.diffpir_lam,
            **settings["diffpir"],
        }

    from invdiff.priors.zoo import ZOO_DIR

    device = torch.device(args.device)
    if args.prior is None:
        args.prior = invdiff.problems.get(args.problem[0]).priors["pixel"]
    folder = ZOO_DIR / args.prior if args.prior in invdiff.priors.names() else args.prior
    # one prior per invdiff variant, each from the same folder (the same weights)
    priors = {}
    for v in args.variants:
        if v.startswith("deepinv"):
            continue
        parts = v.split("+")  # e.g. bf16+compile, compile, fp32+channels_last
        precision = parts[0] if parts[0] in ("fp32", "bf16") else "fp32"
        priors[v] = invdiff.priors.load(folder, device=device).configure(
            precision=precision, compile="compile" in parts, channels_last="channels_last" in parts
        )
    fallback = priors.get("fp32") or invdiff.priors.load(folder, device=device)
    den, unet, how = deepinv_denoiser(folder, fallback, device)
    theirs_count = NFECounter(unet)
    print(
        f"# prior={folder} images={args.images} (one batch) repeats={args.repeats} "
        f"threads={torch.get_num_threads()} device={device} deepinv via {how} (fp32)"
    )
    print(f"# invdiff hyperparameters (others: defaults): {settings}")
    if "diffpir" in settings:
        print(
            f"# deepinv DiffPIR: lambda_ = 2 lam = {2 * settings['diffpir']['lam']:g}, "
            f"zeta = {settings['diffpir']['zeta']:g}; deepinv DDRM: sigmas = linspace(1, 0, steps)"
        )

    lp = None
    if not args.no_lpips:
        try:
            lp = invdiff.metrics.lpips
            probe = torch.zeros(1, 1, 32, 32)
            lp(probe, probe)
        except Exception as err:  # noqa: BLE001
            print(f"# LPIPS unavailable: {err}")
            lp = None

    print(
        f"{'problem':<23} {'solver':<8} {'variant':<14} {'nfe':>4} {'psnr':>6} {'lpips':>6} "
        f"{'wall_s':>7} {'min_s':>7} {'peak_MB':>8} {'vs_deepinv':>10} {'dPSNR_ref':>10} "
        f"{'dLPIPS_ref':>10}"
    )
    for problem_name in args.problem:
        for steps in args.steps:
            compare(args, problem_name, steps, priors, settings, den, theirs_count, lp, device)
    print(
        "# wall_s: median over the rounds; min_s: the fastest round; vs_deepinv: median wall "
        "over deepinv's; dPSNR_ref/dLPIPS_ref: against deepinv (for deepinv's row: against "
        "invdiff fp32) on the same images, +- the standard error of the paired PSNR difference"
    )
    return 0


def compare(args, problem_name, steps, priors, settings, den, theirs_count, lp, device):  # noqa: ANN001, ANN201, PLR0913
    """One table block: every solver and variant on ``problem_name`` at ``steps`` NFE."""
    import deepinv as dinv
    import numpy as np

    problem = invdiff.problems.get(problem_name)
    op = problem.operator(device)
    noise = problem.noise
    test = invdiff.data.for_shape(
        problem.dataset, split="test", size=problem.image_size, channels=problem.channels
    )
    x = test.images(range(args.images)).to(device)
    y = problem.measure(x, index=0, seed=args.seed, operator=op)
    sigma01 = float(noise.sigma) / 2
    if type(op).is_inpainting:
        mask = op.mask.to(device).expand(1, *x.shape[1:])[0]
        physics = dinv.physics.Inpainting(
            img_size=tuple(x.shape[1:]),
            mask=mask,
            noise_model=dinv.physics.GaussianNoise(sigma=sigma01),
            device=device,
        )
    elif isinstance(op, invdiff.operators.SVDOperator):
        physics = svd_physics(op, sigma01, device)
    else:
        raise SystemExit(f"{problem_name}: the comparison needs an SVD operator")
    # the exact [0, 1] measurement of a linear A: y01 = A(x01) + n / 2 = (y + A(1)) / 2
    with torch.no_grad():
        y01 = (y + op(torch.ones_like(x[:1]))) / 2

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

    def theirs(name: str, steps: int, full_noise: bool = False):  # noqa: ANN202
        if name == "dps":
            model = dinv.sampling.DPS(den, num_steps=steps, device=device, dtype=torch.float32)
            return from_unit(model(y01, physics, seed=args.seed, denoise_output=False))
        torch.manual_seed(args.seed)  # deepinv's DDRM and DiffPIR draw from the global generator
        if name == "ddrm":
            model = dinv.sampling.DDRM(den, sigmas=np.linspace(1, 0, steps))
            if not full_noise:
                return from_unit(model(y01, physics, seed=args.seed))
            # deepinv's DDRM draws its noise with std / sqrt(2) (np.sqrt(2.0)) while it tells
            # the denoiser the full level; the paper's Eq. 7-8 add the full level
            module = sys.modules[type(model).__module__]
            module.np = _FullNoiseNumpy()
            try:
                return from_unit(model(y01, physics, seed=args.seed))
            finally:
                module.np = np
        model = dinv.sampling.DiffPIR(
            den,
            dinv.optim.data_fidelity.L2(),
            sigma=sigma01,
            max_iter=steps,
            zeta=settings["diffpir"]["zeta"],
            lambda_=2 * settings["diffpir"]["lam"],
            device=device,
        )
        return from_unit(model(y01, physics, seed=args.seed))

    def runner(variant: str, name: str, steps: int):  # noqa: ANN202
        if variant.startswith("deepinv"):
            return lambda: theirs(name, steps, full_noise=variant == "deepinv_full_noise")
        return lambda: ours(priors[variant], name, steps, **settings.get(name, {}))

    def timed(variant: str, name: str, steps: int) -> tuple[torch.Tensor, float, float, int]:
        fn = runner(variant, name, steps)
        if variant.startswith("deepinv"):
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
        nfe = theirs_count.count if variant.startswith("deepinv") else priors[variant].nfe
        return out, wall, memory.peak_mb(device), nfe

    for name in args.solvers:
        # warm-up: allocations, lazy initialisation and, for the compiled variants, compilation
        for v in args.variants:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    timed(v, name, 2 if "compile" not in v else steps)
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
                    out, wall, peak, nfe = timed(v, name, steps)
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
            psnr = invdiff.metrics.psnr(out, x)
            lpips = lp(out, x) if lp is not None else torch.full_like(psnr, math.nan)
            rows[v] = (psnr, lpips, statistics.median(walls[v]), min(walls[v]), peak, nfe)
        ref = rows.get("deepinv")
        base = rows.get("fp32")
        for v, (psnr, lpips, wall, wmin, peak, nfe) in rows.items():
            ratio = f"{wall / ref[2]:.2f}x" if ref and v != "deepinv" else "-"
            other = base if v == "deepinv" else ref
            if other is not None:
                diff = psnr - other[0]
                se = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else 0.0
                dp = f"{float(diff.mean()):+.2f}+-{se:.2f}"
                dl = f"{float((lpips - other[1]).mean()):+.4f}"
            else:
                dp = dl = "-"
            print(
                f"{problem_name:<23} {name:<8} {v:<14} {nfe:>4} {float(psnr.mean()):>6.2f} "
                f"{float(lpips.mean()):>6.3f} {wall:>7.2f} {wmin:>7.2f} {peak:>8.0f} "
                f"{ratio:>10} {dp:>10} {dl:>10}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
