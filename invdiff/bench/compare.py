"""Compute-matched comparisons: quality against cost, the Pareto front, paired differences.

Solvers are compared at equal network evaluations (NFE), not at equal ``steps``. From the rows
of a run this module gives, per problem:

* **curves**: each solver's mean quality (with its 95% Student-t interval over images and
  seeds) at each budget it ran, against the NFE it used and against its wall time per image;
  a suite that sweeps ``nfe = [...]`` gives one point per budget (``figures/curves-*.png``);
* **the Pareto front**: the (solver, budget) points no other point beats on both quality and
  NFE (``pareto.csv``), the trade-offs worth reporting;
* **paired comparisons**: two solvers run on the same images and measurements, so their
  difference is judged on the per-image differences (Student-t interval of the mean
  difference and the paired t-test; Wilcoxon signed-rank beside it, which does not assume
  normal differences), not on two overlapping intervals. ``paired.csv`` holds every pair of
  labels per problem and metric; the tables mark which solvers the best one beats
  significantly;
* **budget changes**: for a solver run at several budgets, the paired change from its
  smallest budget to each larger one (``budgets.csv``): whether more network evaluations help,
  and the (problem, solver) pairs where they significantly hurt, named in the summary.

A point's NFE is the mean counted per image batch (``nfe`` of the rows), its cost the mean
``wall_s``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from invdiff.bench.stats import Estimate, mean_ci
from invdiff.metrics.registry import METRICS


@dataclass(frozen=True)
class Point:
    """One (problem, label) of a run: its solver, mean NFE, mean wall time and quality."""

    problem: str
    label: str
    solver: str
    nfe: float
    wall_s: float
    quality: Estimate


def points(rows: Sequence[dict[str, Any]], metric: str) -> list[Point]:
    """One point per (problem, label), in order of first appearance."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["problem"], r["solver"]), []).append(r)
    out = []
    for (problem, label), rs in groups.items():
        nfe = [float(r["nfe"]) for r in rs if r.get("nfe") is not None]
        wall = [float(r["wall_s"]) for r in rs if r.get("wall_s") is not None]
        out.append(
            Point(
                problem,
                label,
                rs[0].get("solver_name", label),
                sum(nfe) / len(nfe) if nfe else math.nan,
                sum(wall) / len(wall) if wall else math.nan,
                mean_ci(r.get(metric) for r in rs),
            )
        )
    return out


def pareto_front(pts: Sequence[Point], metric: str) -> list[Point]:
    """The points of one problem that no other point dominates: at most its NFE and at least
    its quality (in the metric's direction), better in one of the two."""
    sign = 1.0 if METRICS[metric].higher_is_better else -1.0
    good = [p for p in pts if math.isfinite(p.quality.mean) and math.isfinite(p.nfe)]

    def dominates(a: Point, b: Point) -> bool:
        qa, qb = sign * a.quality.mean, sign * b.quality.mean
        return a.nfe <= b.nfe and qa >= qb and (a.nfe < b.nfe or qa > qb)

    front = [p for p in good if not any(dominates(q, p) for q in good if q is not p)]
    return sorted(front, key=lambda p: p.nfe)


@dataclass(frozen=True)
class Paired:
    """The per-image difference ``a - b`` of one metric between two labels of one problem."""

    problem: str
    metric: str
    a: str
    b: str
    difference: Estimate
    p_ttest: float
    p_wilcoxon: float

    @property
    def significant(self) -> bool:
        """The 95% interval of the mean difference excludes 0."""
        d = self.difference
        return d.n >= 2 and math.isfinite(d.half_width) and abs(d.mean) > d.half_width

    def a_better(self) -> bool:
        return (
            self.significant and (self.difference.mean > 0) == METRICS[self.metric].higher_is_better
        )


