"""Progress on stderr and the network-evaluation budget, for every solver (tiny settings)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_unet
from diffusers import DDPMScheduler
from test_sr3_latent_priors import tiny_vae

import invdiff
from invdiff.priors.latent import LatentDiffusionPrior
from invdiff.priors.pixel import PixelPrior
from invdiff.priors.sr3 import SR3Prior

# solver -> (prior kind, operator, steps, hyperparameters) on real (tiny) UNet priors: cheap,
# and exercising each cost formula; every registered solver's cost is also checked against a
# counted run by the contract tests (tests/test_solver_contract.py), with no list to edit
SETTINGS = {
    "dps": ("pixel", "inpainting_box", 2, {}),
    "pigdm": ("pixel", "inpainting_box", 2, {}),
    "ddrm": ("pixel", "inpainting_box", 2, {}),
    "diffpir": ("pixel", "inpainting_box", 2, {}),
    "red_diff": ("pixel", "inpainting_box", 2, {}),
    "repaint": ("pixel", "inpainting_box", 5, {"jump_length": 2, "jump_n_sample": 2}),
    "ddnm": ("pixel", "inpainting_box", 5, {"travel_length": 2, "travel_repeat": 2}),
    "daps": ("pixel", "inpainting_box", 2, {"ode_steps": 2, "langevin_steps": 2}),
    "pinv": ("pixel", "inpainting_box", 2, {}),
    "tikhonov": ("pixel", "inpainting_box", 2, {}),
    "tv": ("pixel", "inpainting_box", 2, {}),
    "sr3": ("sr3", "bicubic_resize", 2, {}),
    "latent_dps": ("latent", "inpainting_box", 2, {}),
    "psld": ("latent", "inpainting_box", 2, {}),
    "latent_daps": ("latent", "inpainting_box", 2, {"ode_steps": 2, "langevin_steps": 2}),
}


def make_prior(kind: str):
    if kind == "pixel":
        return PixelPrior(tiny_unet(), DDPMScheduler(num_train_timesteps=1000))
    if kind == "sr3":
        return SR3Prior(tiny_unet(size=8, channels=1, in_channels=2), DDPMScheduler(), factor=2)
    return LatentDiffusionPrior(
        tiny_unet(size=4, channels=4), DDPMScheduler(), tiny_vae(), scaling_factor=0.7
    )


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_progress_shows_network_evaluations_of_the_budget(name, capsys):
    kind, op_name, steps, hyper = SETTINGS[name]
    prior = make_prior(kind)
    kwargs = {"factor": 2} if op_name == "bicubic_resize" else {}
    op = invdiff.operators.get(op_name, in_shape=(1, 8, 8), **kwargs)
    y = op(torch.zeros(2, 1, 8, 8))
    budget = invdiff.solvers.budget(name, steps, prior=prior, **hyper)
    prior.nfe = 0
    invdiff.solve(
        name,
        prior=prior,
        operator=op,
        y=y,
        noise=invdiff.noise.Gaussian(0.05),
        steps=steps,
        generator=0,
        progress=True,
        **hyper,
    )
    assert prior.nfe == budget.nfe  # the formula counts exactly what the run evaluates
    if name in ("repaint", "ddnm"):
        assert budget.nfe == 5 + 2 * 2  # one jump of 2 levels back at levels 0 and 2
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith(name)
    if budget.nfe:
        assert f"{budget.nfe}/{budget.nfe}" in last and "NFE" in last and "sigma=" in last
    else:
        assert "step=" in last and "NFE" not in last
    if name in ("daps", "latent_daps"):
        assert budget.langevin_steps == steps * hyper["langevin_steps"]


def test_budget_without_a_prior_and_the_papers_counts():
    assert invdiff.solvers.budget("dps", 1000).nfe == 1000
    # RePaint: every level once, plus 9 jumps of 10 levels back at levels 0, 10, ... below the top
    assert invdiff.solvers.budget("repaint", 100).nfe == 100 + 9 * 9 * 10  # 910
    assert invdiff.solvers.budget("repaint", 250).nfe == 250 + 24 * 9 * 10
    daps = invdiff.solvers.budget("daps", 200)
    assert (daps.nfe, daps.langevin_steps) == (1000, 20_000)
    assert "Langevin" in daps.describe() and invdiff.solvers.budget("tv", 5).nfe == 0


def test_no_progress_by_default(tiny_pixel_prior, capsys):
    op = invdiff.operators.get("inpainting_box", in_shape=(1, 8, 8))
    invdiff.solve(
        "dps",
        prior=tiny_pixel_prior,
        operator=op,
        y=op(torch.zeros(1, 1, 8, 8)),
        noise=invdiff.noise.Gaussian(0.05),
        steps=2,
        generator=0,
    )
    assert capsys.readouterr().err == ""
    assert tiny_pixel_prior._observers == ()  # nothing left attached


# --- the command line: budget line and bar on stderr, for every solver ---------------------

CLI_CASES = {name: "fmnist-box" for name in SETTINGS}
CLI_CASES["sr3"] = "fmnist-sr4-bicubic"
CLI_SET = {
    "daps": ["ode_steps=2", "langevin_steps=1"],
    "latent_daps": ["ode_steps=2", "langevin_steps=1"],
}


@pytest.fixture(scope="module")
def prior_folders(tmp_path_factory):
    """Untrained 32x32 priors of each kind, saved as folders (the problems are 32x32)."""
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("priors")
    PixelPrior(tiny_unet(size=32), DDPMScheduler()).save(root / "pixel")
    SR3Prior(tiny_unet(size=32, in_channels=2), DDPMScheduler(), factor=4).save(root / "sr3")
    torch.manual_seed(0)  # diffusers initialises from the global generator; tests only
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
    )
    LatentDiffusionPrior(
        tiny_unet(size=8, channels=4), DDPMScheduler(), vae, scaling_factor=0.7
    ).save(root / "latent")
    return root


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_cli_prints_budget_and_progress(name, prior_folders, tmp_path, capsys):
    from invdiff.cli import main

    kind = SETTINGS[name][0]
    argv = ["solve", "--problem", CLI_CASES[name], "--solver", name, "--steps", "1"]
    argv += ["--prior", str(prior_folders / kind), "--out", str(tmp_path / "run")]
    for item in CLI_SET.get(name, []):
        argv += ["--set", item]
    assert main(argv) == 0
    err = capsys.readouterr().err
    budget_line = next(line for line in err.splitlines() if line.startswith("invdiff solve:"))
    hyper = dict(item.split("=") for item in CLI_SET.get(name, []))
    nfe = invdiff.solvers.budget(
        name,
        1,
        prior=invdiff.priors.load(prior_folders / kind),
        **{k: int(v) for k, v in hyper.items()},
    ).nfe
    assert f"1 step = {nfe} network evaluation" in budget_line
    assert str(prior_folders / kind) in budget_line and "prior for 32x32 grey images" in budget_line
    bar = err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith(name)
    assert (f"{nfe}/{nfe}" in bar and "NFE" in bar) if nfe else "step=" in bar


def test_cli_no_progress(prior_folders, tmp_path, capsys):
    from invdiff.cli import main

    argv = ["solve", "--problem", "fmnist-box", "--solver", "dps", "--steps", "2", "--no-progress"]
    argv += ["--prior", str(prior_folders / "pixel"), "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "2 network evaluations" in err and "NFE" not in err


def test_a_solver_without_a_formula_counts_without_a_total(tiny_pixel_prior, capsys):
    from invdiff.solvers.base import Progress, Solver, Step

    class Custom(Solver):  # not registered: a user's own solver
        registry_name = "custom"

    budget = Custom().budget(3)
    assert budget.nfe is None and "unknown" in budget.describe()
    bar = Progress("custom", budget, 3)
    x = torch.zeros(1, 1, 8, 8)
    with tiny_pixel_prior.observe(bar.network):
        for i in range(3):
            tiny_pixel_prior.x0(x, 1.0)
            bar.callback(Step(i, 3, x, x, 1.0))
    bar.close()
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "3NFE" in last.replace(" ", "") and "step=3/3" in last
