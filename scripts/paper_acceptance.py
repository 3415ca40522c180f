"""Read a finished benchmark folder and answer the three questions a comparison table must settle:

1. **Against the baseline.** Each diffusion solver at the top budget against TV, paired on the
   same images: the mean PSNR and LPIPS differences with their 95 % intervals (``paired.csv``).
2. **More budget.** Each solver's change from its lowest to its highest NFE (``budgets.csv``):
   a change that is negative beyond its interval is flagged.
3. **Does the table rank?** Per problem and metric, the best and the worst solver by mean and
   whether their paired difference is significant.

    python3 scripts/paper_acceptance.py benchmarks/results/paper-cpu > acceptance.txt

Phase retrieval is read on ``psnr_aligned`` (PSNR up to its shifts and flip) where the folder
has it; problems TV cannot run (nonlinear operators) have no baseline row.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from invdiff.metrics.registry import METRICS


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _psnr_metric(problem: str, metrics: set[tuple[str, str]]) -> str:
    return "psnr_aligned" if "phase" in problem and (problem, "psnr_aligned") in metrics else "psnr"


def _paired(paired: list[dict[str, str]]):
    """``(problem, metric, a, b) -> (a - b, half width, significant)``, both orientations."""
    out = {}
    for r in paired:
        d, h, sig = float(r["mean_a_minus_b"]), float(r["ci95_half_width"]), r["significant"] == "1"
        out[(r["problem"], r["metric"], r["a"], r["b"])] = (d, h, sig)
        out[(r["problem"], r["metric"], r["b"], r["a"])] = (-d, h, sig)
    return out


def _verdict(d: float, h: float, higher_is_better: bool) -> str:
    good = d > 0 if higher_is_better else d < 0
    if abs(d) <= h:
        return "better (n.s.)" if good else "behind (n.s.)"
    return "BETTER" if good else "BEHIND"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a benchmark output folder (with paired.csv)")
    parser.add_argument("--baseline", default="tv")
    args = parser.parse_args(argv)
    summary = _read(args.folder / "summary.csv")
    paired = _paired(_read(args.folder / "paired.csv"))
    # a suite run at one budget per solver has no budget changes (the harness writes none)
    budget_file = args.folder / "budgets.csv"
    budgets = _read(budget_file) if budget_file.is_file() else []
    means = {(r["problem"], r["solver"], r["metric"]): float(r["mean"]) for r in summary}
    counts = {(r["problem"], r["solver"]): int(r["n"]) for r in summary}
    have = {(r["problem"], r["metric"]) for r in summary}
    problems = sorted({r["problem"] for r in summary})
    labels = defaultdict(set)
    for r in summary:
        labels[r["problem"]].add(r["solver"])
    top = max(
        (int(lab.rsplit("-nfe", 1)[1]) for s in labels.values() for lab in s if "-nfe" in lab),
        default=None,
    )

    print(f"# {args.folder}: {len(problems)} problems; paired 95 % intervals over the images")
    print(
        f"\n## 1. Diffusion solvers at {top} NFE against {args.baseline}"
        " (paired: solver - baseline)"
    )
    for problem in problems:
        ps = _psnr_metric(problem, have)
        if args.baseline not in labels[problem]:
            print(f"\n{problem}: no {args.baseline} rows (it cannot run this operator)")
            continue
        print(f"\n{problem} (n = {counts[(problem, args.baseline)]}; {ps}, lpips)")
        for label in sorted(lab for lab in labels[problem] if lab.endswith(f"-nfe{top}")):
            cells = []
            for metric in (ps, "lpips"):
                d, h, _ = paired[(problem, metric, label, args.baseline)]
                verdict = _verdict(d, h, METRICS[metric].higher_is_better)
                cells.append(f"{metric} {d:+.3f} ± {h:.3f} {verdict:14s}")
            print(f"  {label:20s} " + " | ".join(cells))

    print("\n## 2. Lowest to highest budget, per solver (change = high - low)")
    if not budget_file.is_file():
        print("  one budget per solver: no budgets.csv, nothing to compare")
    flagged = 0
    for r in budgets:
        metric = r["metric"]
        if metric not in ("psnr", "lpips") and not (
            metric == "psnr_aligned" and "phase" in r["problem"]
        ):
            continue
        d, h = float(r["change"]), float(r["ci95_half_width"])
        verdict = _verdict(d, h, METRICS[metric].higher_is_better)
        flagged += verdict == "BEHIND"
        print(
            f"  {r['problem']:24s} {r['solver']:12s} {metric:12s} {r['nfe_from']:>4s} -> "
            f"{r['nfe_to']:>4s} NFE: {d:+.3f} ± {h:.3f} {verdict}"
        )
    print(
        f"  {flagged} (problem, solver, metric) cells worse at the higher budget"
        " beyond the interval"
    )

    print("\n## 3. Best and worst solver per problem and metric (paired: best - worst)")
    for problem in problems:
        for metric in (_psnr_metric(problem, have), "lpips"):
            ranked = sorted(
                (means[(problem, lab, metric)], lab)
                for lab in labels[problem]
                if (problem, lab, metric) in means
            )
            if METRICS[metric].higher_is_better:
                ranked.reverse()
            (m_best, best), (m_worst, worst) = ranked[0], ranked[-1]
            d, h, sig = paired[(problem, metric, best, worst)]
            print(
                f"  {problem:24s} {metric:12s} best {best:18s} {m_best:8.4g} worst {worst:18s} "
                f"{m_worst:8.4g}: {d:+.3f} ± {h:.3f} {'separated' if sig else 'NOT separated'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
