"""`invdiff solve`: one problem, one solver, files and a figure; clear errors before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_unet

from invdiff import solvers
from invdiff.cli import main


@pytest.fixture(scope="module")
def prior_folder(tmp_path_factory):
    """An untrained 32x32 pixel prior saved as a folder (the problems are 32x32 Fashion-MNIST)."""
    from diffusers import DDPMScheduler

    from invdiff.priors.pixel import PixelPrior

    folder = tmp_path_factory.mktemp("prior")
    PixelPrior(tiny_unet(size=32), DDPMScheduler(num_train_timesteps=1000)).save(folder)
    return folder


def test_solve_writes_measurement_reconstructions_figure(prior_folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["solve", "--problem", "fmnist-sr4", "--solver", "diffpir", "--prior", str(prior_folder)]
    argv += [
        "--steps",
        "3",
        "--samples",
        "2",
        "--index",
        "5",
        "--seed",
        "1",
        "--set",
        "zeta=0.5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "figure.png",
        "measurement.png",
        "reconstruction_0.png",
        "reconstruction_1.png",
        "summary.json",
        "tensors.pt",
        "truth.png",
    ]  # and no temporary files left behind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["problem"] == "fmnist-sr4" and summary["solver"] == "diffpir"
    assert summary["hyperparameters"]["zeta"] == 0.5 and summary["network_evaluations"] == 3
    assert len(summary["psnr_db"]) == 2
    t = torch.load(out / "tensors.pt")
    assert t["x"].shape == (1, 1, 32, 32) and t["y"].shape == (1, 1, 8, 8)
    assert t["reconstructions"].shape == (2, 1, 32, 32)
    from PIL import Image

    assert np.asarray(Image.open(out / "measurement.png")).shape == (
        32,
        32,
    )  # upsampled for display
    assert "PSNR" in capsys.readouterr().out


def test_solve_with_an_image_file(prior_folder, tmp_path):
    from invdiff.images import save_image

    img = tmp_path / "in.png"
    save_image(torch.linspace(-1, 1, 48 * 40).reshape(1, 1, 48, 40), img)
    out = tmp_path / "run"
    argv = ["solve", "--problem", "fmnist-sr2", "--solver", "red_diff", "--image", str(img)]
    argv += ["--prior", str(prior_folder), "--steps", "2", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "reconstruction.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["image"] == str(img)


def test_a_colour_photo_on_a_grey_problem_is_converted_and_the_colour_presets_named(
    prior_folder, tmp_path, capsys
):
    from invdiff.images import save_image

    img = tmp_path / "colour.png"
    ramp = torch.linspace(-1, 1, 3 * 40 * 40).reshape(1, 3, 40, 40)
    save_image(ramp, img)
    argv = ["solve", "--problem", "fmnist-sr2", "--solver", "pinv", "--image", str(img)]
    argv += ["--prior", str(prior_folder), "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "colour converted to grey" in err and "emoji-sr2" in err
    saved = torch.load(tmp_path / "run" / "tensors.pt")
    assert saved["x"].shape == (1, 1, 32, 32)


def test_solve_with_a_budget_in_network_evaluations(prior_folder, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["solve", "--problem", "fmnist-box", "--solver", "repaint", "--prior", str(prior_folder)]
    argv += ["--nfe", "7", "--set", "jump_length=2", "--set", "jump_n_sample=2", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nfe_budget"] == 7 and summary["network_evaluations"] <= 7
    assert solvers.budget("repaint", summary["steps"] + 1, jump_length=2, jump_n_sample=2).nfe > 7
    base = argv[: argv.index("--nfe")]
    assert main([*base, "--nfe", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "--nfe" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the two budgets exclude each other
        main([*base, "--nfe", "5", "--steps", "5", "--out", str(tmp_path / "bad")])
    assert "not allowed with" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--solver", "nope"], "Valid names"),
        (["--problem", "no-such-problem"], "Valid names"),
        (["--solver", "sr3"], "ConditionalPrior"),  # a pixel prior for a conditional solver
        (["--set", "bogus=1"], "unknown hyperparameter"),
        (["--steps", "0"], "--steps"),
        (["--image", "/no/such/file.png"], "no such file"),
        (["--class", "1"], "train pixel --class-conditional"),  # an unconditional prior
        (["--guidance", "2"], "--guidance needs --class"),
    ],
)
def test_solve_errors_are_clear_and_write_nothing(prior_folder, tmp_path, capsys, change, message):
    out = tmp_path / "run"
    argv = ["solve", "--problem", "fmnist-sr4", "--solver", "diffpir", "--prior", str(prior_folder)]
    argv += ["--steps", "2", "--out", str(out)]
    for i in range(0, len(change), 2):
        if change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i : i + 2]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_solve_help_mentions_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--problem",
        "--solver",
        "--image",
        "--prior",
        "--steps",
        "--seed",
        "--device",
        "--out",
    ):
        assert option in text
