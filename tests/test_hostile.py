"""Hostile input and faults: no code execution, no writes outside --out, errors before work.

Each case drives the public Python API or the command line the way a careless or hostile user
would, and checks the kind of the error and its wording (the argument, the value, what to do).
"""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_unet

import invdiff
from invdiff import io as safe_io
from invdiff.cli import main
from invdiff.noise import Gaussian
from invdiff.solvers.base import SolverMismatchError

# ------------------------------------------------------------------ helpers


class Payload:
    """Unpickling this creates ``marker``: the proof that a loader executed a pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": Payload(marker)}, path)


def cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command line; the error, if any, must be one line without a traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert "Traceback" not in err
    return code, err


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture(scope="module")
def prior_folder(tmp_path_factory) -> Path:
    """An untrained 32x32 pixel prior folder (the Fashion-MNIST problems are 32x32)."""
    from diffusers import DDPMScheduler

    from invdiff.priors.pixel import PixelPrior

    folder = tmp_path_factory.mktemp("prior32")
    PixelPrior(tiny_unet(size=32), DDPMScheduler(num_train_timesteps=1000)).save(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory) -> dict[str, Path]:
    from test_bench import TINY_SUITE, make_tiny_setup

    root = tmp_path_factory.mktemp("hostile-bench")
    paths = make_tiny_setup(root)
    text = TINY_SUITE.format(**paths).replace("seeds = [0, 1]", "seeds = [0]")
    text = text.replace('[[solvers]]\nname = "dps"', '[[solvers]]\nname = "dps"\nlabel = "dps"')
    paths["text"] = text
    return paths


def png_header(width: int, height: int) -> bytes:
    """A PNG file of a few bytes that declares a ``width x height`` grey image."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def suite_file(folder: Path, text: str) -> Path:
    path = folder / "suite.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ code execution


def test_a_pickled_checkpoint_is_refused_without_running(tmp_path):
    from invdiff.training import TrainConfig, train
    from invdiff.training.loop import CheckpointError

    marker = tmp_path / "executed"
    cfg = TrainConfig.preset(
        "pixel",
        out=str(tmp_path / "run"),
        image_size=8,
        channels=(8, 16),
        attention=(False, False),
        norm_groups=4,
        steps=2,
    )
    for name in ("checkpoint.pt", "checkpoint.safetensors"):
        for f in (tmp_path / "run").glob("checkpoint.*"):
            f.unlink()
        plant_pickle(tmp_path / "run" / name, marker)
        with pytest.raises(CheckpointError, match="not a .*checkpoint.*without --resume"):
            train(cfg, resume=True, progress=False, data=(torch.zeros(4, 1, 8, 8), None))
        assert not marker.exists(), name


def test_pickles_in_prior_folders_samples_and_run_files_are_never_executed(
    tmp_path, prior_folder, tiny_bench, capsys
):
    import shutil

    marker = tmp_path / "executed"
    # a prior whose weights are a pickle (diffusers' .bin) instead of safetensors
    evil = tmp_path / "evil-prior"
    shutil.copytree(prior_folder, evil)
    weights = evil / "unet" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    plant_pickle(weights.with_suffix(".bin"), marker)
    # refused unopened, with the safe conversion (weights_only=True) the message names
    with pytest.raises(ValueError, match="holds pickled PyTorch weights.*weights_only=True"):
        invdiff.priors.load(evil)
    assert not marker.exists()
    # the same pickle under the safetensors name
    plant_pickle(weights, marker)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        invdiff.priors.load(evil)
    # a pickle as a saved batch of reconstructions and as run.json
    from invdiff.bench.runner import load_samples
    from invdiff.bench.suite import SuiteError

    out = tmp_path / "bench"
    batch = out / "samples" / "p" / "s" / "seed0" / "batch00000.npz"
    batch.parent.mkdir(parents=True)
    np.savez(batch, images=np.array([Payload(marker)], dtype=object), indices=np.array([0]))
    with pytest.raises(SuiteError, match="cannot be read.*--restart"):
        load_samples(out, "p", "s", 0)
    (out / "run.json").write_bytes(pickle.dumps(Payload(marker)))
    suite = suite_file(tmp_path, tiny_bench["text"])
    code, err = cli(["bench", str(suite), "--out", str(out), "--quiet"], capsys)
    assert code == 2 and "run.json is corrupt" in err and "--restart" in err
    assert not marker.exists()


