"""`invdiff solve` checks every pairing that needs no network before priors or data load."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_unet
from diffusers import DDPMScheduler

import invdiff
from invdiff.cli import main
from invdiff.priors.pixel import PixelPrior
from invdiff.priors.sr3 import SR3Prior


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    PixelPrior(tiny_unet(size=32), DDPMScheduler()).save(root / "pixel32")
    PixelPrior(tiny_unet(size=8), DDPMScheduler()).save(root / "pixel8")
    PixelPrior(tiny_unet(size=32, channels=3), DDPMScheduler()).save(root / "rgb32")
    SR3Prior(tiny_unet(size=32, in_channels=2), DDPMScheduler(), factor=2).save(root / "sr3x2")
    return root


@pytest.mark.parametrize(
    ("problem", "solver", "prior", "message"),
    [
        ("fmnist-sr4", "repaint", "pixel32", "inpainting operator"),  # operator capability
        ("fmnist-phase-retrieval", "ddrm", "pixel32", "SVDOperator"),  # operator capability
        ("fmnist-box", "latent_dps", "pixel32", "LatentPrior"),  # prior kind
        ("fmnist-box", "sr3", "pixel32", "ConditionalPrior"),  # prior kind
        ("fmnist-box", "dps", "pixel8", "1x32x32 images"),  # image size
        ("fmnist-box", "dps", "rgb32", "1x32x32 images"),  # channels
        ("fmnist-sr4", "sr3", "sr3x2", "x2 super-resolution"),  # SR3 factor
    ],
)
def test_pairing_errors_come_before_any_prior_or_data_loads(
    folders, tmp_path, monkeypatch, capsys, problem, solver, prior, message
):
    def must_not_run(*args, **kwargs):
        raise AssertionError("loaded weights or data before checking the pairing")

    monkeypatch.setattr(invdiff.priors, "load", must_not_run)
    monkeypatch.setattr(invdiff.data, "get", must_not_run)
    monkeypatch.setattr(PixelPrior, "from_folder", must_not_run)
    argv = ["solve", "--problem", problem, "--solver", solver, "--prior", str(folders / prior)]
    argv += ["--steps", "2", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_fitting_pairing_still_runs(folders, tmp_path, capsys):
    argv = ["solve", "--problem", "fmnist-sr2-bicubic", "--solver", "sr3", "--no-progress"]
    argv += ["--prior", str(folders / "sr3x2"), "--steps", "1", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "SR3 x2 prior for 32x32 grey images" in err
    assert torch.load(tmp_path / "run" / "tensors.pt")["y"].shape == (1, 1, 16, 16)


def test_bench_checks_pairings_before_loading_any_prior(tmp_path, monkeypatch):
    from test_bench import TINY_SUITE, make_tiny_setup

    from invdiff.bench.runner import SuiteError, run
    from invdiff.bench.suite import load

    paths = make_tiny_setup(tmp_path)
    text = TINY_SUITE.format(**paths).replace('name = "dps"', 'name = "sr3"\nprior = "pixel"')
    suite = tmp_path / "bad.toml"
    suite.write_text(text.replace("hyper = { zeta = 0.5 }", ""))

    def must_not_run(*args, **kwargs):
        raise AssertionError("loaded weights before checking the pairings")

    monkeypatch.setattr(invdiff.priors, "load", must_not_run)
    with pytest.raises(SuiteError, match="ConditionalPrior"):
        run(load(suite), tmp_path / "out", progress=False)


def test_solve_help_keeps_its_examples_on_their_own_lines(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    text = capsys.readouterr().out
    assert (
        "\n    invdiff solve --problem fmnist-sr4 --solver diffpir --out runs/sr4-diffpir\n" in text
    )
    assert "network evaluations" in text and "--no-progress" in text
