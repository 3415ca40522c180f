"""The harness's parts: a metric is one registry entry, the report reads only the run's store."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bench import TINY_SUITE, make_tiny_setup

import invdiff.bench
from invdiff.bench import stats
from invdiff.bench.runner import run
from invdiff.bench.store import RunStore
from invdiff.bench.suite import load
from invdiff.metrics import METRICS, Metric

TWO_SOLVERS = TINY_SUITE[: TINY_SUITE.index("[[solvers]]")] + (
    '[[solvers]]\nname = "pinv"\nsteps = 1\n\n[[solvers]]\nname = "tikhonov"\nsteps = 1\n'
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-harness")
    paths = make_tiny_setup(root)
    paths["suite"] = root / "two.toml"
    paths["suite"].write_text(TWO_SOLVERS.format(**paths).replace("seeds = [0, 1]", "seeds = [0]"))
    return paths


def squared_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return (x - ref).pow(2).flatten(1).mean(1)


def test_a_metric_is_one_registry_entry(tiny, tmp_path):
    """Registered once, a lower-is-better metric is accepted by the parser, scored per image and
    shown with its title, its arrow and the lowest mean per problem in bold."""
    entry = Metric("sq_err", squared_error, higher_is_better=False, title="SqErr", fmt="{:.5f}")
    METRICS.register(entry)
    try:
        f = tmp_path / "metric.toml"
        text = (
            tiny["suite"].read_text().replace('metrics = ["psnr", "ssim"]', 'metrics = ["sq_err"]')
        )
        f.write_text(text)
        out = tmp_path / "out"
        run(load(f, limit=2), out, progress=False, figures=False)
        csv = (out / "summary.csv").read_text().splitlines()
        means = {
            (p, s): float(mean)
            for p, s, m, _, mean, *_ in (line.split(",") for line in csv[1:])
            if m == "sq_err"
        }
        assert len(means) == 4  # 2 problems x 2 solvers
        md = (out / "summary.md").read_text()
        assert "## SqErr ↓" in md
        for problem in ("tiny-box", "tiny-blur"):
            lowest = min(v for (p, _), v in means.items() if p == problem)
            line = next(x for x in md.splitlines() if x.startswith(f"| {problem} |"))
            assert f"**{lowest:.5f}" in line and line.count("**") == 2
        assert r"\textbf{" in (out / "table.tex").read_text()
    finally:
        METRICS.unregister("sq_err")
    with pytest.raises(invdiff.bench.SuiteError, match="sq_err"):
        load(f)


def test_an_unknown_metric_is_never_bolded():
    rows = [
        {"image": 0, "problem": "p", "solver": s, "seed": 0, "mystery": v}
        for s, v in (("a", 1.0), ("b", 2.0))
    ]
    summary = stats.summarize(rows, ["mystery"])
    assert "**" not in stats.summary_markdown(summary, ["mystery"])
    assert r"\textbf" not in stats.summary_latex(summary, ["mystery"])


def test_y_is_stored_beside_the_samples_and_the_report_never_measures(tiny, tmp_path, monkeypatch):
    from invdiff.problems import Problem

    suite = load(tiny["suite"], limit=2)
    out = tmp_path / "out"
    run(suite, out, progress=False)
    store = RunStore(out)
    batch = next(iter(store.iter_samples("tiny-box", "pinv", 0)))
    problem = next(p for p in suite.problems if p.name == "tiny-box")
    from invdiff.bench.plan import load_images
    from invdiff.data import get as get_data

    data = get_data("image_folder", root=str(tiny["images"]), size=16, channels=1)
    x = load_images(data, batch.indices)
    assert torch.equal(batch.y, problem.measure(x, batch.indices, 0, operator=problem.operator()))
    with np.load(store.samples_path("tiny-box", "pinv", 0, 0)) as z:
        assert set(z.files) == {"images", "indices", "y"}

    # a second run finds every row done: the report is written from the store alone
    figure = out / "figures" / "tiny-box.png"
    figure.unlink()

    def no_measuring(*a, **k):
        raise AssertionError("the report measured again")

    monkeypatch.setattr(Problem, "measure", no_measuring)
    manifest = run(suite, out, progress=False)
    assert manifest["this_run"]["rows"] == 0 and figure.is_file()

    # a folder written before y was stored: the figure shows a blank measurement panel
    for f in (out / "samples").rglob("*.npz"):
        with np.load(f) as z:
            kept = {"images": z["images"], "indices": z["indices"]}
        np.savez_compressed(f, **kept)
    figure.unlink()
    run(suite, out, progress=False)
    assert figure.is_file()


def test_harness_modules_do_not_import_the_runner():
    """runner.py sits on top: plan, store, loop and report never import it (no cycle)."""
    folder = Path(invdiff.bench.__file__).parent
    for name in ("plan", "store", "loop", "report", "stats", "rows", "manifest"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in n.names
        }
        assert not any(m and m.endswith("bench.runner") for m in imported), name
        assert "invdiff.bench.runner" not in {
            f"{n.module}.{a.name}"
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for a in n.names
        }, name


def test_one_file_hash(tmp_path):
    import hashlib

    from invdiff.bench import manifest
    from invdiff.io import file_digest, sha256_file

    f = tmp_path / "w.bin"
    f.write_bytes(bytes(range(256)) * 5000)  # several read blocks
    assert sha256_file(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_digest(f, "sha1", chunk=1000) == hashlib.sha1(f.read_bytes()).hexdigest()
    assert manifest.weight_hashes(f) == {"w.bin": sha256_file(f)}
