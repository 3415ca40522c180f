"""Degrade a bundled photo with several forward operators and write a figure (``invdiff demo``).

The photo (scikit-image's astronaut by default, RGB, ``--size`` pixels) goes through box and
random inpainting, Gaussian and motion blur, 4x super-resolution, colorization, phase retrieval
(Fourier magnitude), HDR saturation and a nonlinear blur, each with Gaussian measurement noise
``sigma_y`` (default 0.05, quoted in the [-1, 1] image range, i.e. 0.025 on [0, 1] images).
For the linear operators the pseudo-inverse ``A^+ y`` is shown too: what "solving" the problem
means without any prior. Writes ``demo.png`` (the figure), ``clean.png`` and, per operator,
``<name>_y.png`` and ``<name>_pinv.png`` into ``--out``, and prints a summary.

    invdiff demo --out demo/
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

#: operator name -> keyword arguments given the image size (kernels scale with the image)
DEMO_OPERATORS: dict[str, object] = {
    "inpainting_box": lambda size, seed: {},
    "inpainting_random": lambda size, seed: {"missing": 0.7, "seed": seed},
    "gaussian_blur": lambda size, seed: {"size": 2 * (size // 12) + 1, "sigma": size / 40},
    "motion_blur": lambda size, seed: {
        "size": 2 * (size // 12) + 1,
        "intensity": 0.5,
        "seed": seed,
    },
    "super_resolution": lambda size, seed: {"factor": 4},
    "colorization": lambda size, seed: {},
    "phase_retrieval": lambda size, seed: {},
    "hdr": lambda size, seed: {},
    "nonlinear_blur": lambda size, seed: {},
}


@dataclass
class DemoRow:
    name: str
    kind: str  # "SVD", "linear" or "nonlinear"
    y: Tensor
    pinv: Tensor | None
    psnr_y: float | None  # PSNR of y against the clean image where y is image-shaped
    psnr_pinv: float | None
    operator: object = None  # decides how y is shown (invdiff.display)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from invdiff.data.photos import PHOTOS

    parser.add_argument(
        "--out", type=Path, default=Path("demo"), help="output folder (default: ./demo)"
    )
    parser.add_argument(
        "--photo",
        default="astronaut",
        choices=sorted(PHOTOS),
        help="bundled photo (default astronaut)",
    )
    parser.add_argument(
        "--size", type=int, default=128, help="image size in pixels, a multiple of 8 (default 128)"
    )
    parser.add_argument(
        "--sigma-y",
        type=float,
        default=0.05,
        help="Gaussian noise std in the [-1, 1] range (default 0.05)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the noise and the random operators"
    )
    parser.add_argument(
        "--operators",
        nargs="+",
        default=list(DEMO_OPERATORS),
        metavar="NAME",
        help=f"operators to show, from these {len(DEMO_OPERATORS)} (default: all of them): "
        f"{', '.join(DEMO_OPERATORS)}",
    )


def for_display(y: Tensor, operator: object = None) -> tuple[Tensor, str]:
    """The measurement as a viewable image and its caption (``invdiff.display``: the rule that
    ``solve`` and ``bench`` use too; Fourier magnitudes on a log scale)."""
    from invdiff.display import measurement_image

    return measurement_image(y, operator)


def psnr(x: Tensor, ref: Tensor) -> float:
    """PSNR in dB of one image on [0, 1] (data range 1), as ``invdiff.metrics.psnr`` defines it.

    Computed here so that the demo does not import torchmetrics (seconds of start-up).
    """
    from invdiff.images import to_unit

    mse = (to_unit(x) - to_unit(ref)).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


def degrade(x: Tensor, names: list[str], sigma_y: float, seed: int) -> list[DemoRow]:
    """Apply each named operator to ``x`` with Gaussian noise ``sigma_y``; pinv where linear."""
    from invdiff import operators
    from invdiff.noise import Gaussian
    from invdiff.operators.base import LinearOperator, SVDOperator

    noise = Gaussian(sigma_y)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    size = x.shape[-1]
    for name in names:
        op = operators.get(name, in_shape=tuple(x.shape[1:]), **DEMO_OPERATORS[name](size, seed))
        with torch.no_grad():
            y = noise.sample(op(x), generator)
            pinv = op.pinv(y) if isinstance(op, LinearOperator) else None
        kind = (
            "SVD"
            if isinstance(op, SVDOperator)
            else "linear"
            if isinstance(op, LinearOperator)
            else "nonlinear"
        )
        psnr_y = psnr(y, x) if y.shape == x.shape else None
        psnr_pinv = psnr(pinv, x) if pinv is not None else None
        rows.append(DemoRow(name, kind, y, pinv, psnr_y, psnr_pinv, op))
    return rows


def figure(x: Tensor, rows: list[DemoRow], path: Path, title: str) -> Path:
    """Clean image, then one column per operator: measurement (top) and pseudo-inverse (bottom)."""
    from matplotlib.figure import Figure

    from invdiff.display import save_figure, show_image

    def show(ax, img: Tensor, label: str) -> None:  # noqa: ANN001 - a matplotlib Axes
        show_image(ax, img)
        ax.set_title(label, fontsize=7)

    cols = len(rows) + 1
    fig = Figure(figsize=(1.7 * cols, 4.2))
    axes = fig.subplots(2, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    show(axes[0, 0], x, "clean")
    for j, row in enumerate(rows, start=1):
        shown, caption = for_display(row.y, row.operator)
        show(axes[0, j], shown, f"{row.name}\n{caption}")
        if row.pinv is not None:
            show(axes[1, j], row.pinv.clamp(-1, 1), f"pseudo-inverse\n{row.psnr_pinv:.1f} dB")
        else:
            axes[1, j].text(0.5, 0.5, f"{row.kind}:\nno pinv", ha="center", va="center", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(h_pad=1.5)
    return save_figure(fig, path, dpi=110)


def run(args: argparse.Namespace) -> int:
    from invdiff.data.photos import photo
    from invdiff.images import save_image
    from invdiff.registry import OPERATORS

    if args.size < 8 or args.size % 8:
        raise SystemExit(
            f"invdiff demo: --size must be a multiple of 8 and at least 8, got {args.size}"
        )
    if not args.sigma_y >= 0:
        raise SystemExit(f"invdiff demo: --sigma-y must be >= 0, got {args.sigma_y}")
    unknown = [n for n in args.operators if n not in DEMO_OPERATORS or n not in OPERATORS]
    if unknown:
        raise SystemExit(
            f"invdiff demo: unknown or unavailable operator(s) {unknown}; "
            f"choose from {', '.join(DEMO_OPERATORS)}"
        )
    from invdiff.io import check_writable

    check_writable(args.out)
    start = time.perf_counter()
    x = photo(args.photo, args.size, 3)
    rows = degrade(x, list(args.operators), args.sigma_y, args.seed)
    out = Path(args.out)
    save_image(x, out / "clean.png")
    for row in rows:
        save_image(for_display(row.y, row.operator)[0], out / f"{row.name}_y.png")
        if row.pinv is not None:
            save_image(row.pinv.clamp(-1, 1), out / f"{row.name}_pinv.png")
    title = (
        f"{args.photo} {args.size}x{args.size}, "
        f"Gaussian noise sigma_y = {args.sigma_y} ([-1, 1] range)"
    )
    fig_path = figure(x, rows, out / "demo.png", title)

    print(title)
    print(f"{'operator':<20} {'kind':<10} {'y shape':<16} {'PSNR(y)':>8} {'PSNR(pinv)':>11}")
    for row in rows:
        ps_y = f"{row.psnr_y:.2f}" if row.psnr_y is not None else "-"
        ps_p = f"{row.psnr_pinv:.2f}" if row.psnr_pinv is not None else "-"
        shape = "x".join(map(str, row.y.shape[1:]))
        print(f"{row.name:<20} {row.kind:<10} {shape:<16} {ps_y:>8} {ps_p:>11}")
    print(
        f"wrote {fig_path} and {2 * len(rows) + 1 - sum(r.pinv is None for r in rows)} images "
        f"in {out} "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return 0
