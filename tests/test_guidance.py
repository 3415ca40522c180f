"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6) on a class-conditional pixel prior."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

import invdiff
from invdiff.priors.pixel import PixelPrior

CLASSES = 3  # + the null class of label dropout


def _unet(size: int, class_embeds: int | None) -> UNet2DModel:
    torch.manual_seed(0)  # diffusers initialises from the global generator; tests only
    return UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=class_embeds,
    )


def _conditional_prior(prediction_type: str = "epsilon", size: int = 8) -> PixelPrior:
    unet = _unet(size, CLASSES + 1)
    with torch.no_grad():  # a class embedding far from zero, so that classes differ visibly
        unet.class_embedding.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(1))
    return PixelPrior(unet, DDPMScheduler(prediction_type=prediction_type))


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(2)
    return torch.randn(4, 1, 8, 8, generator=g), torch.tensor(0.7)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_guided_x0_is_the_guidance_combination(inputs, prediction_type):
    prior = _conditional_prior(prediction_type)
    x, sigma = inputs
    labels = torch.tensor([0, 1, 2, 1])
    x0_cond = prior.conditioned(labels).x0(x, sigma)
    x0_null = prior.x0(x, sigma)  # no class asked: the null class
    for w in (1.0, 3.0):
        guided = prior.conditioned(labels, guidance=w).x0(x, sigma)
        torch.testing.assert_close(guided, (1 + w) * x0_cond - w * x0_null, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(x0_cond, x0_null, atol=1e-3)  # the label matters


def test_guidance_zero_is_the_conditional_model_and_minus_one_the_unconditional(inputs):
    prior = _conditional_prior()
    x, sigma = inputs
    labels = torch.tensor(2)
    plain = PixelPrior(prior.unet, prior.scheduler, class_labels=labels)
    torch.testing.assert_close(prior.conditioned(labels, 0.0).x0(x, sigma), plain.x0(x, sigma))
    null = PixelPrior(prior.unet, prior.scheduler, class_labels=torch.tensor(CLASSES))
    torch.testing.assert_close(
        prior.conditioned(labels, -1.0).x0(x, sigma), null.x0(x, sigma), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(prior.x0(x, sigma), null.x0(x, sigma))  # unconditional = null


def test_a_guided_evaluation_is_one_call_on_a_doubled_batch_and_counts_twice(inputs):
    prior = _conditional_prior()
    x, sigma = inputs
    seen = []
    prior.unet.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    guided = prior.conditioned(torch.tensor(1), guidance=2.0)
    guided.x0(x, sigma)
    # two network evaluations per image (the conditional and the null branch), in one call
    assert seen == [2 * x.shape[0]] and guided.nfe == 2 and prior.nfe == 0
    conditional = prior.conditioned(torch.tensor(1), guidance=0.0)  # no null branch at w = 0
    conditional.x0(x, sigma)
    assert conditional.nfe == 1 and seen[-1] == x.shape[0]


@pytest.mark.parametrize("solver", ["dps", "ddrm", "pigdm", "diffpir"])
def test_a_budget_buys_half_the_steps_under_guidance(solver):
    """A guided step costs twice the network evaluations: at equal NFE a guided solver runs
    half the steps, and the counted NFE stays within the budget."""
    prior = _conditional_prior()
    guided = prior.conditioned(torch.tensor([0, 1]), guidance=3.0)
    s = invdiff.solvers.get(solver)
    plain, halved = s.steps_for_nfe(20, prior=prior), s.steps_for_nfe(20, prior=guided)
    assert s.nfe(halved, prior=guided) <= 20 < s.nfe(halved + 1, prior=guided)
    assert halved == plain // 2
    x = torch.zeros(2, 1, 8, 8)
    op = invdiff.operators.get("inpainting_random", in_shape=(1, 8, 8), missing=0.5, seed=0)
    y = op(x)
    g = torch.Generator().manual_seed(0)
    invdiff.solve(
        solver,
        prior=guided,
        operator=op,
        y=y,
        noise=invdiff.noise.Gaussian(sigma=0.05),
        nfe=20,
        generator=g,
    )
    assert guided.nfe == s.nfe(halved, prior=guided)


def test_solvers_and_samplers_run_given_a_class():
    prior = _conditional_prior()
    guided = prior.conditioned(torch.tensor(1), guidance=3.0)
    g = torch.Generator().manual_seed(0)
    samples = invdiff.samplers.ddim(guided, 2, steps=3, generator=g)
    assert samples.shape == (2, 1, 8, 8) and torch.isfinite(samples).all()
    op = invdiff.operators.get("inpainting_random", in_shape=(1, 8, 8), missing=0.5, seed=0)
    y = op(torch.rand(2, 1, 8, 8, generator=g) * 2 - 1)  # an untrained net samples noise
    for name in ("dps", "ddrm"):
        out = invdiff.solve(
            name,
            prior=guided,
            operator=op,
            y=y,
            noise=invdiff.noise.Gaussian(0.05),
            steps=3,
            generator=0,
        )
        assert out.shape == samples.shape and torch.isfinite(out).all()


def test_bad_conditions_are_refused_with_what_to_do(tiny_pixel_prior):
    with pytest.raises(ValueError, match="train pixel --class-conditional"):
        tiny_pixel_prior.conditioned(torch.tensor(1), guidance=2.0)
    prior = _conditional_prior()
    with pytest.raises(ValueError, match=r"0\.\.2 \(3 is the null class\)"):
        prior.conditioned(torch.tensor(7))
    with pytest.raises(ValueError, match="guidance must be a finite number >= -1"):
        prior.conditioned(torch.tensor(1), guidance=float("nan"))
    with pytest.raises(TypeError, match="integer tensor"):
        prior.conditioned(torch.tensor(1.0))


def test_solve_command_line_given_a_class(tmp_path, capsys):
    import json

    from invdiff.cli import main

    folder = _conditional_prior(size=32).save(tmp_path / "prior")
    out = tmp_path / "run"
    argv = ["solve", "--problem", "fmnist-box", "--solver", "ddrm", "--prior", str(folder)]
    argv += ["--steps", "2", "--class", "1", "--guidance", "2", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    # 2 steps, each a guided evaluation: its conditional and its null branch
    assert json.loads((out / "summary.json").read_text())["network_evaluations"] == 4
    assert "2 steps = 4 network evaluations" in capsys.readouterr().err
    bad = [*argv[: argv.index("--class")], "--class", "9", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "3 is the null class" in capsys.readouterr().err


# ---------------------------------------------------------------- benchmark suites


GUIDED_SUITE = """
name = "guided"
device = "cpu"
batch_size = 2
metrics = ["psnr"]
figure_images = 0
save_samples = false
problems = ["fmnist-box"]

[data]
dataset = "{dataset}"
{data}
count = 4

[[solvers]]
name = "dps"
nfe = 4
prior = "{prior}"
class_guidance = {w}
"""


def _fmnist_conditional_prior(tmp_path, classes: int) -> str:
    folder = PixelPrior(_unet(32, classes + 1), DDPMScheduler()).save(tmp_path / f"p{classes}")
    return str(folder)


def _guided_suite(tmp_path, prior, w=2.0, dataset="fashion_mnist", data='split = "test"'):
    from invdiff.bench.suite import load

    path = tmp_path / "guided.toml"
    path.write_text(GUIDED_SUITE.format(prior=prior, w=w, dataset=dataset, data=data))
    return load(path)


def test_a_suite_conditions_each_image_on_its_label_at_equal_nfe(tmp_path, monkeypatch):
    from invdiff.bench import rows as rowio
    from invdiff.bench.runner import run

    seen = []
    original = PixelPrior.conditioned

    def spy(self, class_labels=None, guidance=0.0, **kw):
        seen.append((class_labels.tolist(), guidance))
        return original(self, class_labels, guidance, **kw)

    monkeypatch.setattr(PixelPrior, "conditioned", spy)
    prior = _fmnist_conditional_prior(tmp_path, classes=10)
    run(_guided_suite(tmp_path, prior), tmp_path / "run", progress=False)
    labels = invdiff.data.get("fashion_mnist", split="test").labels[:4].tolist()
    assert seen == [(labels[:2], 2.0), (labels[2:], 2.0)]
    rows = list(rowio.read(tmp_path / "run" / "rows.jsonl"))
    # a budget of 4 evaluations buys 2 guided DPS steps (conditional + null branch each)
    assert len(rows) == 4 and all(r["nfe"] == 4 and r["steps"] == 2 for r in rows)
    assert all(r["class_guidance"] == 2.0 for r in rows)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("unconditional", "class_guidance needs a class-conditional prior"),
        ("few-classes", r"the data set has label \d, its prior knows classes 0..2"),
        ("no-labels", "has none"),
    ],
)
def test_a_guided_suite_entry_that_cannot_run_fails_before_any_solving(
    tmp_path, monkeypatch, setup, message
):
    from invdiff.bench.runner import run
    from invdiff.bench.suite import SuiteError

    def no_work(*a, **k):
        raise AssertionError("a solver ran although the suite is invalid")

    monkeypatch.setattr(invdiff, "solve", no_work)
    kwargs = {}
    if setup == "unconditional":
        prior = str(PixelPrior(_unet(32, None), DDPMScheduler()).save(tmp_path / "plain"))
    elif setup == "few-classes":
        prior = _fmnist_conditional_prior(tmp_path, classes=3)
    else:
        from invdiff.images import save_image

        prior = _fmnist_conditional_prior(tmp_path, classes=10)
        for i in range(4):
            save_image(torch.zeros(1, 1, 32, 32), tmp_path / "images" / f"{i}.png")
        data = f'root = "{tmp_path / "images"}"\nsize = 32\nchannels = 1'
        kwargs = {"dataset": "image_folder", "data": data}
    with pytest.raises(SuiteError, match=message):
        run(_guided_suite(tmp_path, prior, **kwargs), tmp_path / "out", progress=False)


def test_a_negative_class_guidance_is_refused_when_parsed(tmp_path):
    from invdiff.bench.suite import SuiteError

    with pytest.raises(SuiteError, match=r"class_guidance must be a guidance weight >= 0"):
        _guided_suite(tmp_path, "fmnist32-pixel", w=-1.0)
