"""The outputs of a finished run: summary tables, FID/KID, figure grids and the manifest.

``summary.csv``: one line per (problem, solver, metric) with n, mean, std and the 95%
Student-t interval; ``summary.md`` and ``table.tex`` (booktabs): the same as tables;
``distribution.csv``: FID/KID per (problem, solver) with the number of images N;
``figures/<problem>.png``: measurement | each solver | truth for the first images;
everything is read from the run's store (rows, samples and the measurements stored beside
them) and the plan (which pairs, which images); nothing is solved or measured again.
``manifest.json``: versions, prior and bank hashes, commit, suite hash, device, times.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invdiff import io as safe_io
from invdiff.bench import compare, stats
from invdiff.bench import manifest as mf
from invdiff.bench.plan import Plan, load_images
from invdiff.bench.store import RunStore, now
from invdiff.metrics.registry import METRICS
from invdiff.problems import Problem

#: the posterior standard deviation shown white in the figures' std columns ([-1, 1] images)
STD_SHOWN = 0.5
#: the cost columns shown after the quality metrics
TIMING = tuple(METRICS.names("cost"))


def distribution_metrics(
    plan: Plan, store: RunStore, *, progress: bool = True
) -> list[dict[str, Any]]:
    """FID/KID per (problem, solver) over the first seed's samples against the clean images.

    Streams the stored samples through one ``InceptionDistance`` whose real-image statistics
    are computed once per image set. Only pairs with at least ``min_images_distribution``
    samples are scored; every entry reports its N (FID is biased upwards at small N: compare
    equal N only, and read KID, which is unbiased, beside it).
    """
    from invdiff.metrics import InceptionDistance

    suite = plan.suite
    if not suite.distribution_metrics:
        return []
    seed = suite.seeds[0]
    results = []
    metric = None
    real_key: tuple[int, ...] | None = None
    cache = _read_distribution_cache(store)
    for pair in plan.pairs:
        problem, label = pair.problem.name, pair.solver.label
        batches = list(store.iter_samples(problem, label, seed))
        have = {i for b in batches for i in b.indices}
        idx = [i for i in plan.indices if i in have]
        entry: dict[str, Any] = {"problem": problem, "solver": label, "seed": seed, "n": len(idx)}
        if len(idx) < suite.min_images_distribution:
            entry["skipped"] = (
                f"N={len(idx)} < min_images_distribution={suite.min_images_distribution}"
            )
            results.append(entry)
            continue
        # the same reconstructions scored against the same images: reuse the stored scores
        key = json.dumps([problem, label, seed])
        stamp = {
            "samples": store.samples_fingerprint(problem, label, seed),
            "indices": idx,
            "data": json.loads(json.dumps(suite.data, default=str)),
        }
        cached = cache.get(key)
        if isinstance(cached, dict) and cached.get("stamp") == stamp:
            scored = {k: cached.get(k) for k in _DISTRIBUTION_KEYS if k in cached}
            if all(isinstance(v, (int, float)) for v in scored.values()) and "fid" in scored:
                results.append({**entry, **scored})
                continue
        if metric is None:
            metric = InceptionDistance(
                device=plan.device,
                keep_features="kid" in suite.distribution_metrics,
                progress=False,
            )
        if real_key != tuple(idx):
            metric.reset(real=True)
            for k in range(0, len(idx), 100):
                metric.update(
                    load_images(plan.dataset, idx[k : k + 100]).to(plan.device), real=True
                )
            real_key = tuple(idx)
        else:
            metric.reset(real=False)
        wanted = set(idx)
        for b in batches:
            keep = [k for k, i in enumerate(b.indices) if i in wanted]
            metric.update(b.images[keep].to(plan.device), real=False)
        scores = metric.compute(generator=0)
        entry["fid"] = scores.fid
        if scores.kid is not None:
            entry["kid"], entry["kid_std"] = scores.kid, scores.kid_std
        entry["n_real"], entry["n_fake"] = scores.n_real, scores.n_fake
        if progress:
            print(f"  {problem} / {label}: {scores}", file=sys.stderr)
        results.append(entry)
        cache[key] = {"stamp": stamp, **{k: entry[k] for k in _DISTRIBUTION_KEYS if k in entry}}
        store.write_text(DISTRIBUTION_CACHE, json.dumps(cache, indent=1) + "\n")
    return results


#: FID / KID of the run's (problem, solver, seed) pairs with what they were computed from, so
#: that a resumed run's report recomputes only the pairs whose reconstructions changed
DISTRIBUTION_CACHE = "distribution-cache.json"
_DISTRIBUTION_KEYS = ("fid", "kid", "kid_std", "n_real", "n_fake")


def _read_distribution_cache(store: RunStore) -> dict[str, Any]:
    """The cache, or an empty one where it is missing or unreadable (it is only a cache)."""
    path = store.out / DISTRIBUTION_CACHE
    try:
        cache = json.loads(safe_io.read_bytes(path))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _distribution_csv(results: list[dict[str, Any]], metrics: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["problem", "solver", "seed", "n", "n_real", "n_fake"]
    cols += [c for m in metrics for c in ((m, f"{m}_std") if m == "kid" else (m,))] + ["skipped"]
    w.writerow(cols)
    for r in results:
        w.writerow([r.get(c, "") for c in cols])
    return buf.getvalue()


def _measurements(
    plan: Plan, problem: Problem, idx: list[int], stored: list[dict[int, Any]]
) -> tuple[Tensor, str]:
    """The stored measurements of images ``idx`` as one picture each (the ``display`` rule)."""
    from invdiff.display import measurement_image

    ys = [next((s[i][1] for s in stored if i in s and s[i][1] is not None), None) for i in idx]
    if any(y is None for y in ys):  # a folder written before y was stored beside the samples
        return torch.zeros(len(idx), *problem.in_shape), "y (not stored)"
    with torch.no_grad():
        y = torch.cat(ys).to(plan.device)
        return measurement_image(y, plan.operators[problem.name], problem.in_shape)


def figure(plan: Plan, store: RunStore, problem_name: str, truth: dict[int, Tensor]) -> Path | None:
    """measurement | each solver | truth, one row per image (the first ``figure_images``),
    from the store's samples and measurements; ``truth`` holds those images, loaded once."""
    from invdiff.display import image_grid, save_figure

    suite = plan.suite
    pairs = [p for p in plan.pairs if p.problem.name == problem_name]
    if not pairs or suite.figure_images == 0:
        return None
    seed = suite.seeds[0]
    wanted = set(plan.indices[: suite.figure_images])
    columns = {
        p.solver.label: store.load_samples(problem_name, p.solver.label, seed, wanted)
        for p in pairs
    }
    idx = [i for i in plan.indices if any(i in s for s in columns.values())][: suite.figure_images]
    if not idx:
        return None
    meas, meas_title = _measurements(plan, pairs[0].problem, idx, list(columns.values()))
    blank = (torch.zeros(1, *pairs[0].problem.in_shape), None)
    rows = [
        [meas[r : r + 1].cpu(), *[s.get(i, blank)[0] for s in columns.values()], truth[i]]
        for r, i in enumerate(idx)
    ]
    titles = [meas_title, *columns, "truth"]
    if suite.posterior_samples > 1:
        # one std column per solver: its K samples' per-pixel spread, 0 (black) to
        # STD_SHOWN (white), so that the columns compare
        for label in columns:
            stds = store.load_std(problem_name, label, seed, set(idx))
            for r, i in enumerate(idx):
                std = stds.get(i, torch.zeros(1, *pairs[0].problem.in_shape))
                rows[r].append((std / STD_SHOWN).clamp(0, 1) * 2 - 1)
            titles.append(f"{label} std")
    fig = image_grid(
        rows,
        column_titles=titles,
        row_labels=[f"#{i}" for i in idx],
        title=problem_name
        + (
            f" ({suite.posterior_samples} samples per image; std columns: 0 to {STD_SHOWN})"
            if suite.posterior_samples > 1
            else ""
        ),
    )
    name = safe_io.check_name(problem_name, "problem name")
    path = safe_io.inside(store.out, store.out / "figures" / f"{name}.png")
    return save_figure(fig, path)


