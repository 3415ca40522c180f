"""Compute-matched comparisons: the Pareto front, paired differences, curves from a sweep."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from invdiff.bench import compare


def _rows():
    """Three solvers on four images: 'b' is 'a' plus 1 dB on every image (a tiny spread in
    the difference, so paired it is clearly better although the intervals overlap)."""
    base = [20.0, 25.0, 30.0, 22.0]
    rows = []
    for label, nfe, shift, wall in (
        ("a", 20, 0.0, 1.0),
        ("b", 100, 1.0, 5.0),
        ("c", 200, 0.5, 9.0),
    ):
        for i, v in enumerate(base):
            rows.append(
                {
                    "problem": "p",
                    "solver": label,
                    "solver_name": "dps" if label != "a" else "ddrm",
                    "image": i,
                    "seed": 0,
                    "psnr": v + shift + (0.01 * i if label == "b" else 0.0),
                    "nfe": nfe,
                    "wall_s": wall,
                }
            )
    return rows


def test_pareto_front_keeps_the_undominated_points():
    rows = _rows()
    front = compare.pareto_front(compare.points(rows, "psnr"), "psnr")
    assert [p.label for p in front] == ["a", "b"]  # c costs more than b and is worse
    text = compare.pareto_csv(rows, ["psnr"])
    assert text.splitlines()[0].startswith("problem,metric,label") and len(text.splitlines()) == 3


def test_paired_differences_against_scipy():
    rows = _rows()
    pairs = {(p.a, p.b): p for p in compare.paired(rows, "psnr")}
    ab = pairs[("a", "b")]
    diffs = [-(1.0 + 0.01 * i) for i in range(4)]
    assert ab.difference.n == 4 and ab.difference.mean == pytest.approx(sum(diffs) / 4)
    assert ab.p_ttest == pytest.approx(scipy_stats.ttest_1samp(diffs, 0.0).pvalue)
    assert ab.significant and not ab.a_better()
    # unpaired, the two means' intervals overlap widely: only the pairing separates them
    a = [r["psnr"] for r in rows if r["solver"] == "a"]
    half = scipy_stats.t.ppf(0.975, 3) * scipy_stats.tstd(a) / 2
    assert half > 1.5
    assert compare.beaten_by_best(list(pairs.values()), "p", "b", "psnr") == ["a", "c"]
    assert math.isnan(pairs[("a", "c")].p_wilcoxon) is False


def test_a_sweep_draws_quality_against_cost(tmp_path):
    import json

    from test_bench import TINY_SUITE, make_tiny_setup

    from invdiff.bench.runner import run
    from invdiff.bench.suite import load

    paths = make_tiny_setup(tmp_path)
    head = TINY_SUITE[: TINY_SUITE.index("[[solvers]]")].replace("seeds = [0, 1]", "seeds = [0]")
    f = tmp_path / "s.toml"
    f.write_text(
        head.format(**paths)
        + '[[solvers]]\nname = "ddrm"\nnfe = [2, 4]\n\n[[solvers]]\nname = "pinv"\nsteps = 1\n'
    )
    out = tmp_path / "out"
    run(load(f, limit=2), out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "figures/curves-tiny-box.png" in manifest["figures"]
    assert (out / "figures" / "curves-tiny-blur.png").is_file()
    assert (out / "paired.csv").read_text().count(
        "\n"
    ) == 1 + 2 * 3 * 2  # problems x pairs x metrics
    summary = (out / "summary.md").read_text()
    assert "significantly better (paired, 95%)" in summary
    assert "more NFE (PSNR [dB]): helped in" in summary
    budgets = (out / "budgets.csv").read_text().splitlines()
    assert len(budgets) == 1 + 2 * 2  # problems x metrics, ddrm 2 -> 4 NFE
    for line in summary.splitlines():  # never more beaten than there are others
        if "significantly better" in line:
            beaten, others = line.split(" than ")[1].split(":")[0].split(" of ")
            assert int(beaten) <= int(others)


def test_budget_changes_are_paired_and_signed():
    """'b' and 'c' are dps at 100 and 200 NFE: from 100 to 200 it loses 0.5 dB on every image
    (worse, significantly); ddrm runs one budget and has no change."""
    rows = _rows()
    pairs = compare.paired(rows, "psnr")
    changes = compare.budget_changes(rows, pairs)
    assert [(c.solver, c.base, c.label) for c in changes] == [("dps", "b", "c")]
    change = changes[0]
    assert change.change.mean == pytest.approx(-0.5 - 0.01 * 1.5)
    assert change.verdict == "worse" and (change.base_nfe, change.nfe) == (100, 200)
    text = compare.budgets_csv(changes)
    assert text.splitlines()[1].startswith("p,psnr,dps,b,c,100,200,4,") and text.endswith("worse\n")
