"""Summarise a tuned table: how many entries left the defaults, and the best and worst solver
per (problem, budget) on the validation images, by LPIPS.

    python3 scripts/tuned_table_summary.py benchmarks/tuned/fmnist32.json
"""

from __future__ import annotations

import sys
from collections import defaultdict

from invdiff import solvers
from invdiff.bench.tuning import TunedTable


def main(argv: list[str] | None = None) -> int:
    path = (argv if argv is not None else sys.argv[1:])[0]
    table = TunedTable.load(path)
    by_setting: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    changed = 0
    for (solver, problem, _prior, budget), entry in sorted(table.entries.items()):
        by_setting[(problem, budget)].append((entry.lpips, entry.psnr, solver))
        defaults = solvers.get(solver).defaults
        changed += any(entry.hyper.get(k) != defaults.get(k) for k in entry.hyper)
    print(f"{len(table.entries)} entries; {changed} differ from the defaults")
    for (problem, budget), cells in sorted(by_setting.items()):
        cells.sort()
        (lp, ps, best), (worst_lp, _, worst) = cells[0], cells[-1]
        print(
            f"{problem:24s} {budget:7s} best {best:12s} LPIPS {lp:.4f} PSNR {ps:5.2f} | "
            f"worst {worst} LPIPS {worst_lp:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
