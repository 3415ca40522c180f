"""The benchmark harness: suites, validation before work, rows, resume, statistics, outputs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

import invdiff
from invdiff.bench import rows as rowio
from invdiff.bench import stats
from invdiff.bench.runner import run
from invdiff.bench.suite import SuiteError, load

# ---------------------------------------------------------------- a tiny benchmark set-up


def make_tiny_setup(root: Path) -> dict[str, Path]:
    """Six 16x16 grey images and an untrained 16x16 pixel prior, written like a user's folders."""
    from conftest import tiny_unet
    from diffusers import DDPMScheduler

    from invdiff.images import save_image
    from invdiff.priors.pixel import PixelPrior

    images = root / "images"
    g = torch.Generator().manual_seed(0)
    for i in range(6):
        save_image(torch.rand(1, 1, 16, 16, generator=g) * 2 - 1, images / f"img{i}.png")
    prior = PixelPrior(tiny_unet(16), DDPMScheduler(num_train_timesteps=1000)).save(root / "prior")
    return {"images": images, "prior": prior}


TINY_SUITE = """
name = "tiny"
device = "cpu"
batch_size = 2
seeds = [0, 1]
metrics = ["psnr", "ssim"]
figure_images = 2
problems = []

[data]
dataset = "image_folder"
root = "{images}"
size = 16
channels = 1

[priors]
pixel = "{prior}"

[[problem]]
name = "tiny-box"
dataset = "image_folder"
image_size = 16
[problem.operator]
name = "inpainting_box"
box = 8
seed = 0
[problem.noise]
name = "gaussian"
sigma = 0.05

[[problem]]
name = "tiny-blur"
dataset = "image_folder"
image_size = 16
[problem.operator]
name = "gaussian_blur"
size = 3
sigma = 1.0
[problem.noise]
name = "gaussian"
sigma = 0.0

[[solvers]]
name = "pinv"
steps = 1

[[solvers]]
name = "dps"
steps = 2
hyper = {{ zeta = 0.5 }}
problems = ["tiny-box"]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    paths = make_tiny_setup(root)
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE.format(**paths))
    paths["suite"] = suite
    return paths


def metric_rows(path: Path) -> dict:
    return {rowio.row_key(r): (r["psnr"], r["ssim"], r["nfe"]) for r in rowio.read(path)}


# ---------------------------------------------------------------- statistics


def test_mean_ci_is_the_student_t_interval():
    xs = [1.0, 2.0, 4.0, 8.0, 9.5]
    e = stats.mean_ci(xs)
    lo, hi = scipy_stats.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 5, scale=scipy_stats.sem(xs))
    assert e.n == 5 and e.mean == pytest.approx(4.9)
    assert (e.low, e.high) == (pytest.approx(lo), pytest.approx(hi))
    assert stats.mean_ci([2.0, None, math.nan, 4.0]).n == 2  # failed values are not averaged
    one = stats.mean_ci([3.0])
    assert one.mean == 3.0 and math.isnan(one.half_width)
    assert stats.mean_ci([]).n == 0


def test_summary_tables():
    rows = [
        {"image": i, "problem": p, "solver": s, "seed": 0, "psnr": v + i, "lpips": 0.1 * v}
        for p in ("sr", "box")
        for s, v in (("a", 20.0), ("b", 25.0))
        for i in range(3)
    ]
    rows[0]["psnr"] = None  # a diverged sample
    summary = stats.summarize(rows, ["psnr", "lpips"])
    assert len(summary) == 8
    a_sr = next(s for s in summary if (s.problem, s.solver, s.metric) == ("sr", "a", "psnr"))
    assert a_sr.estimate.n == 2 and a_sr.failed == 1 and a_sr.estimate.mean == pytest.approx(21.5)
    csv_text = stats.summary_csv(summary)
    assert csv_text.splitlines()[0].startswith("problem,solver,metric,n,mean,std,ci95_low")
    md = stats.summary_markdown(summary, ["psnr", "lpips"], title="t")
    assert "| sr | 21.50 ± " in md and "**26.00 ± 2.48**" in md  # best PSNR in bold
    assert "| sr | **2.000 ± 0.000** | 2.500" in md  # best LPIPS: the smaller one
    tex = stats.summary_latex(summary, ["psnr", "lpips"])
    assert tex.count(r"\toprule") == 2 and r"\textbf{26.00}" in tex and r"\bottomrule" in tex


# ---------------------------------------------------------------- rows: atomic appends


def test_rows_append_read_repair_and_merge(tmp_path):
    f = tmp_path / "rows.rank0.jsonl"
    for i in range(3):
        rowio.append(f, {"image": i, "problem": "p", "solver": "s", "seed": 0, "psnr": float(i)})
    with open(f, "ab") as h:  # a kill in the middle of a write leaves a torn line
        h.write(b'{"image": 3, "problem": "p", "sol')
    assert [r["image"] for r in rowio.read(f)] == [0, 1, 2]
    assert rowio.repair(f) > 0 and f.read_bytes().endswith(b"\n")
    rowio.append(f, {"image": 3, "problem": "p", "solver": "s", "seed": 0, "psnr": math.nan})
    got = list(rowio.read(f))
    assert [r["image"] for r in got] == [0, 1, 2, 3] and got[3]["psnr"] is None  # NaN -> null

    other = tmp_path / "rows.rank1.jsonl"
    rowio.append(
        other, {"image": 2, "problem": "p", "solver": "s", "seed": 0, "psnr": 2.0}
    )  # duplicate
    rowio.append(other, {"image": 0, "problem": "p", "solver": "s", "seed": 1, "psnr": 9.0})
    merged = rowio.merge(tmp_path / "rows.jsonl", [f, other])
    assert len(merged) == 5 and not f.exists() and not other.exists()
    assert len(list(rowio.read(tmp_path / "rows.jsonl"))) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no temporary file left


def test_append_is_one_write_with_o_append(tmp_path, monkeypatch):
    calls = []
    real_open, real_write = os.open, os.write
    monkeypatch.setattr(
        os, "open", lambda p, flags, *a: calls.append(("open", flags)) or real_open(p, flags, *a)
    )
    monkeypatch.setattr(
        os, "write", lambda fd, b: calls.append(("write", len(b))) or real_write(fd, b)
    )
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append(("fsync",)))
    rowio.append(tmp_path / "r.jsonl", {"image": 0, "problem": "p", "solver": "s", "seed": 0})
    assert calls[0][0] == "open" and calls[0][1] & os.O_APPEND
    assert [c[0] for c in calls[1:]] == ["write", "fsync"]


# ---------------------------------------------------------------- validation before work


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace('name = "tiny"', 'name = "tiny"\ncolour = 1'), "unknown key"),
        (lambda s: s.replace('name = "pinv"', 'name = "pniv"'), "unknown solver 'pniv'"),
        (lambda s: s.replace("steps = 2", "steps = 0"), "steps must be a positive integer"),
        (lambda s: s.replace("zeta = 0.5", "zetta = 0.5"), "no hyperparameter"),
        (lambda s: s.replace("problems = []", 'problems = ["fmnist-sr5"]'), "unknown problem"),
        (lambda s: s.replace('"psnr", "ssim"', '"psnr", "fsim"'), "metrics"),
        (lambda s: s.replace("seeds = [0, 1]", "seeds = [0, 0]"), "seeds"),
        (
            lambda s: s.replace("batch_size = 2", "batch_size = 2.5"),
            "batch_size must be an integer",
        ),
        (lambda s: s.replace('name = "dps"', 'name = "dps"\nlabel = "pinv"'), "unique"),
        (
            lambda s: s.replace('name = "gaussian_blur"', 'name = "gausian_blur"'),
            "not a registered operator",
        ),
    ],
)
def test_bad_suite_files_fail_when_parsed(tiny, tmp_path, edit, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(tiny["suite"].read_text()))
    with pytest.raises(SuiteError, match=message):
        load(bad)


@pytest.mark.parametrize(
    "edit, message",
    [
        # a solver that needs an SVD operator on a linear operator without an SVD
        (
            lambda s: (
                s.replace('name = "dps"', 'name = "ddrm"')
                .replace("hyper = { zeta = 0.5 }", "")
                .replace('problems = ["tiny-box"]', "")
                .replace(
                    'name = "gaussian_blur"\nsize = 3\nsigma = 1.0',
                    'name = "gaussian_blur_padded"\nsize = 3',
                )
            ),
            "needs a SVDOperator",
        ),
        # the SR3 solver needs a conditional prior; a pixel prior is given
        (
            lambda s: s.replace('name = "dps"', 'name = "sr3"\nprior = "pixel"').replace(
                "hyper = { zeta = 0.5 }", ""
            ),
            "ConditionalPrior",
        ),
        (
            lambda s: s.replace(
                "channels = 1\n\n[priors]", "channels = 1\nindices = [0, 99]\n\n[priors]"
            ),
            "out of range",
        ),
        (lambda s: s.replace('pixel = "', 'pixel = "/nonexistent'), "cannot load prior"),
        (lambda s: s.replace("image_size = 16", "image_size = 32", 1), "expects images of shape"),
    ],
)
def test_incompatible_suites_fail_before_any_solving(tiny, tmp_path, monkeypatch, edit, message):
    import invdiff

    def no_work(*a, **k):
        raise AssertionError("a solver ran although the suite is invalid")

    monkeypatch.setattr(invdiff, "solve", no_work)
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(tiny["suite"].read_text()))
    out = tmp_path / "out"
    with pytest.raises(SuiteError, match=message):
        run(load(bad), out, progress=False)
    assert not (out / "rows.jsonl").exists()


def test_skip_incompatible_leaves_pairs_out(tiny, tmp_path):
    text = (
        tiny["suite"]
        .read_text()
        .replace('name = "dps"', 'name = "ddrm"')
        .replace("hyper = { zeta = 0.5 }", "")
        .replace('problems = ["tiny-box"]', "")
    )
    text = text.replace("problems = []", "problems = []\nskip_incompatible = true")
    text = text.replace(
        'name = "inpainting_box"\nbox = 8\nseed = 0', 'name = "gaussian_blur_padded"\nsize = 3'
    )
    f = tmp_path / "skip.toml"
    f.write_text(text)
    from invdiff.bench.runner import prepare

    prep = prepare(load(f, limit=2))
    assert [(p["problem"], p["solver"]) for p in prep.skipped] == [("tiny-box", "ddrm")]
    assert {(p.problem.name, p.solver.label) for p in prep.pairs} == {
        ("tiny-box", "pinv"),
        ("tiny-blur", "pinv"),
        ("tiny-blur", "ddrm"),
    }


# ---------------------------------------------------------------- a run, a killed run, resume


class SimulatedKill(BaseException):
    """Stands for SIGKILL: not an Exception, so the harness cannot catch it."""


def test_run_writes_all_outputs_and_resumes_a_killed_run(tiny, tmp_path, monkeypatch):
    suite = load(tiny["suite"], limit=4)
    full = tmp_path / "full"
    manifest = run(suite, full, progress=False)
    rows = list(rowio.read(full / "rows.jsonl"))
    assert len(rows) == 4 * 2 * 3 == manifest["rows"] == manifest["expected_rows"]
    assert {r["nfe"] for r in rows if r["solver"] == "dps"} == {2}
    assert {r["nfe"] for r in rows if r["solver"] == "pinv"} == {0}
    assert all(r["wall_s"] > 0 and math.isfinite(r["psnr"]) for r in rows)
    for name in ("summary.csv", "summary.md", "table.tex", "manifest.json", "figures/tiny-box.png"):
        assert (full / name).is_file(), name
    m = json.loads((full / "manifest.json").read_text())
    prior_hashes = next(iter(m["priors"].values()))["sha256"]
    assert any(k.endswith(".safetensors") and len(v) == 64 for k, v in prior_hashes.items())
    assert (
        len(m["suite"]["sha256"]) == 64
        and m["packages"]["torch"]
        and m["device"]["device"] == "cpu"
    )
    assert m["started"] <= m["finished"]
    assert "tiny-box" in (full / "summary.md").read_text()
    assert not list(full.glob("rows.rank*.jsonl")) and not list(full.rglob(".*tmp*"))

    # the same suite killed after 5 rows, then run again: the same rows, none twice
    killed = tmp_path / "killed"
    real_append, count = rowio.append, {"n": 0}

    def dying_append(path, row):
        if count["n"] == 5:
            raise SimulatedKill
        count["n"] += 1
        real_append(path, row)

    monkeypatch.setattr(rowio, "append", dying_append)
    with pytest.raises(SimulatedKill):
        run(suite, killed, progress=False, figures=False)
    monkeypatch.setattr(rowio, "append", real_append)
    assert len(list(rowio.read(killed / "rows.rank0.jsonl"))) == 5
    resumed = run(suite, killed, progress=False, figures=False)
    assert resumed["this_run"]["resumed"] == 5 and resumed["this_run"]["rows"] == len(rows) - 5
    lines = (killed / "rows.jsonl").read_text().splitlines()
    assert len(lines) == len(rows) == len({rowio.row_key(json.loads(x)) for x in lines})
    assert metric_rows(killed / "rows.jsonl") == metric_rows(full / "rows.jsonl")

    # a finished run started again does nothing
    again = run(suite, killed, progress=False, figures=False)
    assert again["this_run"]["rows"] == 0 and again["rows"] == len(rows)


def test_cli_runs_a_suite_with_overrides(tiny, tmp_path):
    from invdiff.cli import main

    out = tmp_path / "cli"
    args = [str(tiny["suite"]), "--out", str(out), "--limit", "2", "--quiet", "--no-figures"]
    args += ["--data", str(tiny["images"]), "--prior", str(tiny["prior"]), "--device", "cpu"]
    assert main(["bench", *args]) == 0
    assert len(list(rowio.read(out / "rows.jsonl"))) == 2 * 2 * 3
    m = json.loads((out / "manifest.json").read_text())
    assert m["suite"]["overrides"] == {
        "data": str(tiny["images"]),
        "prior": str(tiny["prior"]),
        "limit": 2,
    }
    # part of the suite (--solver), then the rest into the same folder
    part = tmp_path / "part"
    base = [str(tiny["suite"]), "--out", str(part), "--limit", "2", "--quiet", "--no-figures"]
    base += ["--data", str(tiny["images"]), "--prior", str(tiny["prior"]), "--device", "cpu"]
    assert main(["bench", *base, "--solver", "pinv"]) == 0
    assert {r["solver"] for r in rowio.read(part / "rows.jsonl")} == {"pinv"}
    assert main(["bench", *base]) == 0
    assert len(list(rowio.read(part / "rows.jsonl"))) == 2 * 2 * 3
    assert main(["bench", *base, "--solver", "nope"]) == 2
    # another suite into the same folder is refused instead of mixing results
    other = tmp_path / "other.toml"
    other.write_text(tiny["suite"].read_text().replace("seeds = [0, 1]", "seeds = [0]"))
    assert main(["bench", str(other), "--out", str(out), "--quiet"]) == 2


def test_shipped_suites_parse(tmp_path):
    for name in ("quick", "standard", "peers"):
        suite = load(name)
        assert suite.name == name and suite.solvers and suite.skip_incompatible
    quick = load("quick")
    # every Fashion-MNIST preset and noise variant, SR3's bicubic ones included
    fmnist = {n for n in invdiff.problems.names() if n.startswith("fmnist-")}
    assert {p.name for p in quick.problems} == fmnist and quick.data["count"] <= 8
    # the colour quick suite: every colour preset, on the colour prior, a handful of images
    colour = load("quick-colour")
    emoji = {n for n in invdiff.problems.names() if n.startswith("emoji-")}
    assert {p.name for p in colour.problems} == emoji and colour.data["count"] <= 8
    assert colour.priors["pixel"] == "emoji32-pixel" and colour.data["dataset"] == "emoji"
    assert {s.name for s in colour.solvers} >= {"dps", "ddrm", "ddnm", "pigdm", "tv"}
    # conditioning: the class-conditional prior without and with each image's label, the
    # ControlNet adapter on the one problem it was trained for
    cond = {s.label: s for s in load("conditioning").solvers}
    assert (
        cond["ddrm-cfg-class"].class_guidance == 0.0
        and cond["ddrm-cfg-null"].class_guidance is None
    )
    assert cond["controlnet-nfe100"].prior == "fmnist32-controlnet-sr4"
    assert cond["controlnet-nfe100"].problems == ["fmnist-sr4"]
    # and the adapter trained on SR3's bicubic measurements meets SR3 on that problem
    bicubic = cond["controlnet-bicubic-nfe100"]
    assert bicubic.prior == "fmnist32-controlnet-sr4-bicubic"
    assert bicubic.problems == cond["sr3-nfe100"].problems == ["fmnist-sr4-bicubic"]
    with pytest.raises(SuiteError, match="needs --data DIR"):
        load("ffhq256")
    ffhq = load("ffhq256", data_dir=tmp_path, prior_dir=tmp_path)
    assert {p.image_size for p in ffhq.problems} == {256}
    assert ffhq.data == {
        "start": 0,
        "count": 1000,
        "dataset": "image_folder",
        "root": str(tmp_path),
        "size": 256,
        "channels": 3,
    }


def test_fid_and_kid_per_pair_report_n(tiny, tmp_path, monkeypatch):
    """FID/KID plumbing (the Inception network is replaced by a cheap fixed feature map here;
    the metric itself is tested with the real network in the metrics tests)."""
    import invdiff.metrics
    import invdiff.metrics.inception as inception

    def features(device="cpu", resize="clean"):
        proj = torch.randn(16 * 16, 32, generator=torch.Generator().manual_seed(0)).to(device)
        return lambda x: x.float().mean(1).flatten(1) @ proj

    monkeypatch.setattr(inception, "inception_network", features)
    monkeypatch.setattr(invdiff.metrics, "inception_network", features)
    text = (
        tiny["suite"]
        .read_text()
        .replace(
            "figure_images = 2",
            'figure_images = 0\ndistribution_metrics = ["fid", "kid"]\nmin_images_distribution = 4',
        )
    )
    text = text[: text.index('[[solvers]]\nname = "dps"')]  # pinv only: the plumbing is the point
    f = tmp_path / "fid.toml"
    f.write_text(text)
    out = tmp_path / "out"
    run(load(f, limit=4), out, progress=False, figures=False)
    dist = (out / "distribution.csv").read_text().splitlines()
    assert dist[0].startswith("problem,solver,seed,n,n_real,n_fake,fid,kid,kid_std")
    assert len(dist) == 1 + 2 and all(",4,4,4," in line for line in dist[1:])
    md = (out / "summary.md").read_text()
    assert "## FID" in md and "## KID" in md and "N = 4" in md
    assert "\\toprule" in (out / "table.tex").read_text()

    # the report of a resumed run reuses the scores of unchanged reconstructions, and
    # recomputes a pair whose saved reconstructions changed
    scored = []
    real_compute = inception.InceptionDistance.compute

    def counting_compute(self, *args, **kwargs):
        scored.append(1)
        return real_compute(self, *args, **kwargs)

    monkeypatch.setattr(inception.InceptionDistance, "compute", counting_compute)
    run(load(f, limit=4), out, progress=False, figures=False)
    assert scored == [] and (out / "distribution.csv").read_text().splitlines() == dist
    batch = next((out / "samples").glob("*/*/seed0/batch*.npz"))
    with np.load(batch) as z:
        arrays = dict(z)
    arrays["images"] = 255 - arrays["images"]
    np.savez(batch, **arrays)
    (out / "distribution-cache.json").write_text("{not json")  # a broken cache is only a miss
    run(load(f, limit=4), out, progress=False, figures=False)
    assert len(scored) == 2  # both pairs, the cache being unreadable
    scored.clear()
    arrays["images"] = 255 - arrays["images"]
    np.savez(batch, **arrays)
    run(load(f, limit=4), out, progress=False, figures=False)
    assert len(scored) == 1 and (out / "distribution.csv").read_text().splitlines() == dist


@pytest.mark.parametrize("name", ["paper", "paper-colour"])
def test_shipped_paper_suites_have_every_tuned_value(name):
    """A paper suite runs each tuned solver with the values its table holds for that problem,
    prior and budget: a missing entry would stop the run, so the shipped table must cover the
    suite, and each entry must have been chosen on validation images, not the suite's."""
    from invdiff.bench.runner import prepare

    plan = prepare(load(name))
    tuned = [pair for pair in plan.pairs if pair.solver.tuned]
    assert tuned and all(pair.tuned is not None for pair in tuned)
    assert {pair.tuned_on["split"] for pair in tuned} == {"val"}


def test_compare_runs_pairs_two_runs_by_image(tmp_path, capsys):
    """``scripts/compare_runs.py`` reports B - A per problem and solver, signed by the metric's
    direction: B 1 dB better everywhere reads +1.000 and ``B better``; LPIPS equal, ``n.s.``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_runs", Path(__file__).parents[1] / "scripts" / "compare_runs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for tag, shift in (("a", 0.0), ("b", 1.0)):
        folder = tmp_path / tag
        folder.mkdir()
        rows = [
            {
                "image": i,
                "seed": 0,
                "problem": "p",
                "solver": "ddrm-nfe20",
                "psnr": 20.0 + 0.1 * i + shift,
                "lpips": 0.1 + 0.01 * (i % 3),
            }
            for i in range(8)
        ]
        (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert module.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("p ")][0]
    assert "+1.000" in line and "B better" in line and "n.s." in line
    assert module.main([str(tmp_path / "b"), str(tmp_path / "a")]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("p ")][0]
    assert "-1.000" in line and "B worse" in line
