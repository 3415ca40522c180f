"""Summary statistics of result rows: mean and Student-t 95% confidence interval, and the tables.

For ``n`` values with mean ``m`` and sample standard deviation ``s`` the two-sided 95%
interval of the mean is ``m +- t_{0.975, n-1} * s / sqrt(n)`` (undefined for ``n < 2``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as _scipy_stats

from invdiff.metrics.registry import METRICS


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` finite values with its 95% confidence half-width (NaN when ``n < 2``)."""

    n: int
    mean: float
    std: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> Estimate:
    """Mean and Student-t confidence interval of the finite values (None/NaN are ignored)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n < 2:
        return Estimate(1, mean, math.nan, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    t = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1))
    return Estimate(n, mean, std, t * std / math.sqrt(n))


@dataclass(frozen=True)
class SummaryRow:
    problem: str
    solver: str
    metric: str
    estimate: Estimate
    failed: int  # rows of this (problem, solver) without a finite value of the metric


def summarize(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> list[SummaryRow]:
    """One estimate per (problem, solver, metric), in order of first appearance."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["problem"], r["solver"]), []).append(r)
    out = []
    for (problem, solver), rs in groups.items():
        for m in metrics:
            est = mean_ci(r.get(m) for r in rs)
            out.append(SummaryRow(problem, solver, m, est, len(rs) - est.n))
    return out


def summary_csv(summary: Sequence[SummaryRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "problem",
            "solver",
            "metric",
            "n",
            "mean",
            "std",
            "ci95_low",
            "ci95_high",
            "ci95_half_width",
            "failed",
        ]
    )
    for s in summary:
        e = s.estimate
        w.writerow(
            [
                s.problem,
                s.solver,
                s.metric,
                e.n,
                _num(e.mean),
                _num(e.std),
                _num(e.low),
                _num(e.high),
                _num(e.half_width),
                s.failed,
            ]
        )
    return buf.getvalue()


def _num(x: float) -> str:
    return "" if not math.isfinite(x) else repr(float(x))


def _ordered(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _display(metric: str) -> tuple[str, str, str]:
    """(column title, number format, arrow) of a metric; an unregistered one has no arrow."""
    m = METRICS.get(metric)
    return (m.title, m.fmt, m.arrow) if m else (metric, "{:.3g}", "")


def _cell(e: Estimate, metric: str, ci: bool = True) -> str:
    if e.n == 0:
        return "-"
    fmt = _display(metric)[1]
    text = fmt.format(e.mean)
    if ci and math.isfinite(e.half_width):
        text += " ± " + fmt.format(e.half_width)
    return text


def _best(summary: Sequence[SummaryRow], metric: str) -> dict[str, float]:
    """The best mean per problem for ``metric``, in the registry's direction; none for a cost
    column or a metric whose direction is unknown (nothing is bolded on a guess)."""
    m = METRICS.get(metric)
    best: dict[str, float] = {}
    if m is None or not m.ranked:
        return best
    for s in summary:
        if s.metric != metric or s.estimate.n == 0:
            continue
        v = s.estimate.mean
        if s.problem not in best or m.better(v, best[s.problem]):
            best[s.problem] = v
    return best


def _grid(
    summary: Sequence[SummaryRow], metric: str, problems: Sequence[str], solvers: Sequence[str]
) -> Iterator[tuple[str, list[tuple[Estimate, bool] | None]]]:
    """Per problem, per solver: (the estimate, whether it is the problem's best), or ``None``
    where the pair did not run."""
    lut = {(s.problem, s.solver): s.estimate for s in summary if s.metric == metric}
    best = _best(summary, metric)
    for p in problems:
        cells: list[tuple[Estimate, bool] | None] = []
        for so in solvers:
            e = lut.get((p, so))
            cells.append(None if e is None or e.n == 0 else (e, e.mean == best.get(p)))
        yield p, cells


def _axes(
    summary: Sequence[SummaryRow], problems: Sequence[str] | None, solvers: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """Problems and solvers in the given order (e.g. the suite's); those without values left out."""
    have_p = {s.problem for s in summary}
    have_s = {s.solver for s in summary}
    ps = [p for p in problems if p in have_p] if problems else _ordered(s.problem for s in summary)
    ss = [x for x in solvers if x in have_s] if solvers else _ordered(s.solver for s in summary)
    return ps, ss


def summary_markdown(
    summary: Sequence[SummaryRow],
    metrics: Sequence[str],
    *,
    title: str = "",
    notes: Sequence[str] = (),
    problems: Sequence[str] | None = None,
    solvers: Sequence[str] | None = None,
) -> str:
    """One table per metric: problems down, solvers across, ``mean ± 95% CI`` (best in bold)."""
    problems, solvers = _axes(summary, problems, solvers)
    lines = [f"# {title}", ""] if title else []
    lines += [
        "Mean ± half-width of the 95% Student-t confidence interval over images and seeds "
        "(n per cell in summary.csv); best mean per problem in bold; `-`: not run.",
        "",
    ]
    for note in notes:
        lines += [f"- {note}"]
    if notes:
        lines.append("")
    for m in metrics:
        head, _, arrow = _display(m)
        lines += [f"## {head} {arrow}".rstrip(), ""]
        lines.append("| problem | " + " | ".join(solvers) + " |")
        lines.append("|---|" + "---|" * len(solvers))
        for p, row in _grid(summary, m, problems, solvers):
            cells = [
                "-" if c is None else (f"**{_cell(c[0], m)}**" if c[1] else _cell(c[0], m))
                for c in row
            ]
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
    ):
        text = text.replace(a, b)
    return text


def _tex_cell(e: Estimate, best: bool, fmt: str) -> str:
    c = fmt.format(e.mean)
    if best:
        c = r"\textbf{" + c + "}"
    if math.isfinite(e.half_width):
        c += r"{\scriptsize$\pm$" + fmt.format(e.half_width) + "}"
    return c


def summary_latex(
    summary: Sequence[SummaryRow],
    metrics: Sequence[str],
    *,
    caption: str = "",
    problems: Sequence[str] | None = None,
    solvers: Sequence[str] | None = None,
) -> str:
    """A booktabs table per metric (problems down, solvers across, best mean in bold)."""
    problems, solvers = _axes(summary, problems, solvers)
    out = ["% generated by `invdiff bench`; needs \\usepackage{booktabs}"]
    for m in metrics:
        head, fmt, arrow = _display(m)
        arrow = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}.get(arrow, "")
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            r"\begin{tabular}{l" + "c" * len(solvers) + "}",
            r"\toprule",
            "Problem & " + " & ".join(_tex_escape(s) for s in solvers) + r" \\",
            r"\midrule",
        ]
        for p, row in _grid(summary, m, problems, solvers):
            cells = ["--" if c is None else _tex_cell(*c, fmt) for c in row]
            out.append(_tex_escape(p) + " & " + " & ".join(cells) + r" \\")
        cap = (_tex_escape(head) + " " + arrow).rstrip() + (
            ": " + _tex_escape(caption) if caption else ""
        )
        cap += r", mean $\pm$ 95\% confidence interval."
        out += [r"\bottomrule", r"\end{tabular}", r"\caption{" + cap + "}", r"\end{table}", ""]
    return "\n".join(out)
