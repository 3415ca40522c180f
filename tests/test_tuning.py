"""Tuning: declared search spaces, successive halving on validation images, the tuned table
and suites that run with it (and refuse to test on the images it was tuned on)."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_bench import TINY_SUITE, make_tiny_setup

import invdiff
from invdiff.bench.runner import run
from invdiff.bench.suite import SuiteError, load
from invdiff.bench.tuning import (
    Budget,
    TunedEntry,
    TunedTable,
    TuningError,
    _rungs,
    candidates,
    official_indices,
    search_space,
    successive_halving,
    tune,
)
from invdiff.solvers.hyper import Hyper


def test_search_spaces_are_declared_and_valid():
    tunable = [n for n in invdiff.solvers.names() if search_space(n)]
    assert {"dps", "ddrm", "ddnm", "pigdm", "diffpir", "daps", "red_diff"} <= set(tunable)
    for name in tunable:
        for key, h in search_space(name).items():
            assert h.problem(h.draw(0.0)) is None and h.problem(h.draw(0.999)) is None, key
    with pytest.raises(ValueError, match="invalid"):
        Hyper(0.5, "a share", ge=0, le=1, search=(0.0, 2.0))
    with pytest.raises(ValueError, match="invalid"):
        Hyper("a", "a choice", choices=("a", "b"), search=("a", "c"))


def test_candidates_start_at_the_defaults_and_are_reproducible():
    first = candidates("diffpir", 6, seed=3)
    assert first == candidates("diffpir", 6, seed=3) != candidates("diffpir", 6, seed=4)
    assert first[0] == {"lam": 1.0, "zeta": 1.0, "grid": "linear"} and len(first) == 6
    assert len({json.dumps(c, sort_keys=True) for c in first}) == 6
    lams = [c["lam"] for c in first[1:]]
    assert all(0.1 <= v <= 20 for v in lams)
    with pytest.raises(TuningError, match="nothing to tune"):
        candidates("pinv", 4, 0)


def test_successive_halving_rungs():
    assert _rungs(8, 16) == [(8, 2), (4, 4), (2, 8), (1, 16)]
    assert _rungs(1, 5) == [(1, 5)]
    assert _rungs(5, 3)[-1] == (1, 3)


def test_successive_halving_finds_the_best_and_weighs_the_defaults_on_all_images():
    # candidate c's LPIPS on image i: c 3 is best on average, but bad on the first two images
    # (where a greedy first rung would drop it); the defaults (0) are worst early, good late
    def lp(c: int, i: int) -> float:
        base = {0: 0.30, 1: 0.20, 2: 0.25, 3: 0.10, 4: 0.40, 5: 0.35}[c]
        if c == 0 and i < 4:
            return 0.9
        if c == 3 and i < 2:
            return 0.22
        return base

    calls: list[tuple[int, list[int]]] = []

    def evaluate(c: int, part: list[int]) -> tuple[list[float], list[float]]:
        calls.append((c, part))
        return [10.0 - lp(c, i) for i in part], [lp(c, i) for i in part]

    best, scores = successive_halving(6, 16, evaluate, batch_size=4)
    assert best == 3
    assert len(scores[0]) == 16  # the defaults reach the last rung
    assert all(len(p) <= 4 for _, p in calls)
    assert len(scores[4]) == 2  # the worst stopped at the first rung
    best_psnr, _ = successive_halving(6, 16, evaluate, objective="psnr")
    assert best_psnr == 3
    with pytest.raises(TuningError, match="objective"):
        successive_halving(2, 4, evaluate, objective="ssim")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    paths = make_tiny_setup(root)
    paths["root"] = root
    return paths


def _tiny_problem():
    from invdiff.problems import Problem

    return Problem(
        "tiny-box",
        "inpainting_box",
        {"box": 8},
        "gaussian",
        {"sigma": 0.05},
        "image_folder",
        16,
        1,
    )


def test_tune_keeps_the_best_candidate_and_records_how(tiny):
    prior = invdiff.priors.load(str(tiny["prior"]))
    data = invdiff.data.get("image_folder", root=str(tiny["images"]), size=16, channels=1)
    images = data.images(list(range(4)))
    entry = tune(
        "ddrm",
        _tiny_problem(),
        prior,
        "tiny-prior",
        Budget(nfe=3),
        images,
        list(range(4)),
        validation={"dataset": "image_folder", "split": "validation", "indices": [0, 1, 2, 3]},
        count=4,
        objective="psnr",
        fixed={"eta_b": 0.5},
    )
    assert entry.hyper["eta_b"] == 0.5 and entry.budget == "nfe3"
    by_images = {}
    for c in entry.candidates:
        by_images.setdefault(c["images"], []).append(c)
        assert c["hyper"]["eta_b"] == 0.5  # held fixed, never searched
    # rungs (4 candidates, 1 image), (2, 2), (1, 4); the defaults (candidate 0) reach the last
    # rung whatever their early scores, and the winner is the best there on all 4 images
    assert entry.candidates[0]["images"] == 4
    assert len(by_images[4]) in (1, 2) and len(by_images[4]) + len(by_images.get(2, [])) <= 3
    winner = max(by_images[4], key=lambda c: c["psnr"])
    assert entry.images == 4 and entry.psnr == pytest.approx(winner["psnr"])
    assert entry.hyper == winner["hyper"]
    # one batch per rung a candidate is scored in, 3 NFE each
    rungs_scored = {1: 1, 2: 2, 4: 3}
    assert entry.nfe_spent == 3 * sum(rungs_scored[c["images"]] for c in entry.candidates)
    assert entry.search == {"eta": [0.0, 1.0], "grid": ["ddpm", "linear", "karras"]}


def test_the_defaults_are_weighed_on_every_image(monkeypatch, tiny):
    """Defaults that come out worst on the first rung's image still reach the last rung and
    are weighed there on all the images (before, one bad image dropped them)."""
    solve = invdiff.solvers.solve
    first_call = {"defaults": True}

    def defaults_unlucky_first(name, **kw):
        out = solve(name, **kw)
        if kw.get("eta") == 0.85 and first_call["defaults"]:  # candidate 0, rung 1
            first_call["defaults"] = False
            out = -out  # the worst possible reconstruction of that image
        return out

    monkeypatch.setattr(invdiff.solvers, "solve", defaults_unlucky_first)
    prior = invdiff.priors.load(str(tiny["prior"]))
    data = invdiff.data.get("image_folder", root=str(tiny["images"]), size=16, channels=1)
    entry = tune(
        "ddrm",
        _tiny_problem(),
        prior,
        "tiny-prior",
        Budget(nfe=3),
        data.images(list(range(4))),
        list(range(4)),
        validation={"dataset": "image_folder", "split": "validation", "indices": [0, 1, 2, 3]},
        count=4,
        objective="psnr",
    )
    assert not first_call["defaults"]
    assert entry.candidates[0]["images"] == 4  # the defaults were weighed on all the images


def test_the_table_round_trips_and_refuses_what_it_cannot_read(tmp_path):
    entry = TunedEntry(
        "ddrm", "p", "prior", "nfe20", {"eta": 0.5}, "lpips", 0.1, 20.0, 0.1, 8,
        {"dataset": "fashion_mnist", "split": "val", "indices": [0, 1]}, {"eta": [0, 1]},
    )  # fmt: skip
    path = TunedTable([entry]).save(tmp_path / "t.json")
    again = TunedTable.load(path)
    assert again.lookup("ddrm", "p", "prior", Budget(nfe=20)).hyper == {"eta": 0.5}
    with pytest.raises(TuningError, match="invdiff tune"):
        again.lookup("ddrm", "p", "prior", Budget(nfe=50))
    path.write_text(json.dumps({"format": "other", "version": 1, "entries": []}))
    with pytest.raises(TuningError, match="cannot be read"):
        TunedTable.load(path)
    with pytest.raises(FileNotFoundError, match="invdiff tune"):
        TunedTable.load(tmp_path / "missing.json")


def test_fashion_mnist_val_is_the_end_of_the_test_split():
    assert official_indices("fashion_mnist", "val", [0, 999]) == {("test", 9000), ("test", 9999)}
    assert official_indices("fashion_mnist", "test", [5]) == {("test", 5)}


def _suite(paths, table_split: str, tmp_path):
    entry = TunedEntry(
        "ddrm", "tiny-box", str(paths["prior"]), "nfe2", {"eta": 0.3, "eta_b": 0.7}, "lpips",
        0.1, 20.0, 0.1, 2, {"dataset": "image_folder", "split": table_split, "indices": [0, 1]},
        {"eta": [0, 1]},
    )  # fmt: skip
    TunedTable([entry]).save(tmp_path / "tuned.json")
    head = TINY_SUITE[: TINY_SUITE.index("[[solvers]]")].replace("seeds = [0, 1]", "seeds = [0]")
    head = head.replace(
        'metrics = ["psnr", "ssim"]', 'metrics = ["psnr"]\ntuned_table = "tuned.json"'
    )
    body = '[[solvers]]\nname = "ddrm"\nnfe = 2\ntuned = true\nproblems = ["tiny-box"]\n'
    body += '\n[[solvers]]\nname = "ddrm"\nlabel = "ddrm-paper"\nnfe = 2\nproblems = ["tiny-box"]\n'
    f = tmp_path / "suite.toml"
    f.write_text(head.format(**paths) + body)
    return f


def test_a_suite_runs_tuned_values_and_says_so(tiny, tmp_path):
    f = _suite(tiny, "validation", tmp_path)
    out = tmp_path / "out"
    run(load(f, limit=2), out, progress=False, figures=False)
    rows = [json.loads(x) for p in out.glob("rows*.jsonl") for x in p.read_text().splitlines()]
    source = {r["solver"]: r["hyper_source"] for r in rows}
    assert source == {"ddrm": "tuned", "ddrm-paper": "defaults"}
    manifest = json.loads((out / "manifest.json").read_text())
    tuned = next(p for p in manifest["pairs"] if p["solver"] == "ddrm")
    assert tuned["hyper"] == {"eta": 0.3, "eta_b": 0.7} and tuned["hyper_source"] == "tuned"


def test_a_suite_is_refused_on_the_images_its_values_were_tuned_on(tiny, tmp_path):
    f = _suite(tiny, "test", tmp_path)  # the tiny suite's images are split "test" too
    with pytest.raises(SuiteError, match="chosen on 2 of this suite's test images"):
        run(load(f, limit=2), tmp_path / "out", progress=False, figures=False)
    (tmp_path / "tuned.json").unlink()
    with pytest.raises(SuiteError, match="no such file"):
        run(load(f, limit=2), tmp_path / "out", progress=False, figures=False)


def test_tune_command_line_refuses_before_any_work(tiny, tmp_path, capsys, monkeypatch):
    from invdiff.cli import main

    table = tmp_path / "t.json"
    argv = ["tune", "--solver", "red_diff", "--problem", "fmnist-box", "--steps", "2"]
    argv += ["--prior", str(tiny["prior"]), "--table", str(table)]
    assert main(argv) == 2  # a 16x16 prior for a 32x32 problem: refused before any work
    assert "images of shape" in capsys.readouterr().err and not table.exists()
    assert main([*argv[:5], "--nfe", "0", "--table", str(table)]) == 2
    assert "--nfe must be >= 1" in capsys.readouterr().err


def test_tune_command_line_writes_an_entry_on_the_validation_split(tmp_path, capsys):
    from conftest import tiny_unet
    from diffusers import DDPMScheduler

    from invdiff.cli import main
    from invdiff.priors.pixel import PixelPrior

    prior = PixelPrior(tiny_unet(size=32), DDPMScheduler(num_train_timesteps=1000))
    folder = prior.save(tmp_path / "prior")
    table = tmp_path / "t.json"
    argv = ["tune", "--solver", "red_diff", "--problem", "fmnist-box", "--steps", "2"]
    argv += ["--prior", str(folder), "--table", str(table), "--images", "2"]
    argv += ["--candidates", "2", "--set", "lr=0.1"]
    assert main(argv) == 0
    entry = TunedTable.load(table).lookup("red_diff", "fmnist-box", str(folder), Budget(steps=2))
    assert entry.validation == {"dataset": "fashion_mnist", "split": "val", "indices": [0, 1]}
    assert entry.hyper["lr"] == 0.1 and entry.objective == "lpips" and entry.lpips >= 0
    assert "wrote" in capsys.readouterr().out


def test_tune_suite_fills_the_table_and_resumes(tmp_path, capsys):
    from conftest import tiny_unet
    from diffusers import DDPMScheduler

    from invdiff.cli import main
    from invdiff.priors.pixel import PixelPrior

    folder = PixelPrior(tiny_unet(size=32), DDPMScheduler(num_train_timesteps=1000)).save(
        tmp_path / "prior"
    )
    suite = tmp_path / "s.toml"
    suite.write_text(
        f'name = "s"\ntuned_table = "t.json"\nproblems = ["fmnist-box", "fmnist-sr4"]\n'
        f'[data]\ncount = 2\n[priors]\npixel = "{folder}"\n'
        '[[solvers]]\nname = "ddrm"\nnfe = 2\ntuned = true\nhyper = { eta_b = 0.9 }\n'
        '[[solvers]]\nname = "pinv"\nsteps = 1\n'
    )
    argv = ["tune", "--suite", str(suite), "--images", "2", "--candidates", "2"]
    assert main(argv) == 0
    table = TunedTable.load(tmp_path / "t.json")
    assert sorted(k[1] for k in table.entries) == ["fmnist-box", "fmnist-sr4"]
    assert all(e.hyper["eta_b"] == 0.9 for e in table.entries.values())  # the suite's, fixed
    assert "tuned 2 setting(s); 0 already" in capsys.readouterr().out
    assert main(argv) == 0
    assert "tuned 0 setting(s); 2 already" in capsys.readouterr().out
    # narrowed to one problem: only its entry is redone with --retune
    assert main([*argv, "--problem", "fmnist-sr4", "--retune"]) == 0
    assert "tuned 1 setting(s); 0 already" in capsys.readouterr().out
    assert main([*argv, "--solver", "dps"]) != 0
    assert "tunes no solver dps; it tunes ddrm" in capsys.readouterr().err
    assert main([*argv, "--nfe", "4"]) != 0
    assert "takes the budgets" in capsys.readouterr().err


def test_tune_keeps_entries_another_run_wrote_while_it_searched(tmp_path, monkeypatch):
    """Two tuning runs sharing one table (two processes, two machines on one folder): the
    entry the other run wrote during this run's search survives this run's write."""
    from conftest import tiny_unet
    from diffusers import DDPMScheduler

    import invdiff.bench.tuning as tuning
    from invdiff.cli import main
    from invdiff.priors.pixel import PixelPrior

    folder = PixelPrior(tiny_unet(size=32), DDPMScheduler(num_train_timesteps=1000)).save(
        tmp_path / "prior"
    )
    table_path = tmp_path / "t.json"
    TunedTable().save(table_path)
    real_tune = tuning.tune

    def tune_while_another_run_writes(*args, **kwargs):
        entry = real_tune(*args, **kwargs)
        other = TunedTable.load(table_path)
        other.add(dataclasses.replace(entry, problem="fmnist-sr4"))
        other.save(table_path)
        return entry

    monkeypatch.setattr(tuning, "tune", tune_while_another_run_writes)
    argv = ["tune", "--solver", "red_diff", "--problem", "fmnist-box", "--steps", "2"]
    argv += ["--prior", str(folder), "--table", str(table_path), "--images", "2"]
    argv += ["--candidates", "2", "--set", "lr=0.1"]
    assert main(argv) == 0
    assert sorted(k[1] for k in TunedTable.load(table_path).entries) == ["fmnist-box", "fmnist-sr4"]
