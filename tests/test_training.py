"""Training loop: the loss falls, resume is exact, the EMA follows its formula, every kind runs."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from invdiff.cli.train import add_arguments, config_from_args
from invdiff.training import EMA, TrainConfig, train
from invdiff.training.loop import load_checkpoint_file


def tiny_data(n: int = 64, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random blobs in [-1, 1]: structured enough for a tiny UNet to learn something."""
    g = torch.Generator().manual_seed(1)
    low = torch.rand(n, 1, 2, 2, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(
        low, size=(size, size), mode="bilinear", align_corners=False
    )
    return x.clamp(-1, 1), torch.randint(0, 10, (n,), generator=g)


def tiny_config(tmp_path, kind: str = "pixel", name: str = "run", **kw) -> TrainConfig:
    values = dict(
        out=str(tmp_path / name),
        image_size=8,
        channels=(8, 16),
        attention=(False, False),
        norm_groups=4,
        layers_per_block=1,
        batch_size=8,
        steps=4,
        log_every=1,
        checkpoint_every=2,
        sample_every=1000,
        num_samples=4,
        sample_steps=2,
        warmup_steps=1,
        lr=2e-3,
    )
    values.update(kw)
    return TrainConfig.preset(kind, "small", **values)


def read_log(folder) -> list[dict]:
    with open(folder / "loss.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_run_lowers_the_loss(tmp_path):
    cfg = tiny_config(tmp_path, steps=40, lr=3e-3, checkpoint_every=40, batch_size=16)
    out = train(cfg, progress=False, data=tiny_data())
    losses = [float(r["loss"]) for r in read_log(out)]
    assert len(losses) == 40
    assert sum(losses[-8:]) / 8 < 0.7 * sum(losses[:8]) / 8
    for f in (
        "config.json",
        "checkpoint.safetensors",
        "prior/unet/config.json",
        "prior/training.json",
        "samples/latest.png",
    ):
        assert (out / f).is_file(), f


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path):
    data = tiny_data()
    straight = train(
        tiny_config(tmp_path, name="straight", steps=6, checkpoint_every=3),
        progress=False,
        data=data,
    )
    half = train(
        tiny_config(tmp_path, name="resumed", steps=3, checkpoint_every=3),
        progress=False,
        data=data,
    )
    resumed = train(
        tiny_config(tmp_path, name="resumed", steps=6, checkpoint_every=3),
        resume=True,
        progress=False,
        data=data,
    )
    assert half == resumed
    a = load_checkpoint_file(straight / "checkpoint.safetensors")
    b = load_checkpoint_file(resumed / "checkpoint.safetensors")
    assert a["step"] == b["step"] == 6
    for key in ("model",):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), name
    for name, t in a["ema"]["shadow"].items():
        assert torch.equal(t, b["ema"]["shadow"][name]), name
    assert torch.equal(a["generator"], b["generator"])
    assert [r["loss"] for r in read_log(straight)] == [r["loss"] for r in read_log(resumed)]


def test_resume_refuses_a_changed_configuration_and_overwriting(tmp_path):
    data = tiny_data()
    train(tiny_config(tmp_path, steps=2), progress=False, data=data)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(tmp_path, steps=2), progress=False, data=data)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tmp_path, steps=4, lr=1e-2), resume=True, progress=False, data=data)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(
            tiny_config(tmp_path, name="nothing", steps=2), resume=True, progress=False, data=data
        )


def test_ema_follows_its_formula():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    shadow = {k: v.clone() for k, v in model.state_dict().items()}
    for k in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.full_like(p, 0.1 * (k + 1)))
        d = min(0.9, (1 + k) / (10 + k))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(model)
        for name, p in model.state_dict().items():
            shadow[name] = d * shadow[name] + (1 - d) * p
    for name, e in ema.shadow.state_dict().items():
        torch.testing.assert_close(e, shadow[name])
        assert not torch.allclose(e, model.state_dict()[name])


def test_training_exports_the_ema_weights_not_the_raw_ones(tmp_path):
    out = train(
        tiny_config(tmp_path, steps=5, checkpoint_every=5), progress=False, data=tiny_data()
    )
    state = load_checkpoint_file(out / "checkpoint.safetensors")
    import invdiff

    prior = invdiff.priors.load(out / "prior")
    exported = prior.unet.state_dict()
    name = "conv_in.weight"
    assert torch.equal(exported[name], state["ema"]["shadow"][name])
    assert not torch.equal(exported[name], state["model"][name])
    info = json.loads((out / "prior" / "training.json").read_text())
    assert info["step"] == 5 and info["parameters"] > 0 and info["device"] == "cpu"


