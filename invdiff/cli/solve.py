"""Solve one inverse problem with one solver and write the measurement, the reconstruction(s)
and a figure.

    invdiff solve --problem fmnist-sr4 --solver diffpir --out runs/sr4-diffpir
    invdiff solve --problem fmnist-random70 --solver dps --index 7 --samples 4 --out out/
    invdiff solve --problem fmnist-sr4 --solver sr3 --image shirt.png --out out/   # your own image
    invdiff solve --problem fmnist-cs --solver daps --set tau=0.05 --out out/

The problem preset (``invdiff list problems``) gives the operator, the noise model, the data set
and the default prior for the solver's kind (pixel, sr3 or latent); ``--prior`` overrides it
with a shipped prior name or a folder written by ``invdiff train``. The clean image is test
image ``--index`` of the preset's data set, or ``--image FILE`` (centre-cropped and resized to
the problem's size). Files written to ``--out`` (each atomically): ``truth.png``,
``measurement.png`` (shown as ``invdiff.display`` shows any measurement, as bench and demo do:
upsampled when smaller, Fourier magnitudes on a log scale, ``A^+ y`` when not image-shaped),
``reconstruction.png`` (``reconstruction_K.png`` for several samples),
``tensors.pt`` (x, y, reconstructions), ``figure.png`` (measurement / reconstructions / truth)
and ``summary.json`` (settings, PSNR per sample, wall time, network evaluations).

A ``--prior`` folder may also be any diffusers checkpoint that ``invdiff.priors.load`` reads.
Before any weights or images are read, the pairing is checked: solver vs operator and noise,
solver vs prior kind, the prior's image size and channels (and SR3 factor) vs the problem's.
stderr then names the prior, says what ``--steps`` costs in network evaluations and shows a
progress bar (NFE done / budget, step, sigma; ``--no-progress`` hides it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff import problems
from invdiff.io import write_text, write_with
from invdiff.priors.network import add_network_arguments, network_options_from_args
from invdiff.priors.sr3 import degradation_mismatch
from invdiff.registry import DATASETS
from invdiff.solvers.base import SolverMismatchError


def _note(message: str) -> None:
    print(f"invdiff solve: {message}", file=sys.stderr)


def _colour_hint(conversion: str, problem: Any) -> str:
    """What to run instead when a colour photo meets a grey problem."""

    if "converted to grey" not in conversion:
        return ""
    shipped = (problems.get(n) for n in problems.names() if not n.endswith("-noiseless"))
    colour = [
        p.name for p in shipped if p.channels == 3 and not DATASETS.entry(p.dataset).user_folder
    ]
    if not colour:
        return ""
    return (
        f"; {problem.name} is a grey problem: to reconstruct in colour, use a colour preset "
        f"with a shipped colour prior ({', '.join(colour)})"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines
    parser.add_argument(
        "--problem", required=True, help="problem preset name (see `invdiff list problems`)"
    )
    parser.add_argument("--solver", required=True, help="solver name (see `invdiff list solvers`)")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (created if missing)"
    )
    parser.add_argument(
        "--image", type=Path, help="an image file to use as the clean image instead of the data set"
    )
    parser.add_argument(
        "--index", type=int, default=0, help="test-set index of the clean image (default 0)"
    )
    parser.add_argument(
        "--prior",
        help="prior: a shipped name or a folder (default: the problem's prior for this solver)",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=int, default=None, help="solver steps, its own unit (default 100)"
    )
    budget.add_argument(
        "--nfe",
        type=int,
        default=None,
        help="budget in network evaluations (the unit that compares solvers): the solver runs "
        "the most steps that fit",
    )
    parser.add_argument(
        "--samples", type=int, default=1, help="posterior samples to draw for the image (default 1)"
    )
    parser.add_argument(
        "--class",
        dest="class_label",
        type=int,
        help="class-conditional pixel prior: solve given this class (posterior given y and the "
        "label)",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=0.0,
        help="with --class: classifier-free guidance weight w (Ho & Salimans 2022; 0: the "
        "conditional model, default; each network evaluation then costs two)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the solver's generator and of the measurement noise",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)"
    )
    add_network_arguments(parser, checkpointing=True)
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (by default stderr shows network evaluations done / budget, "
        "the step and sigma)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a solver hyperparameter (repeatable), e.g. --set zeta=0.5",
    )


def _hyperparameters(items: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """``NAME=VALUE`` strings parsed to the type of the solver's default for ``NAME``."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        if name not in defaults:
            raise ValueError(
                f"unknown hyperparameter {name!r}; this solver has: "
                f"{', '.join(sorted(defaults)) or 'none'}"
            )
        default = defaults[name]
        if isinstance(default, bool):
            flags = {"1": True, "true": True, "yes": True, "on": True}
            flags.update({"0": False, "false": False, "no": False, "off": False})
            if value.lower() not in flags:
                raise ValueError(f"--set {item!r}: {name} is true/false (1/0), got {value!r}")
            out[name] = flags[value.lower()]
            continue
        kind = (
            "an integer"
            if isinstance(default, int)
            else "a number"
            if isinstance(default, float) or default is None
            else f"a {type(default).__name__}"
        )
        try:
            if isinstance(default, int):
                out[name] = int(value)
            elif isinstance(default, float) or default is None:
                out[name] = float(value)
            else:
                out[name] = type(default)(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"--set {item!r}: {name} must be {kind} (default {default!r}), got {value!r}"
            ) from None
        if isinstance(out[name], float) and not math.isfinite(out[name]):
            raise ValueError(f"--set {item!r}: {name} must be finite, got {value!r}")
    return out