def paired(rows: Sequence[dict[str, Any]], metric: str) -> list[Paired]:
    """Every pair of labels of each problem, on the (image, seed) keys both have."""
    by: dict[str, dict[str, dict[tuple[int, int], float]]] = {}
    for r in rows:
        v = r.get(metric)
        if v is None or not math.isfinite(float(v)):
            continue
        by.setdefault(r["problem"], {}).setdefault(r["solver"], {})[(r["image"], r["seed"])] = (
            float(v)
        )
    out = []
    for problem, labels in by.items():
        for a, b in combinations(labels, 2):
            keys = sorted(set(labels[a]) & set(labels[b]))
            diffs = [labels[a][k] - labels[b][k] for k in keys]
            est = mean_ci(diffs)
            p_t = p_w = math.nan
            if len(diffs) >= 2 and any(d != 0 for d in diffs):
                p_w = float(scipy_stats.wilcoxon(diffs).pvalue)
                # a constant difference has no spread: certain, and the t statistic undefined
                constant = max(diffs) - min(diffs) <= 1e-12 * max(abs(d) for d in diffs)
                p_t = 0.0 if constant else float(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
            out.append(Paired(problem, metric, a, b, est, p_t, p_w))
    return out


def paired_csv(pairs: Sequence[Paired]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["problem", "metric", "a", "b", "n", "mean_a_minus_b", "ci95_half_width", "p_ttest"]
        + ["p_wilcoxon", "significant", "better"]
    )
    for p in pairs:
        d = p.difference
        better = (p.a if p.a_better() else p.b) if p.significant else ""
        w.writerow(
            [p.problem, p.metric, p.a, p.b, d.n, f"{d.mean:.6g}", f"{d.half_width:.6g}"]
            + [f"{p.p_ttest:.3g}", f"{p.p_wilcoxon:.3g}", int(p.significant), better]
        )
    return buf.getvalue()


def pareto_csv(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["problem", "metric", "label", "solver", "nfe", "wall_s", "mean", "ci95_half_width"])
    for m in metrics:
        pts = points(rows, m)
        for problem in dict.fromkeys(p.problem for p in pts):
            for p in pareto_front([q for q in pts if q.problem == problem], m):
                w.writerow(
                    [problem, m, p.label, p.solver, f"{p.nfe:.6g}", f"{p.wall_s:.6g}"]
                    + [f"{p.quality.mean:.6g}", f"{p.quality.half_width:.6g}"]
                )
    return buf.getvalue()


@dataclass(frozen=True)
class BudgetChange:
    """A solver's paired change in one metric from its smallest budget to a larger one."""

    problem: str
    metric: str
    solver: str
    base: str  # label of the smallest budget
    label: str
    base_nfe: float
    nfe: float
    change: Estimate  # label - base, per image

    @property
    def significant(self) -> bool:
        d = self.change
        return d.n >= 2 and math.isfinite(d.half_width) and abs(d.mean) > d.half_width

    @property
    def verdict(self) -> str:
        """``better`` or ``worse`` with the larger budget (significant, paired), else empty."""
        if not self.significant:
            return ""
        return (
            "better" if (self.change.mean > 0) == METRICS[self.metric].higher_is_better else "worse"
        )


def budget_changes(rows: Sequence[dict[str, Any]], pairs: Sequence[Paired]) -> list[BudgetChange]:
    """For each (problem, solver) with several budgets: the change from the smallest budget
    to each larger one, read off the paired comparisons of the same images."""
    out = []
    by_pair = {(p.problem, p.metric, p.a, p.b): p for p in pairs}
    for metric in dict.fromkeys(p.metric for p in pairs):
        pts = points(rows, metric)
        for problem in dict.fromkeys(p.problem for p in pts):
            by_solver: dict[str, list[Point]] = {}
            for p in pts:
                if p.problem == problem and math.isfinite(p.nfe) and p.nfe > 0:
                    by_solver.setdefault(p.solver, []).append(p)
            for solver, budgets in by_solver.items():
                budgets.sort(key=lambda p: p.nfe)
                base = budgets[0]
                for other in budgets[1:]:
                    pair = by_pair.get((problem, metric, other.label, base.label))
                    sign = 1.0
                    if pair is None:
                        pair, sign = by_pair.get((problem, metric, base.label, other.label)), -1.0
                    if pair is None:
                        continue
                    d = pair.difference
                    change = Estimate(d.n, sign * d.mean, d.std, d.half_width)
                    out.append(
                        BudgetChange(
                            problem,
                            metric,
                            solver,
                            base.label,
                            other.label,
                            base.nfe,
                            other.nfe,
                            change,
                        )
                    )
    return out


def budgets_csv(changes: Sequence[BudgetChange]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["problem", "metric", "solver", "from", "to", "nfe_from", "nfe_to", "n", "change"]
        + ["ci95_half_width", "verdict"]
    )
    for c in changes:
        d = c.change
        w.writerow(
            [c.problem, c.metric, c.solver, c.base, c.label, f"{c.base_nfe:.6g}", f"{c.nfe:.6g}"]
            + [d.n, f"{d.mean:.6g}", f"{d.half_width:.6g}", c.verdict]
        )
    return buf.getvalue()


def beaten_by_best(pairs: Sequence[Paired], problem: str, best: str, metric: str) -> list[str]:
    """The labels the best one beats significantly on ``problem`` in ``metric`` (paired)."""
    out = []
    for p in pairs:
        if p.problem != problem or p.metric != metric or best not in (p.a, p.b):
            continue
        if not p.significant:
            continue
        other = p.b if p.a == best else p.a
        if (p.a_better() and p.a == best) or (not p.a_better() and p.b == best):
            out.append(other)
    return out


def curves_figure(
    rows: Sequence[dict[str, Any]], problem: str, metrics: Sequence[str], path: Path
) -> Path | None:
    """Quality against NFE (top) and wall time per image (bottom), one line per solver with a
    95% band, for the metrics given; None when no solver ran more than one budget."""
    from invdiff.display import save_figure

    mine = [r for r in rows if r["problem"] == problem]
    sweeps = {}
    for p in points(mine, metrics[0]):
        sweeps.setdefault(p.solver, set()).add(p.label)
    if not any(len(labels) > 1 for labels in sweeps.values()):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 6.4), dpi=100)
    for col, m in enumerate(metrics):
        pts = points(mine, m)
        for row, (axis, xlabel) in enumerate(
            (("nfe", "network evaluations"), ("wall_s", "wall time per image [s]"))
        ):
            ax = fig.add_subplot(2, len(metrics), row * len(metrics) + col + 1)
            for solver in dict.fromkeys(p.solver for p in pts):
                mine_pts = sorted(
                    (p for p in pts if p.solver == solver and math.isfinite(p.quality.mean)),
                    key=lambda p: getattr(p, axis),
                )
                if not mine_pts:
                    continue
                if axis == "nfe" and all(p.nfe == 0 for p in mine_pts):
                    # a prior-free baseline makes no network evaluations: a level to beat
                    ax.axhline(mine_pts[0].quality.mean, ls="--", lw=0.8, color="0.4")
                    ax.annotate(
                        solver,
                        (0.01, mine_pts[0].quality.mean),
                        fontsize=6,
                        xycoords=("axes fraction", "data"),
                        color="0.3",
                    )
                    continue
                xs = [getattr(p, axis) for p in mine_pts]
                ys = [p.quality.mean for p in mine_pts]
                hw = [
                    p.quality.half_width if math.isfinite(p.quality.half_width) else 0.0
                    for p in mine_pts
                ]
                (line,) = ax.plot(xs, ys, marker="o", ms=3, lw=1, label=solver)
                ax.fill_between(
                    xs,
                    [y - h for y, h in zip(ys, hw)],
                    [y + h for y, h in zip(ys, hw)],
                    color=line.get_color(),
                    alpha=0.15,
                    lw=0,
                )
            ax.set_xscale("log")
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(f"{METRICS[m].title} {METRICS[m].arrow}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{problem}: quality against cost (mean, 95% band)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = [
    "BudgetChange",
    "Paired",
    "Point",
    "beaten_by_best",
    "budget_changes",
    "budgets_csv",
    "curves_figure",
    "paired",
    "paired_csv",
    "pareto_csv",
    "pareto_front",
    "points",
]