def test_model_init_does_not_touch_the_global_rng(tmp_path):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train(tiny_config(tmp_path, steps=1, checkpoint_every=1), progress=False, data=tiny_data())
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize(
    "extra",
    [
        {"prediction_type": "v_prediction", "beta_schedule": "squaredcos_cap_v2"},
        {"class_conditional": True, "label_dropout": 0.5},
        {"prediction_type": "sample", "snr_weighting": "min-snr-5"},
        {"prediction_type": "epsilon", "snr_weighting": "min-snr-5"},
    ],
)
def test_pixel_variants_train_and_load(tmp_path, extra):
    import invdiff

    out = train(tiny_config(tmp_path, steps=2, **extra), progress=False, data=tiny_data())
    prior = invdiff.priors.load(out / "prior")
    assert prior.prediction_type == extra.get("prediction_type", "epsilon")
    assert prior.x0(torch.zeros(2, 1, 8, 8), 0.5).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_put_min_snr_gamma_on_the_x0_error(prediction_type):
    """Whatever the network predicts, the weighted loss is ``min(SNR, gamma) |x0 err|^2``: the
    same prediction error expressed in each target and weighted by ``snr_loss_weight``."""
    from invdiff.priors.pixel import training_target, x0_from_output
    from invdiff.training.tasks import snr_loss_weight

    g = torch.Generator().manual_seed(0)
    abar = torch.tensor([0.999, 0.9, 0.5, 0.1, 0.001], dtype=torch.float64)
    a = abar.view(-1, 1, 1, 1)
    x0 = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    noise = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
    target = training_target(prediction_type, x0, noise, a)
    output = target + 0.01 * torch.randn(target.shape, generator=g, dtype=torch.float64)
    sigma = ((1 - a) / a).sqrt()
    x0_hat = x0_from_output(prediction_type, xt / a.sqrt(), sigma, output)
    weighted = snr_loss_weight(prediction_type, abar, 5.0) * (output - target).pow(2).mean(
        (1, 2, 3)
    )
    snr = abar / (1 - abar)
    on_x0 = snr.clamp(max=5.0) * (x0_hat - x0).pow(2).mean((1, 2, 3))
    torch.testing.assert_close(weighted, on_x0)


def test_snr_weighting_is_checked():
    with pytest.raises(ValueError, match="snr_weighting must be none, or min-snr-GAMMA"):
        TrainConfig.preset("pixel", snr_weighting="min-snr-zero")
    assert TrainConfig.preset("pixel", snr_weighting="min-snr-5").snr_weighting == "min-snr-5"


def test_sr3_autoencoder_and_latent_runs_export_loadable_priors(tmp_path):
    import invdiff
    from invdiff.priors import ConditionalPrior, LatentPrior

    data = tiny_data()
    sr3 = train(
        tiny_config(tmp_path, "sr3", name="sr3", factor=2, steps=2), progress=False, data=data
    )
    prior = invdiff.priors.load(sr3 / "prior")
    assert isinstance(prior, ConditionalPrior) and prior.factor == 2
    ae = train(
        tiny_config(tmp_path, "autoencoder", name="ae", steps=2, latent_channels=3),
        progress=False,
        data=data,
    )
    meta = json.loads((ae / "autoencoder" / "autoencoder.json").read_text())
    assert meta["scaling_factor"] > 0
    lat = train(
        tiny_config(tmp_path, "latent", name="lat", steps=2, autoencoder=str(ae), channels=(8, 16)),
        progress=False,
        data=data,
    )
    prior = invdiff.priors.load(lat / "prior")
    assert isinstance(prior, LatentPrior)
    assert prior.in_shape == (3, 4, 4) and prior.image_shape == (1, 8, 8)
    assert prior.scaling_factor == pytest.approx(meta["scaling_factor"])


def test_command_line_builds_the_config(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["sr3", "--factor", "2", "--steps", "7", "--channels", "16,32", "--beta-schedule", "cosine"]
    )
    cfg = config_from_args(args)
    assert (cfg.kind, cfg.factor, cfg.steps, cfg.channels) == ("sr3", 2, 7, (16, 32))
    assert cfg.beta_schedule == "squaredcos_cap_v2" and cfg.out == "runs/sr3-x2"
    assert cfg.attention == (False, True)
    args = parser.parse_args(
        ["pixel", "--prediction-type", "sample", "--snr-weighting", "min-snr-5"]
    )
    cfg = config_from_args(args)
    assert (cfg.prediction_type, cfg.snr_weighting) == ("sample", "min-snr-5")
    with pytest.raises(ValueError, match="autoencoder"):
        config_from_args(parser.parse_args(["latent"]))
    with pytest.raises(ValueError, match="norm_groups"):
        TrainConfig.preset(
            "pixel", channels=(8, 12, 16), attention=(False, False, False), norm_groups=8
        )
    with pytest.raises(ValueError, match="kind"):
        TrainConfig.preset("gan")
