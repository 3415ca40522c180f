"""The built wheel carries the presets and banks, and an installed (not editable) invdiff
finds them without a checkout: ``pip install .`` then ``invdiff bench`` from anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("operators", "problems", "benchmarks")


def _tracked_files() -> list[str]:
    """The files of the checkout as a clean clone would have them (plus new, unignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a clean copy: no build/ or egg-info of earlier builds
    for rel in _tracked_files():
        if rel.startswith("benchmarks/results/"):
            continue  # not shipped; large
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(out)],
        check=True,
        timeout=300,
    )
    (whl,) = out.glob("invdiff-*.whl")
    return whl


def test_the_wheel_carries_every_preset_and_bank(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("invdiff/_presets/") for n in names if "/_presets/" in n}
    expected = {
        f"{folder}/{p.name}"
        for folder in PRESETS
        for p in (ROOT / folder).iterdir()
        if p.is_file() and p.suffix in (".toml", ".npz", ".json", ".md")
    } | {f"benchmarks/tuned/{p.name}" for p in (ROOT / "benchmarks" / "tuned").glob("*.json")}
    assert expected and expected == shipped
    # the banks in the wheel are the ones the manifest lists
    assert {f"operators/{e}" for e in ("manifest.json", "motion-k9.npz")} <= shipped
    assert not any("results" in n for n in shipped)


@pytest.mark.slow
def test_an_installed_wheel_runs_a_benchmark_from_another_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall"]
        + [str(wheel)],
        check=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INVDIFF_HOME")}

    def invdiff(*args: str) -> str:
        run = subprocess.run(
            [str(venv / "bin" / "invdiff"), *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    listed = invdiff("list", "problems")
    assert "fmnist-sr4-noiseless" in listed and "fmnist-motion-deblur" in listed
    # a bank-backed preset, a noise variant and a shipped-suite-style file, prior-free solvers
    suite = work / "mini.toml"
    suite.write_text(
        'name = "mini"\ndevice = "cpu"\nbatch_size = 1\nmetrics = ["psnr"]\nfigure_images = 0\n'
        'problems = ["fmnist-motion-deblur-noiseless", "fmnist-random70"]\n'
        '[data]\ndataset = "fashion_mnist"\nsplit = "test"\ncount = 1\n'
        '[[solvers]]\nname = "pinv"\nsteps = 5\n'
    )
    invdiff("bench", "mini.toml", "--out", "out", "--quiet", "--no-figures")
    summary = (work / "out" / "summary.csv").read_text()
    assert "fmnist-motion-deblur-noiseless" in summary and "pinv" in summary
    # the presets come from the installed package, and the shipped suites resolve by name
    check = (
        "import invdiff.paths as p; from invdiff.bench.suite import load; "
        "print(p.checkout(), p.home(), load('quick').name)"
    )
    out = subprocess.run(
        [str(py), "-c", check], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "None" and out[2] == "quick"
    assert Path(out[1]).parts[-3:] == ("site-packages", "invdiff", "_presets")
    assert Path(out[1]).is_relative_to(venv)