# ------------------------------------------------------------------ writes through links


def test_safe_names_and_paths(tmp_path):
    for bad, why in [
        ("", "empty"),
        ("..", "hidden"),
        (".", "hidden"),
        (".hidden", "hidden"),
        ("a/b", "separator"),
        ("../../x", "separator"),
        ("a\\b", "separator"),
        ("a\x00b", "NUL"),
        ("x" * 300, "longer"),
    ]:
        with pytest.raises(safe_io.UnsafePathError, match=why):
            safe_io.check_name(bad, "solver label")
    with pytest.raises(TypeError, match="solver label must be a string"):
        safe_io.check_name(3, "solver label")
    assert safe_io.check_name("dps-50_v2.1", "label") == "dps-50_v2.1"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    with pytest.raises(safe_io.UnsafePathError, match="outside the output folder"):
        safe_io.inside(tmp_path / "out", tmp_path / "out" / "link" / "x")
    with pytest.raises(safe_io.UnsafePathError, match="outside the output folder"):
        safe_io.inside(tmp_path / "out", tmp_path / "out" / ".." / "x")


def test_writers_replace_or_refuse_planted_links(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    # a planted temporary name is never opened: the temporary file has a fresh unique name
    (out / "a.txt.tmp").symlink_to(victim)
    safe_io.write_text(out / "a.txt", "new")
    # a link at the target itself is replaced, not written through
    (out / "b.txt").symlink_to(victim)
    safe_io.write_text(out / "b.txt", "new")
    assert not (out / "b.txt").is_symlink() and (out / "b.txt").read_text() == "new"
    # appending through a link is refused
    (out / "rows.jsonl").symlink_to(victim)
    with pytest.raises(safe_io.UnsafePathError, match="symbolic link"):
        safe_io.append_bytes(out / "rows.jsonl", b"row\n")
    assert victim.read_text() == "precious"
    with pytest.raises(NotADirectoryError, match="--out .* is not a folder"):
        safe_io.check_writable(victim)


def test_solve_writes_nothing_through_planted_links(prior_folder, tmp_path, capsys):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("truth.png.tmp", ".truth.png.tmp", "measurement.png"):
        (out / name).symlink_to(victim)
    argv = ["solve", "--problem", "fmnist-sr4", "--solver", "pinv", "--steps", "1"]
    code, err = cli([*argv, "--prior", str(prior_folder), "--out", str(out)], capsys)
    assert code == 0, err
    assert victim.read_bytes() == b"precious"
    assert (out / "truth.png").is_file() and not (out / "measurement.png").is_symlink()


def test_bench_refuses_planted_links_and_traversal_names(tiny_bench, tmp_path, capsys):
    victim = tmp_path / "victim.jsonl"
    victim.write_text("precious\n")
    suite = suite_file(tmp_path, tiny_bench["text"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.rank0.jsonl").symlink_to(victim)
    argv = ["bench", str(suite), "--out", str(out), "--quiet", "--no-figures", "--limit", "2"]
    code, err = cli(argv, capsys)
    assert code == 2 and "rows.rank0.jsonl is a symbolic link" in err and "Remove it" in err
    assert victim.read_text() == "precious\n"
    (out / "rows.rank0.jsonl").unlink()
    # the old fixed temporary name of a samples batch, planted
    batch = out / "samples" / "tiny-box" / "pinv" / "seed0"
    batch.mkdir(parents=True)
    (batch / ".batch00000.npz.tmp.npz").symlink_to(victim)
    (batch / "batch00000.npz.tmp").symlink_to(victim)
    assert cli(argv, capsys)[0] == 0
    assert victim.read_text() == "precious\n"
    # traversal names from the suite file: refused before anything is written
    outside = sorted(p.name for p in tmp_path.parent.iterdir())
    for old, new, what in [
        ('name = "pinv"\n', 'name = "pinv"\nlabel = "../../../escaped_label"\n', "label"),
        ('name = "tiny-box"', 'name = "../../../escaped_problem"', "problem name"),
        ('name = "tiny"', 'name = "../../../../elsewhere"', "suite name"),
    ]:
        text = tiny_bench["text"].replace(old, new, 1).replace('"tiny-box"]', '"x"]')
        if what == "problem name":
            text = text.replace('problems = ["x"]', "")
        bad = suite_file(tmp_path, text)
        here = tmp_path / "cwd"
        here.mkdir(exist_ok=True)
        os.chdir(here)  # the default --out runs/bench/<name> is relative to it
        try:
            code = main(["bench", str(bad), "--quiet", "--no-figures"])
        finally:
            os.chdir(tmp_path)
        err = capsys.readouterr().err
        assert code == 2 and what in err and "path separator" in err, err
        assert not (here / "runs").exists()
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == outside
    assert not any("escaped" in p.name or "elsewhere" in p.name for p in tmp_path.rglob("*"))


def test_training_writes_nothing_through_planted_links(tmp_path):
    from invdiff.training import TrainConfig, train

    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("loss.csv", "config.json.tmp", "checkpoint.pt.tmp", "checkpoint.safetensors.tmp"):
        (out / name).symlink_to(victim)
    cfg = TrainConfig.preset(
        "pixel",
        out=str(out),
        image_size=8,
        channels=(8, 16),
        attention=(False, False),
        norm_groups=4,
        layers_per_block=1,
        batch_size=4,
        steps=2,
        log_every=1,
        num_samples=1,
        sample_steps=1,
    )
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    train(cfg, progress=False, data=(x, None))
    assert victim.read_text() == "precious"
    assert not (out / "loss.csv").is_symlink() and len((out / "loss.csv").read_text().split()) == 3


# ------------------------------------------------------------------ the Python API


def test_api_refuses_wrong_ranges_types_and_sizes(tiny_pixel_prior, tmp_path):
    op = invdiff.operators.get("gaussian_blur", in_shape=(1, 8, 8), size=3, sigma=1.0)
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    y = op(x)
    kw = dict(prior=tiny_pixel_prior, operator=op, noise=Gaussian(0.05), steps=2, generator=0)
    for bad in (y * 127.5 + 127.5, y * 1e6):
        with pytest.raises(ValueError, match="images in \\[-1, 1\\].*from_uint8"):
            invdiff.solve("dps", y=bad, **kw)
    assert tiny_pixel_prior.nfe == 0
    with pytest.raises(ValueError, match="steps must be a positive integer, got True"):
        invdiff.solve("dps", y=y, **{**kw, "steps": True})
    with pytest.raises(TypeError, match="operator must be an invdiff Operator.*NoneType"):
        invdiff.solve("dps", y=y, **{**kw, "operator": None})
    with pytest.raises(TypeError, match="generator must be .* bool"):
        invdiff.solve("dps", y=y, **{**kw, "generator": True})
    # phase retrieval and compressed sensing give |y| > 1 for images in [-1, 1]: accepted
    for name in ("phase_retrieval", "compressed_sensing"):
        other = invdiff.operators.get(name, in_shape=(1, 8, 8))
        yy = other(torch.ones(1, 1, 8, 8))
        assert float(yy.abs().max()) > 1
        invdiff.solve("dps", y=yy, **{**kw, "operator": other, "steps": 1})
    with pytest.raises(ValueError, match="looks like an image in \\[0, 255\\].*from_uint8"):
        op(x * 127.5 + 127.5)
    problem = invdiff.problems.get("fmnist-sr4")
    with pytest.raises(ValueError, match="x must lie in \\[-1, 1\\].*from_uint8"):
        problem.measure(torch.rand(1, 1, 32, 32) * 255, index=0)
    with pytest.raises(ValueError, match="index must hold data set indices >= 0"):
        problem.measure(torch.zeros(1, 1, 32, 32), index=[-3])
    with pytest.raises(TypeError, match="integer sizes.*32.7 is a float"):
        invdiff.operators.get("super_resolution", in_shape=(1, 32.7, 32))
    with pytest.raises(TypeError, match="True is a bool"):
        invdiff.operators.get("identity", in_shape=(True, 8, 8))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="10,000,000,000 values, more than"):
        invdiff.operators.get("super_resolution", in_shape=(1, 100000, 100000))
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(FileNotFoundError, match="root='/no/such/folder': no such folder"):
        invdiff.data.get("fashion_mnist", split="test", root="/no/such/folder")
    with pytest.raises(ValueError, match="does not download"):
        invdiff.data.get("fashion_mnist", split="test", download=True)
    images = tmp_path / "imgs"
    invdiff.images.save_image(torch.zeros(1, 1, 4, 4), images / "a.png")
    ds = invdiff.data.get("image_folder", root=images, size=4, channels=1)
    with pytest.raises(IndexError, match="must lie in \\[0, 1\\).*\\[-1\\]"):
        ds.images([-1])
    with pytest.raises(TypeError, match="indices must be integers"):
        ds.images([0.5])
    with pytest.raises(ValueError, match="size must be at most 4096 pixels, got 100000"):
        invdiff.data.get("image_folder", root=images, size=100000, channels=1)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        invdiff.data.get("photos", size=True)


def test_solver_check_compares_prior_kind_and_shape(tiny_pixel_prior):
    from invdiff.priors.base import ConditionalPrior

    op32 = invdiff.operators.get("super_resolution", in_shape=(1, 32, 32), factor=4)
    y = torch.zeros(1, 1, 8, 8)
    with pytest.raises(SolverMismatchError, match="\\(1, 8, 8\\).*takes \\(1, 32, 32\\)"):
        invdiff.solve(
            "ddrm",
            prior=tiny_pixel_prior,
            operator=op32,
            y=y,
            noise=Gaussian(0.05),
            steps=2,
            generator=0,
        )
    sr3 = invdiff.priors.load("fmnist32-sr3-x4")
    assert isinstance(sr3, ConditionalPrior)
    sr3.nfe = 0
    with pytest.raises(SolverMismatchError, match="pixel-space priors.*ConditionalPrior.*sr3"):
        invdiff.solve(
            "dps", prior=sr3, operator=op32, y=y, noise=Gaussian(0.05), steps=2, generator=0
        )
    assert sr3.nfe == 0


def test_a_prior_with_nan_weights_is_refused_at_load(prior_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    bad = tmp_path / "nan-prior"
    shutil.copytree(prior_folder, bad)
    weights = bad / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["conv_in.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, weights)
    with pytest.raises(ValueError, match="NaN or Inf values in 1 tensor.*conv_in.weight"):
        invdiff.priors.load(bad)


def test_image_files_16_bit_palette_alpha_and_broken(tmp_path):
    from PIL import Image

    from invdiff.images import load_image

    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    notes: list[str] = []
    x = load_image(tmp_path / "deep.png", report=notes.append)
    expected = torch.from_numpy(ramp.astype(np.float64) / 65535 * 2 - 1).float()
    torch.testing.assert_close(x[0, 0], expected)
    assert float((x >= 0.999).float().mean()) < 0.05  # not saturated
    assert any("16-bit" in n for n in notes)
    pal = Image.new("P", (4, 4))
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pal.png")
    p = load_image(tmp_path / "pal.png", channels=1)
    assert p.shape == (1, 1, 4, 4) and p[0, 0, 1, 1] == 1 and p[0, 0, 0, 0] == -1
    rgba = Image.new("RGBA", (4, 4), (255, 255, 255, 0))
    rgba.putpixel((2, 2), (255, 255, 255, 255))
    rgba.save(tmp_path / "rgba.png")
    notes.clear()
    a = load_image(tmp_path / "rgba.png", size=2, channels=3, report=notes.append)
    assert a.shape == (1, 3, 2, 2)
    assert any("transparent" in n for n in notes) and any("resized to 2 x 2" in n for n in notes)
    Image.new("RGB", (6, 4), (200, 10, 10)).save(tmp_path / "colour.png")
    notes.clear()
    load_image(tmp_path / "colour.png", size=4, channels=1, report=notes.append)
    assert any("colour converted to grey" in n for n in notes)
    assert any("centre-cropped" in n for n in notes)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="text.png is not an image PIL can read"):
        load_image(tmp_path / "text.png")
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    good = (tmp_path / "noisy.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cut.png is damaged or truncated"):
        load_image(tmp_path / "cut.png")
    # tiny files that declare huge images: refused before any pixel is decompressed
    (tmp_path / "bomb.png").write_bytes(png_header(9000, 9000))
    with pytest.raises(ValueError, match="bomb.png declares 9000 x 9000 pixels.*resize it"):
        load_image(tmp_path / "bomb.png")
    (tmp_path / "huge.png").write_bytes(png_header(100_000, 100_000))
    with pytest.raises(ValueError, match="huge.png refused: .*resize it"):
        load_image(tmp_path / "huge.png")
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match="f.tiff: 32-bit float pixels"):
        load_image(tmp_path / "f.tiff")


def test_corrupt_data_files_are_named(tmp_path):
    from invdiff.data.fashion_mnist import read_idx

    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="bad.gz is not a readable gzip file"):
        read_idx(tmp_path / "bad.gz")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(ValueError, match="short.gz is truncated"):
        read_idx(tmp_path / "short.gz")


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    "flag",
    [
        "--grad-clip=-1",
        "--time-limit=-1",
        "--checkpoint-every=0",
        "--log-every=0",
        "--norm-groups=0",
        "--sample-steps=0",
        "--num-samples=0",
        "--num-train-timesteps=0",
        "--layers-per-block=0",
        "--lr=abc",
        "--steps=3.5",
    ],
)
def test_train_flags_are_refused_when_parsed(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "pixel", "--out", str(tmp_path / "run"), flag])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag.split('=')[0]}" in err and "expected" in err
    assert not (tmp_path / "run").exists()


