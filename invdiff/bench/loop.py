"""The solving loop: for each work item of a plan, solve, score, append rows, store samples.

Resuming: rows already in the store are not recomputed; an item with some rows missing is
solved again and only the missing rows are appended. A failing item writes an error record and
the loop goes on (one failing solver must not stop a benchmark).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from invdiff.bench import memory
from invdiff.bench.distributed import World
from invdiff.bench.plan import Plan, WorkItem, load_images
from invdiff.bench.store import RunStore, now
from invdiff.metrics.posterior import PosteriorDraws
from invdiff.metrics.registry import METRICS
from invdiff.noise import Gaussian


@dataclass
class Outcome:
    """One solved item: the reconstructions, the measurement, the scores and the costs."""

    xhat: Tensor
    y: Tensor
    values: dict[str, list[float]]
    finite: Tensor
    wall_s: float
    nfe: int
    peak_mb: float
    steps: int
    #: per-pixel standard deviation over the K posterior samples (None with K = 1)
    std: Tensor | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solve_item(plan: Plan, item: WorkItem, x: Tensor) -> Outcome:
    """Measure the item's images, solve, and score each reconstruction against its image."""
    from invdiff.solvers import get, solve

    problem, spec = item.pair.problem, item.pair.solver
    op = plan.operators[problem.name]
    prior = plan.priors[item.pair.prior_key]
    if spec.class_guidance is not None:  # checked in plan.build: the labels and their range
        labels = plan.dataset.labels[item.images].to(plan.device)
        prior = prior.conditioned(labels, guidance=spec.class_guidance)
    hyper = item.pair.hyper
    steps = spec.steps
    if steps is None:  # a budget in network evaluations: the solver's steps that fit in it
        steps = get(spec.name).steps_for_nfe(spec.nfe, prior=prior, **hyper)
    y = problem.measure(x, item.images, item.seed, operator=op)
    gen = torch.Generator(device=plan.device).manual_seed(item.solver_seed())
    prior.nfe = 0
    memory.reset_peak(plan.device)
    _sync(plan.device)
    t0 = time.perf_counter()
    k = plan.suite.posterior_samples
    draws = solve(
        spec.name,
        prior=prior,
        operator=op,
        y=y,
        noise=problem.noise,
        steps=steps,
        generator=gen,
        samples=k if k > 1 else None,
        **hyper,
    )
    _sync(plan.device)
    wall = time.perf_counter() - t0
    peak_mb, nfe, draws = memory.peak_mb(plan.device), int(prior.nfe), draws.detach()
    xhat = draws[:, 0] if k > 1 else draws  # the per-image metrics score the first draw
    values: dict[str, list[float]] = {}
    with torch.no_grad():
        for m in plan.suite.metrics:
            args = (op.ambiguities,) if METRICS[m].ambiguity_aware else ()
            v = plan.metric_fns[m](xhat.float().clamp(-1, 1), x, *args)
            values[m] = [float(a) for a in torch.as_tensor(v).flatten().tolist()]
        std = None
        if k > 1:
            sigma = problem.noise.sigma if isinstance(problem.noise, Gaussian) else 0.0
            batch = PosteriorDraws(draws.float(), x, y, op, float(sigma))
            for m in plan.suite.posterior_metrics:
                v = METRICS[m].fn(batch)
                values[m] = [float(a) for a in torch.as_tensor(v).flatten().tolist()]
            std = draws.float().std(1)
    finite = torch.isfinite(xhat.flatten(1)).all(1)
    return Outcome(xhat, y, values, finite, wall, nfe, peak_mb, steps, std)


def _row(plan: Plan, item: WorkItem, k: int, o: Outcome, rank: int) -> dict[str, Any]:
    spec, n = item.pair.solver, len(item.images)
    return {
        "image": item.images[k],
        "problem": item.pair.problem.name,
        "solver": spec.label,
        "seed": item.seed,
        "solver_name": spec.name,
        "steps": o.steps,
        "nfe_budget": spec.nfe,
        "class_guidance": spec.class_guidance,
        "hyper_source": item.pair.hyper_source,
        **{m: o.values[m][k] for m in plan.suite.scored},
        "posterior_samples": plan.suite.posterior_samples,
        "finite": bool(o.finite[k]),
        "wall_s": o.wall_s / n,
        "nfe": o.nfe,
        # of the whole batch: device memory on a GPU, resident set on the CPU
        "peak_mem_mb": round(o.peak_mb, 1),
        "network": plan.suite.network.describe(),
        "batch": item.batch,
        "batch_size": n,
        "device": str(plan.device),
        "rank": rank,
        "time": now(),
    }


def run_items(
    plan: Plan, store: RunStore, world: World, *, progress: bool = True
) -> dict[str, int]:
    """Run this rank's items, one row per (image, problem, solver, seed); returns counts."""
    from tqdm.auto import tqdm

    done = store.open_rank(world.rank)
    items = list(plan.items(world))
    keys = [k for it in items for k in it.keys()]
    counts = {"rows": 0, "errors": 0, "resumed": sum(k in done for k in keys)}
    bar = tqdm(
        total=len(keys),
        initial=counts["resumed"],
        desc=f"bench {plan.suite.name}"
        + (f" [rank {world.rank}/{world.size}]" if world.size > 1 else ""),
        unit="row",
        disable=not progress,
        position=world.rank,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    x, x_batch = None, None
    for item in items:
        missing = [k for k, key in enumerate(item.keys()) if key not in done]
        if not missing:
            continue
        if x_batch != item.batch:  # the images of a batch load once for all its items
            x, x_batch = load_images(plan.dataset, item.images).to(plan.device), item.batch
        name, label = item.pair.problem.name, item.pair.solver.label
        bar.set_postfix_str(f"{name} / {label}", refresh=False)
        try:
            o = solve_item(plan, item, x)
        except Exception as err:  # noqa: BLE001 - one failing solver must not stop a benchmark
            counts["errors"] += 1
            record = {"problem": name, "solver": label, "seed": item.seed, "images": item.images}
            store.append_error(
                world.rank, {**record, "error": f"{type(err).__name__}: {err}", "time": now()}
            )
            bar.write(
                f"error: {label} on {name} (images {item.images[0]}..{item.images[-1]}): "
                f"{type(err).__name__}: {err}"
            )
            bar.update(len(missing))
            continue
        if plan.suite.save_samples:
            store.save_samples(
                name, label, item.seed, item.batch, o.xhat, item.images, o.y, std=o.std
            )
        for k in missing:
            store.append_row(world.rank, _row(plan, item, k, o, world.rank))
            done.add(item.keys()[k])
            counts["rows"] += 1
            bar.update(1)
    bar.close()
    return counts


__all__ = ["Outcome", "run_items", "solve_item"]