def bank_hashes(plan: Plan) -> dict[str, Any]:
    """SHA-256 of the operator bank files the problems use (and of the banks' manifest)."""
    from invdiff.paths import banks_dir

    folder = banks_dir()
    out: dict[str, Any] = {}
    for p in plan.suite.problems:
        if p.bank is None:
            continue
        for candidate in (folder / f"{p.bank}.npz", folder / p.bank):
            if candidate.is_file():
                out[candidate.name] = safe_io.sha256_file(candidate)
                break
        else:
            out[p.bank] = None
    if out and (folder / "manifest.json").is_file():
        out["manifest.json"] = safe_io.sha256_file(folder / "manifest.json")
    return out


def _summary(
    plan: Plan, rows: list[dict[str, Any]], dist: list[dict[str, Any]]
) -> list[stats.SummaryRow]:
    """Per-image metrics and costs over the rows, then one value per pair of each FID/KID."""
    suite = plan.suite
    summary = stats.summarize(rows, [*suite.scored, *TIMING])
    for d in dist:
        for m in suite.distribution_metrics:
            if m in d:
                est = stats.Estimate(d["n"], d[m], math.nan, math.nan)
                summary.append(stats.SummaryRow(d["problem"], d["solver"], m, est, 0))
    return summary


def _notes(
    plan: Plan,
    rows: list[dict[str, Any]],
    dist: list[dict[str, Any]],
    world_size: int,
    errors: list[dict[str, Any]],
) -> list[str]:
    suite = plan.suite
    notes = [
        f"suite `{suite.name}`: {len(plan.indices)} image(s) of `{suite.data.get('dataset')}`, "
        f"seeds {suite.seeds}, {len({r['problem'] for r in rows})} problem(s), "
        f"{len({r['solver'] for r in rows})} solver(s), {len(rows)} rows",
        f"device {plan.device}, world size {world_size}",
    ]
    for m in suite.distribution_metrics:
        ns = sorted({d["n"] for d in dist if m in d})
        if ns:
            notes.append(
                f"{m.upper()}: against the clean images, seed {suite.seeds[0]}, "
                f"N = {', '.join(map(str, ns))}"
            )
        else:
            notes.append(
                f"{m.upper()}: not computed "
                f"(fewer than {suite.min_images_distribution} images per pair)"
            )
    if plan.skipped:
        notes.append(
            f"{len(plan.skipped)} solver/problem pair(s) skipped as incompatible (manifest.json)"
        )
    if errors:
        notes.append(f"{len(errors)} failed batch(es): see errors.jsonl")
    return notes