def _prior_kind(solver: Any) -> str:
    from invdiff.priors.zoo import kind_of

    return kind_of(solver.requires_prior)


def check_prior_fits(info: Any, prior_name: str, problem: Any, operator: Any) -> None:
    """The prior models the problem's images (and, for SR3, the operator's factor); read from
    the prior's JSON files, so a mismatch is reported before any weights are loaded."""
    c, h, w = problem.in_shape
    if tuple(info.image_shape) != (c, h, w):
        raise ValueError(
            f"prior {prior_name} is a {info}: images of shape {tuple(info.image_shape)} "
            f"(C, H, W), but problem {problem.name!r} has {c}x{h}x{w} images {(c, h, w)}; "
            "pass --prior with a prior for that size and channel count (invdiff list priors, "
            "or invdiff train ... --data DIR), or a problem for images of the prior's shape"
        )
    if info.kind == "sr3" and info.factor:
        low = (c, h // info.factor, w // info.factor)
        if tuple(operator.out_shape()) != low:
            raise ValueError(
                f"prior {prior_name} was trained for x{info.factor} super-resolution "
                f"(measurements {'x'.join(map(str, low))}), but problem {problem.name!r} "
                f"measures {'x'.join(map(str, operator.out_shape()))}; pass the SR3 prior of the "
                "problem's factor with --prior"
            )
    why = degradation_mismatch(info.degradation, operator, prior_name)
    if why is not None:
        raise SolverMismatchError(why)


def _figure(path: Path, panels: list[tuple[Tensor, str]]) -> None:
    """One row: the measurement, the reconstructions and the truth, each with its title."""
    from invdiff.display import image_grid, save_figure

    images = [[img.clamp(-1, 1) for img, _ in panels]]
    fig = image_grid(images, column_titles=[title for _, title in panels], cell=2.2)
    save_figure(fig, path, dpi=120)


def run(args: argparse.Namespace) -> int:
    """Errors propagate to ``invdiff.cli.main``, which prints them as one line (exit 2)."""
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from invdiff import data, metrics, priors, solvers
    from invdiff.device import resolve_device
    from invdiff.display import measurement_image
    from invdiff.images import check_image, load_image, save_image
    from invdiff.io import check_writable
    from invdiff.priors.pixel import PixelPrior

    # everything cheap is validated first: names, numbers, files, the output folder
    problem = problems.get(args.problem)
    solver = solvers.get(args.solver)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.nfe is not None and args.nfe < 1:
        raise ValueError(f"--nfe must be >= 1, got {args.nfe}")
    if args.samples < 1:
        raise ValueError(f"--samples must be >= 1, got {args.samples}")
    if args.image is not None and not args.image.is_file():
        raise FileNotFoundError(f"--image: no such file {args.image}")
    own_images = args.image is not None
    if args.index < 0:
        raise ValueError(f"--index must be >= 0, got {args.index}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    hyper = _hyperparameters(args.set, solver.defaults)
    solver.hyperparameters(hyper)
    if args.nfe is not None:  # checked here, before any weights load (DAPS refines it below)
        solver.steps_for_nfe(args.nfe, **hyper)
    kind = _prior_kind(solver)
    prior_name = args.prior or problem.priors.get(kind)
    if prior_name is None:
        raise ValueError(
            f"problem {problem.name!r} names no {kind} prior for solver {args.solver!r}; "
            "pass --prior NAME_OR_FOLDER"
        )
    device = resolve_device(args.device)
    check_writable(args.out)
    # every pairing check that needs no network runs here, before weights or images are read:
    # solver vs operator, noise and prior kind (Solver.check takes the prior's class), and the
    # prior's image shape (and SR3 factor) vs the problem, from the prior's JSON files
    info = priors.describe(prior_name)
    operator = problem.operator(device)
    noise = problem.noise
    solver.check(info.prior_type, operator, noise)
    check_prior_fits(info, str(prior_name), problem, operator)
    if not own_images and DATASETS.entry(problem.dataset).user_folder:
        raise ValueError(
            f"problem {problem.name!r} uses your own images (data set {problem.dataset!r}): "
            "pass --image FILE"
        )

    if args.guidance != 0.0 and args.class_label is None:
        raise ValueError("--guidance needs --class: the class to guide towards")
    prior = priors.load(prior_name, device=device)
    prior.configure(**dataclasses.asdict(network_options_from_args(args)))
    if args.class_label is not None:
        if not isinstance(prior, PixelPrior):
            raise ValueError(
                f"--class needs a class-conditional pixel prior; {prior_name} is a "
                f"{type(prior).__name__}"
            )
        prior = prior.conditioned(args.class_label, guidance=args.guidance)
    if args.nfe is not None:
        args.steps = solver.steps_for_nfe(args.nfe, prior=prior, **hyper)
    elif args.steps is None:
        args.steps = 100
    budget = solver.budget(args.steps, prior=prior, **hyper)
    print(
        f"invdiff solve: {args.solver} on {problem.name} with prior {prior_name} ({info}); "
        f"{args.steps} step{'s' if args.steps != 1 else ''} = {budget.describe()}"
        + (f", each on a batch of {args.samples} samples" if args.samples > 1 else ""),
        file=sys.stderr,
    )

    if own_images:
        x = load_image(
            args.image,
            size=problem.image_size,
            channels=problem.channels,
            report=lambda text: _note(text + _colour_hint(text, problem)),
        )
        source = str(args.image)
    else:
        dataset = data.for_shape(
            problem.dataset, size=problem.image_size, channels=problem.channels
        )
        if not 0 <= args.index < len(dataset):
            raise ValueError(f"--index must be in [0, {len(dataset)}), got {args.index}")
        x = dataset.images([args.index])
        source = f"{problem.dataset}[{type(dataset).evaluation_split}][{args.index}]"
    x = check_image(x.to(device), "clean image")
    y = problem.measure(x, index=[args.index], seed=args.seed, operator=operator)
    ys = y.expand(args.samples, *y.shape[1:]).contiguous()

    generator = torch.Generator(device=device).manual_seed(args.seed)
    prior.nfe = 0
    start = time.perf_counter()
    xhat = solvers.solve(
        args.solver,
        prior=prior,
        operator=operator,
        y=ys,
        noise=noise,
        steps=args.steps,
        generator=generator,
        progress=not args.no_progress,
        **hyper,
    )
    wall = time.perf_counter() - start
    xhat = xhat.detach()
    psnr = metrics.psnr(xhat.clamp(-1, 1), x.expand_as(xhat)).tolist()

    out: Path = args.out
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    shown, caption = measurement_image(y, operator, problem.in_shape)
    save_image(x.cpu(), out / "truth.png")
    save_image(shown.clamp(-1, 1).cpu(), out / "measurement.png")
    names = (
        ["reconstruction.png"]
        if args.samples == 1
        else [f"reconstruction_{k}.png" for k in range(args.samples)]
    )
    for k, name in enumerate(names):
        save_image(xhat[k : k + 1].clamp(-1, 1).cpu(), out / name)
    tensors = {"x": x.cpu(), "y": y.detach().cpu(), "reconstructions": xhat.cpu()}
    write_with(out / "tensors.pt", lambda f: torch.save(tensors, f))
    panels = [(shown[0].cpu(), caption)]
    panels += [
        (xhat[k].cpu(), f"{args.solver} #{k} ({psnr[k]:.1f} dB)")
        for k in range(min(args.samples, 6))
    ]
    panels.append((x[0].cpu(), "truth"))
    _figure(out / "figure.png", panels)
    summary = {
        "problem": problem.name,
        "solver": args.solver,
        "prior": str(prior_name),
        "image": source,
        "steps": args.steps,
        "nfe_budget": args.nfe,
        "samples": args.samples,
        "seed": args.seed,
        "device": str(device),
        "hyperparameters": solver.hyperparameters(hyper),
        "noise": repr(noise),
        "psnr_db": psnr,
        "wall_s": wall,
        "network_evaluations": prior.nfe,
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"{args.solver} on {problem.name}: PSNR {', '.join(f'{p:.2f}' for p in psnr)} dB, "
        f"{wall:.1f} s; wrote {out}"
    )
    return 0
