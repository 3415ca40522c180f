"""The command line: `invdiff --help`, `invdiff list`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from invdiff import cli
from invdiff.cli import listing


def test_help_via_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "invdiff", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: invdiff" in result.stdout
    for command in ("list", "demo"):
        assert command in result.stdout


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "usage: invdiff" in capsys.readouterr().out


def test_list_everything(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in listing.KINDS:
        assert f"{kind} (" in out
    for name in (
        "ddpm",
        "heun",
        "probability_flow",
        "fashion_mnist",
        "photos",
        "gaussian_mixture (class)",
    ):
        assert f"  {name}\n" in out
    sections = listing.sections()
    assert len(out.splitlines()) == len(sections) + sum(len(v) for v in sections.values())


def test_list_one_kind(capsys):
    assert cli.main(["list", "samplers"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["samplers (5):"] + [
        f"  {n}" for n in ("ddim", "ddpm", "heun", "predictor_corrector", "probability_flow")
    ]


def test_list_shows_registry_contents(capsys):
    from invdiff.registry import DATASETS, OPERATORS, SOLVERS

    cli.main(["list"])
    out = capsys.readouterr().out
    for name in OPERATORS.names() + SOLVERS.names() + DATASETS.names():
        assert f"  {name}\n" in out


def test_list_unknown_kind(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["list", "models"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_subcommand_help(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["demo", "--help"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and "--sigma-y" in out


def test_list_solvers_shows_needs_and_declared_hyperparameters(capsys):
    assert cli.main(["list", "solvers"]) == 0
    out = capsys.readouterr().out
    assert "ddrm  (needs SVDOperator, Prior, Gaussian)" in out
    assert "eta = 0.85: a number in [0, 1];" in out
