"""The outputs of a finished run: summary tables, FID/KID, figure grids and the manifest.

``summary.csv``: one line per (problem, solver, metric) with n, mean, std and the 95%
Student-t interval; ``summary.md`` and ``table.tex`` (booktabs): the same as tables;
``distribution.csv``: FID/KID per (problem, solver) with the number of images N;
``figures/<problem>.png``: measurement | each solver | truth for the first images;
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

from invdiff.bench import manifest as mf
from invdiff.bench import rows as rowio
from invdiff.bench import stats

TIMING = ("wall_s", "nfe")


def distribution_metrics(prep: Any, out: Path, *, progress: bool = True) -> list[dict[str, Any]]:
    """FID/KID per (problem, solver) over the first seed's samples against the clean images.

    Streams the saved samples through one ``InceptionDistance`` whose real-image statistics
    are computed once per image set. Only pairs with at least ``min_images_distribution``
    samples are scored; every entry reports its N (FID is biased upwards at small N: compare
    equal N only, and read KID, which is unbiased, beside it).
    """
    from invdiff.bench.runner import iter_samples, load_images
    from invdiff.metrics import InceptionDistance

    suite = prep.suite
    if not suite.distribution_metrics:
        return []
    seed = suite.seeds[0]
    results = []
    metric = None
    real_key: tuple[int, ...] | None = None
    for pair in prep.pairs:
        problem, label = pair.problem.name, pair.solver.label
        batches = list(iter_samples(out, problem, label, seed))
        have = {i for idx, _ in batches for i in idx}
        idx = [i for i in prep.indices if i in have]
        entry: dict[str, Any] = {"problem": problem, "solver": label, "seed": seed, "n": len(idx)}
        if len(idx) < suite.min_images_distribution:
            entry["skipped"] = (
                f"N={len(idx)} < min_images_distribution={suite.min_images_distribution}"
            )
            results.append(entry)
            continue
        if metric is None:
            metric = InceptionDistance(
                device=prep.device,
                keep_features="kid" in suite.distribution_metrics,
                progress=False,
            )
        if real_key != tuple(idx):
            metric.reset(real=True)
            for k in range(0, len(idx), 100):
                metric.update(
                    load_images(prep.dataset, idx[k : k + 100]).to(prep.device), real=True
                )
            real_key = tuple(idx)
        else:
            metric.reset(real=False)
        wanted = set(idx)
        for bidx, images in batches:
            keep = [k for k, i in enumerate(bidx) if i in wanted]
            metric.update(images[keep].to(prep.device), real=False)
        scores = metric.compute(generator=0)
        entry["fid"] = scores.fid
        if scores.kid is not None:
            entry["kid"], entry["kid_std"] = scores.kid, scores.kid_std
        entry["n_real"], entry["n_fake"] = scores.n_real, scores.n_fake
        if progress:
            print(f"  {problem} / {label}: {scores}", file=sys.stderr)
        results.append(entry)
    return results


def _distribution_csv(results: list[dict[str, Any]], metrics: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["problem", "solver", "seed", "n", "n_real", "n_fake"]
    cols += [c for m in metrics for c in ((m, f"{m}_std") if m == "kid" else (m,))] + ["skipped"]
    w.writerow(cols)
    for r in results:
        w.writerow([r.get(c, "") for c in cols])
    return buf.getvalue()


def figure(prep: Any, out: Path, problem_name: str) -> Path | None:
    """measurement | each solver | truth, one row per image (the first ``figure_images``)."""
    from matplotlib.figure import Figure

    from invdiff.bench.runner import load_images, load_samples
    from invdiff.display import measurement_image
    from invdiff.images import to_uint8

    suite = prep.suite
    pairs = [p for p in prep.pairs if p.problem.name == problem_name]
    if not pairs or suite.figure_images == 0:
        return None
    problem = pairs[0].problem
    seed = suite.seeds[0]
    wanted = set(prep.indices[: suite.figure_images])
    columns = {
        p.solver.label: load_samples(out, problem_name, p.solver.label, seed, wanted) for p in pairs
    }
    idx = [i for i in prep.indices if any(i in s for s in columns.values())][: suite.figure_images]
    if not idx:
        return None
    x = load_images(prep.dataset, idx)
    op = prep.operators[problem_name]
    with torch.no_grad():
        y = problem.measure(x.to(prep.device), idx, seed, operator=op)
        meas, meas_title = measurement_image(y, op, problem.in_shape)
    titles = [meas_title, *columns, "truth"]
    ncols, nrows = len(titles), len(idx)
    fig = Figure(figsize=(1.3 * ncols, 1.3 * nrows + 0.4), dpi=100)
    blank = torch.zeros(1, *problem.in_shape)
    for r, i in enumerate(idx):
        panels = [meas[r : r + 1].cpu(), *[s.get(i, blank) for s in columns.values()], x[r : r + 1]]
        for c, img in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
            a = to_uint8(img.float())[0]
            ax.imshow(
                a[..., 0] if a.shape[-1] == 1 else a,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(f"#{i}", fontsize=7)
    fig.suptitle(problem_name, fontsize=9)
    fig.tight_layout()
    from invdiff.io import check_name, inside, write_with

    path = inside(out, out / "figures" / f"{check_name(problem_name, 'problem name')}.png")
    write_with(path, lambda f: fig.savefig(f, format="png"))
    return path


def bank_hashes(prep: Any) -> dict[str, Any]:
    """SHA-256 of the operator bank files the problems use (and of the banks' manifest)."""
    from invdiff.paths import banks_dir

    folder = banks_dir()
    out: dict[str, Any] = {}
    for p in prep.suite.problems:
        if p.bank is None:
            continue
        for candidate in (folder / f"{p.bank}.npz", folder / p.bank):
            if candidate.is_file():
                out[candidate.name] = mf.sha256_file(candidate)
                break
        else:
            out[p.bank] = None
    if out and (folder / "manifest.json").is_file():
        out["manifest.json"] = mf.sha256_file(folder / "manifest.json")
    return out


def write_all(
    prep: Any,
    rows: list[dict[str, Any]],
    out: Path,
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
    """Write every output of a finished run and return the manifest."""
    from invdiff.bench.runner import _now

    suite = prep.suite
    per_image = [*suite.metrics, *TIMING]
    summary = stats.summarize(rows, per_image)
    dist = distribution_metrics(prep, out, progress=progress)
    for d in dist:
        for m in suite.distribution_metrics:
            if m in d:
                summary.append(
                    stats.SummaryRow(
                        d["problem"],
                        d["solver"],
                        m,
                        stats.Estimate(d["n"], d[m], math.nan, math.nan),
                        0,
                    )
                )
    shown = [
        *suite.metrics,
        *[m for m in suite.distribution_metrics if any(m in d for d in dist)],
        *TIMING,
    ]
    notes = [
        f"suite `{suite.name}`: {len(prep.indices)} image(s) of `{suite.data.get('dataset')}`, "
        f"seeds {suite.seeds}, {len({r['problem'] for r in rows})} problem(s), "
        f"{len({r['solver'] for r in rows})} solver(s), {len(rows)} rows",
        f"device {prep.device}, world size {world.size}",
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
    if prep.skipped:
        notes.append(
            f"{len(prep.skipped)} solver/problem pair(s) skipped as incompatible (manifest.json)"
        )
    if errors:
        notes.append(f"{len(errors)} failed batch(es): see errors.jsonl")
    order = {
        "problems": [p.name for p in suite.problems],
        "solvers": [s.label for s in suite.solvers],
    }
    rowio.write_text_atomic(out / "summary.csv", stats.summary_csv(summary))
    rowio.write_text_atomic(
        out / "summary.md",
        stats.summary_markdown(
            summary, shown, title=f"Benchmark `{suite.name}`", notes=notes, **order
        ),
    )
    rowio.write_text_atomic(
        out / "table.tex",
        stats.summary_latex(
            summary,
            [*suite.metrics, *[m for m in suite.distribution_metrics if any(m in d for d in dist)]],
            caption=f"suite {suite.name}",
            **order,
        ),
    )
    if dist:
        rowio.write_text_atomic(
            out / "distribution.csv", _distribution_csv(dist, suite.distribution_metrics)
        )
    figs = []
    if figures and suite.save_samples:
        for p in suite.problems:
            path = figure(prep, out, p.name)
            if path is not None:
                figs.append(str(path.relative_to(out)))

    manifest = {
        "suite": {
            "name": suite.name,
            "path": str(suite.path) if suite.path else None,
            "sha256": suite.sha256,
            "description": suite.description,
            "overrides": suite.overrides,
            # how the priors' networks ran (precision, compile, checkpointing)
            "network": dataclasses.asdict(suite.network),
        },
        "command": sys.argv,
        "started": started,
        "finished": _now(),
        "wall_s": wall_s,
        # CPU time of this process (all its threads): on a busy shared machine a fairer
        # measure of the work than the wall time
        "cpu_s": cpu_s,
        "device": mf.device_info(prep.device),
        "world_size": world.size,
        "git": mf.git_commit(),
        "packages": mf.package_versions(),
        "priors": {
            key: {
                "folder": str(folder),
                "sha256": mf.weight_hashes(folder) if folder.exists() else {},
            }
            for key, folder in prep.prior_folders.items()
        },
        "operator_banks": bank_hashes(prep),
        "data": {
            "dataset": suite.data.get("dataset"),
            "options": {k: v for k, v in suite.data.items() if k not in ("indices",)},
            "n_images": len(prep.indices),
            "first_index": prep.indices[0] if prep.indices else None,
        },
        "problems": [p.name for p in suite.problems],
        "solvers": [
            {
                "label": s.label,
                "name": s.name,
                "steps": s.steps,
                "hyper": s.hyper,
                "per_problem": s.per_problem,
            }
            for s in suite.solvers
        ],
        "seeds": suite.seeds,
        "batch_size": suite.batch_size,
        "rows": len(rows),
        "expected_rows": len(prep.keys()),
        "this_run": counts,
        "skipped_pairs": prep.skipped,
        "failed_batches": len(errors),
        "figures": figs,
    }
    rowio.write_text_atomic(
        out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n"
    )
    return manifest