def _tables(
    plan: Plan,
    store: RunStore,
    summary: list[stats.SummaryRow],
    dist: list[dict[str, Any]],
    notes: list[str],
    rows: list[dict[str, Any]],
) -> None:
    """summary.csv, summary.md, table.tex and distribution.csv."""
    suite = plan.suite
    order = {
        "problems": [p.name for p in suite.problems],
        "solvers": [s.label for s in suite.solvers],
    }
    quality = [
        *suite.scored,
        *[m for m in suite.distribution_metrics if any(m in d for d in dist)],
    ]
    store.write_text("summary.csv", stats.summary_csv(summary))
    pairs = [p for m in suite.metrics for p in compare.paired(rows, m)]
    store.write_text("paired.csv", compare.paired_csv(pairs))
    store.write_text("pareto.csv", compare.pareto_csv(rows, suite.metrics))
    changes = compare.budget_changes(rows, pairs)
    if changes:
        store.write_text("budgets.csv", compare.budgets_csv(changes))
    notes = [*notes, *_paired_notes(plan, summary, pairs), *_budget_notes(changes)]
    title = f"Benchmark `{suite.name}`"
    md = stats.summary_markdown(summary, [*quality, *TIMING], title=title, notes=notes, **order)
    store.write_text("summary.md", md)
    tex = stats.summary_latex(summary, quality, caption=f"suite {suite.name}", **order)
    store.write_text("table.tex", tex)
    if dist:
        store.write_text("distribution.csv", _distribution_csv(dist, suite.distribution_metrics))


def _paired_notes(
    plan: Plan, summary: list[stats.SummaryRow], pairs: list[compare.Paired]
) -> list[str]:
    """Per problem: the best label by the first metric and whom it beats significantly on the
    same images (paired; ``paired.csv`` has every pair)."""
    if not plan.suite.metrics:
        return []
    m = plan.suite.metrics[0]
    entry = METRICS.get(m)
    if entry is None or not entry.ranked:
        return []
    notes = []
    for problem in dict.fromkeys(s.problem for s in summary):
        cells = [s for s in summary if s.problem == problem and s.metric == m and s.estimate.n > 0]
        if len(cells) < 2:
            continue
        best = max(cells, key=lambda s: s.estimate.mean * (1 if entry.higher_is_better else -1))
        beaten = compare.beaten_by_best(pairs, problem, best.solver, m)
        notes.append(
            f"{problem}: best {entry.title} `{best.solver}`, significantly better (paired, "
            f"95%) than {len(beaten)} of {len(cells) - 1}"
            + (f": {', '.join(beaten)}" if beaten and len(beaten) <= 6 else "")
        )
    return notes


def _budget_notes(changes: list[compare.BudgetChange]) -> list[str]:
    """One line per metric: how often a larger budget helped or hurt (paired, 95%), naming
    the (problem, solver) pairs it hurt."""
    notes = []
    for metric in dict.fromkeys(c.metric for c in changes):
        mine = [c for c in changes if c.metric == metric]
        worse = [c for c in mine if c.verdict == "worse"]
        better = sum(c.verdict == "better" for c in mine)
        title = METRICS[metric].title
        line = (
            f"more NFE ({title}): helped in {better}, hurt in {len(worse)} of {len(mine)} "
            "(problem, solver) budget steps (paired, 95%; budgets.csv)"
        )
        if worse:
            line += ": " + ", ".join(
                f"{c.solver} on {c.problem} {c.change.mean:+.3g} ({c.base_nfe:.0f} -> {c.nfe:.0f})"
                for c in worse[:8]
            )
        notes.append(line)
    return notes