def test_cli_errors_are_one_line_and_name_the_argument(prior_folder, tmp_path, capsys):
    base = ["--prior", str(prior_folder), "--out", str(tmp_path / "o"), "--steps", "2"]
    solve = ["solve", "--problem", "fmnist-sr4", "--solver", "dps", *base]
    cases = [
        (["--device", "cuda"], "CUDA is not available here; use --device cpu"),
        (["--set", "zeta=abc"], "--set 'zeta=abc': zeta must be a number"),
        (["--index", "-2"], "--index must be >= 0, got -2"),
    ]
    if torch.cuda.is_available():
        cases = cases[1:]
    for extra, message in cases:
        code, err = cli([*solve, *extra], capsys)
        assert code == 2 and message in err, err
    assert not (tmp_path / "o").exists()
    # the prior does not fit the problem: the shape is blamed, before any data is read
    code, err = cli(
        ["solve", "--problem", "ffhq256-sr4", "--solver", "dps", "--prior", "fmnist32-pixel"]
        + ["--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 2 and "(1, 32, 32)" in err and "(3, 256, 256)" in err, err
    # --out is a file: refused before the prior is even loaded
    afile = tmp_path / "file"
    afile.write_text("x")
    code, err = cli([*solve[:-2], "--out", str(afile)], capsys)
    assert code == 2 and f"--out {afile} is not a folder" in err
    # a folder nobody can write to (even root cannot create files in /sys): refused before work
    for command in (
        [*solve[:-2], "--out", "/sys/invdiff-out"],
        ["train", "pixel", "--out", "/sys/invdiff-out"],
    ):
        code, err = cli(command, capsys)
        assert code == 2 and "--out /sys/invdiff-out is not writable" in err, err
    # --debug shows the traceback instead
    with pytest.raises(ValueError, match="--index"):
        main([*solve, "--index", "-2", "--debug"])
    if not torch.cuda.is_available():
        code, err = cli(
            ["train", "pixel", "--out", str(tmp_path / "t"), "--device", "cuda"], capsys
        )
        assert code == 2 and "CUDA is not available here; use --device cpu" in err
        assert not (tmp_path / "t").exists()


def test_solve_reports_image_conversions(prior_folder, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "photo.png")
    argv = ["solve", "--problem", "fmnist-sr4", "--solver", "pinv", "--steps", "1"]
    argv += ["--prior", str(prior_folder), "--image", str(tmp_path / "photo.png")]
    code, err = cli([*argv, "--out", str(tmp_path / "o")], capsys)
    assert code == 0
    assert "colour converted to grey" in err and "resized to 32 x 32" in err


def test_bench_limit_then_full_run_is_refused(tiny_bench, tmp_path, capsys):
    pinv_only = tiny_bench["text"].split('[[solvers]]\nname = "dps"')[0]
    suite = suite_file(tmp_path, pinv_only)
    out = tmp_path / "out"
    argv = ["bench", str(suite), "--out", str(out), "--quiet", "--no-figures"]
    assert cli([*argv, "--limit", "1"], capsys)[0] == 0
    rows = (out / "rows.jsonl").read_bytes()
    code, err = cli(argv, capsys)
    assert code == 2 and "solved in other batches" in err and "--restart" in err
    assert (out / "rows.jsonl").read_bytes() == rows
    # a limit that cuts at a batch boundary keeps rows that the full run would compute
    other = tmp_path / "other"
    assert cli([*argv[:3], str(other), *argv[4:], "--limit", "2"], capsys)[0] == 0
    assert cli([*argv[:3], str(other), *argv[4:]], capsys)[0] == 0
    fresh = tmp_path / "fresh"
    assert cli([*argv[:3], str(fresh), *argv[4:]], capsys)[0] == 0

    def metrics(folder: Path) -> list:
        return sorted(
            (r["image"], r["problem"], r["solver"], r["psnr"])
            for r in map(json.loads, (folder / "rows.jsonl").read_text().splitlines())
        )

    assert metrics(other) == metrics(fresh)
    (out / "run.json").write_text("{not json")
    code, err = cli(argv, capsys)
    assert code == 2 and "run.json is corrupt" in err
    code, err = cli([*argv[:3], "/sys/invdiff-out", *argv[4:]], capsys)
    assert code == 2 and "--out /sys/invdiff-out is not writable" in err


# ------------------------------------------------------------------ kill -9 during training


def _kill_config(tmp_path: Path, name: str):
    from invdiff.training import TrainConfig

    return TrainConfig.preset(
        "pixel",
        out=str(tmp_path / name),
        image_size=8,
        channels=(8, 16),
        attention=(False, False),
        norm_groups=4,
        layers_per_block=1,
        batch_size=4,
        steps=4,
        log_every=1,
        checkpoint_every=2,
        sample_every=2,
        num_samples=1,
        sample_steps=1,
        warmup_steps=1,
    )


def _train_killed_at(cfg, data, kill_at: int) -> None:
    """Train in a forked child that SIGKILLs itself just before its ``kill_at``-th file
    replacement (a file complete under its temporary name, or a folder half swapped)."""
    import signal

    from invdiff.training import train

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            torch.set_num_threads(1)
            real, calls = os.replace, [0]

            def replace(src, dst, *args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(src, dst, *args, **kwargs)

            os.replace = replace
            train(cfg, progress=False, data=data)
        finally:
            os._exit(3)  # not killed: the kill point was never reached
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the training child hung (kill point {kill_at})")
        time.sleep(0.05)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def test_kill_9_then_resume_exports_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch):
    from invdiff.training import train
    from invdiff.training.loop import load_checkpoint_file

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the children run on one thread: the same arithmetic here
    try:
        g = torch.Generator().manual_seed(0)
        data = (torch.rand(16, 1, 8, 8, generator=g) * 2 - 1, None)
        targets: list[str] = []
        real = os.replace

        def record(src, dst, *args, **kwargs):
            targets.append(Path(dst).name)
            return real(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", record)
        straight = train(_kill_config(tmp_path, "straight"), progress=False, data=data)
        monkeypatch.setattr(os, "replace", real)
        weights = "prior/unet/diffusion_pytorch_model.safetensors"
        reference = (straight / weights).read_bytes()
        ckpt = [i + 1 for i, t in enumerate(targets) if t == "checkpoint.safetensors"]
        export = [i + 1 for i, t in enumerate(targets) if t == "prior"]
        assert len(ckpt) == 2 and len(export) >= 2
        points = {
            ckpt[0],  # the first checkpoint written but not in place
            ckpt[0] + 1,  # the checkpoint in place, its export not begun
            ckpt[1],  # the last checkpoint written but not in place
            export[-1],  # the final export half swapped: no prior/ at all
            len(targets),  # the very last file of the run
        }
        assert len(points) == 5
        for n in sorted(points):
            cfg = _kill_config(tmp_path, f"killed{n}")
            _train_killed_at(cfg, data, n)
            out = Path(cfg.out)
            has_checkpoint = (out / "checkpoint.safetensors").is_file()
            train(cfg, resume=has_checkpoint, progress=False, data=data)
            assert (out / weights).read_bytes() == reference, n
            info = json.loads((out / "prior" / "training.json").read_text())
            assert info["step"] == 4, n
            assert not [p.name for p in out.iterdir() if p.name.startswith(".")], n
            a = load_checkpoint_file(out / "checkpoint.safetensors")
            b = load_checkpoint_file(straight / "checkpoint.safetensors")
            for key, t in b["ema"]["shadow"].items():
                assert torch.equal(t, a["ema"]["shadow"][key]), (n, key)
            assert (out / "samples" / "step_000004.png").is_file()
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ fuzzing the registries

BAD_SHAPES = [
    (1, 32.7, 32),
    (0, 8, 8),
    "abc",
    (1, 8),
    (True, 8, 8),
    (1, 100000, 100000),
    (-1, 8, 8),
]


@pytest.mark.parametrize("name", invdiff.operators.names())
def test_every_operator_refuses_bad_shapes_by_name(name):
    for bad in BAD_SHAPES:
        with pytest.raises((TypeError, ValueError), match="in_shape|shape"):
            invdiff.operators.get(name, in_shape=bad)


def test_every_solver_checks_y_and_steps_before_work(tiny_pixel_prior):
    op = invdiff.operators.get("super_resolution", in_shape=(1, 8, 8), factor=2)
    good = op(torch.zeros(1, 1, 8, 8))
    bad_y = [
        ([0.0] * 16, TypeError, "y must be a torch.Tensor"),
        (good.to(torch.int64), TypeError, "float tensor"),
        (torch.full_like(good, float("nan")), ValueError, "NaN"),
        (torch.zeros(1, 1, 8, 8), ValueError, "shape"),
        (good + 300, ValueError, "from_uint8"),
    ]
    bad_steps = [0, -1, 2.5, True, "10"]
    for name in invdiff.solvers.names():
        solver = invdiff.solvers.get(name)
        try:
            solver.check(tiny_pixel_prior, op, Gaussian(0.05))
        except SolverMismatchError:
            continue  # needs another prior kind or operator capability: checked elsewhere
        kw = dict(prior=tiny_pixel_prior, operator=op, noise=Gaussian(0.05), generator=0)
        tiny_pixel_prior.nfe = 0
        for y, kind, words in bad_y:
            with pytest.raises(kind, match=words):
                invdiff.solve(name, y=y, steps=2, **kw)
        for steps in bad_steps:
            with pytest.raises(ValueError, match="steps must be a positive integer"):
                invdiff.solve(name, y=good, steps=steps, **kw)
        assert tiny_pixel_prior.nfe == 0, name
