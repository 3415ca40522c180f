"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6) on a class-conditional pixel prior."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

import invdiff
from invdiff.priors.pixel import PixelPrior

CLASSES = 3  # + the null class of label dropout


def _conditional_prior(prediction_type: str = "epsilon", size: int = 8) -> PixelPrior:
    torch.manual_seed(0)  # diffusers initialises from the global generator; tests only
    unet = UNet2DModel(
        sample_size=size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=CLASSES + 1,
    )
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


def test_a_guided_evaluation_is_one_call_on_a_doubled_batch(inputs):
    prior = _conditional_prior()
    x, sigma = inputs
    seen = []
    prior.unet.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    guided = prior.conditioned(torch.tensor(1), guidance=2.0)
    guided.x0(x, sigma)
    assert seen == [2 * x.shape[0]] and guided.nfe == 1 and prior.nfe == 0


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
    assert json.loads((out / "summary.json").read_text())["network_evaluations"] == 2
    bad = [*argv[: argv.index("--class")], "--class", "9", "--out", str(tmp_path / "bad")]
    assert main(bad) == 2
    assert "3 is the null class" in capsys.readouterr().err