def _curves(plan: Plan, store: RunStore, rows: list[dict[str, Any]]) -> list[str]:
    """Quality-against-cost figures for the problems where a solver ran several budgets."""
    metrics = [m for m in ("psnr", "lpips") if m in plan.suite.metrics] or plan.suite.metrics[:1]
    out = []
    for p in plan.suite.problems:
        name = safe_io.check_name(p.name, "problem name")
        path = safe_io.inside(store.out, store.out / "figures" / f"curves-{name}.png")
        made = compare.curves_figure(rows, p.name, metrics, path) if metrics else None
        if made is not None:
            out.append(str(made.relative_to(store.out.resolve())))
    return out


def _figures(plan: Plan, store: RunStore) -> list[str]:
    """One figure per problem; the truth images are loaded once for all of them."""
    truth_idx = plan.indices[: plan.suite.figure_images]
    x = load_images(plan.dataset, truth_idx) if truth_idx else None
    truth = {i: x[k : k + 1] for k, i in enumerate(truth_idx)}
    figs = []
    for p in plan.suite.problems:
        path = figure(plan, store, p.name, truth)
        if path is not None:
            figs.append(str(path.relative_to(store.out.resolve())))
    return figs


def _suite_record(plan: Plan) -> dict[str, Any]:
    """What the manifest says about the suite, its data, problems and solvers."""
    suite = plan.suite
    return {
        "suite": {
            "name": suite.name,
            "path": str(suite.path) if suite.path else None,
            "sha256": suite.sha256,
            "description": suite.description,
            "overrides": suite.overrides,
            # how the priors' networks ran (precision, compile, checkpointing)
            "network": dataclasses.asdict(suite.network),
        },
        "data": {
            "dataset": suite.data.get("dataset"),
            "options": {k: v for k, v in suite.data.items() if k not in ("indices",)},
            "n_images": len(plan.indices),
            "first_index": plan.indices[0] if plan.indices else None,
        },
        "problems": [p.name for p in suite.problems],
        "solvers": [
            {
                "label": s.label,
                "name": s.name,
                "steps": s.steps,
                "nfe": s.nfe,
                "tuned": s.tuned,
                "hyper": s.hyper,
                "per_problem": s.per_problem,
            }
            for s in suite.solvers
        ],
        # every pair's hyperparameters and where they come from (tuned, suite, defaults)
        "pairs": [
            {
                "problem": p.problem.name,
                "solver": p.solver.label,
                "hyper_source": p.hyper_source,
                "hyper": p.hyper,
                **({"tuned_on": p.tuned_on} if p.tuned_on is not None else {}),
            }
            for p in plan.pairs
        ],
        "tuned_table": None
        if suite.tuned_table is None
        else {"path": str(suite.tuned_table), "sha256": safe_io.sha256_file(suite.tuned_table)}
        if suite.tuned_table.is_file()
        else {"path": str(suite.tuned_table)},
        "seeds": suite.seeds,
        "batch_size": suite.batch_size,
    }


def write_all(
    plan: Plan,
    store: RunStore,
    rows: list[dict[str, Any]],
    *,
    figures: bool,
    world: Any,
    started: str,
    wall_s: float,
    cpu_s: float = float("nan"),
    counts: dict[str, int],
    errors: list[dict[str, Any]],
    progress: bool = True,
) -> dict[str, Any]:
    """Write every output of a finished run from its store and return the manifest."""
    dist = distribution_metrics(plan, store, progress=progress)
    notes = _notes(plan, rows, dist, world.size, errors)
    _tables(plan, store, _summary(plan, rows, dist), dist, notes, rows)
    figs = _figures(plan, store) if figures and plan.suite.save_samples else []
    figs += _curves(plan, store, rows) if figures else []
    record = _suite_record(plan)
    manifest = {
        "suite": record.pop("suite"),
        "command": sys.argv,
        "started": started,
        "finished": now(),
        "wall_s": wall_s,
        # CPU time of this process (all its threads): on a busy shared machine a fairer
        # measure of the work than the wall time
        "cpu_s": cpu_s,
        "device": mf.device_info(plan.device),
        "world_size": world.size,
        "git": mf.git_commit(),
        "packages": mf.package_versions(),
        "priors": {
            key: {
                "folder": str(folder),
                "sha256": mf.weight_hashes(folder) if folder.exists() else {},
            }
            for key, folder in plan.prior_folders.items()
        },
        "operator_banks": bank_hashes(plan),
        **record,
        "rows": len(rows),
        "expected_rows": len(plan.keys()),
        "this_run": counts,
        "skipped_pairs": plan.skipped,
        "failed_batches": len(errors),
        "figures": figs,
    }
    store.write_text("manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest
