"""PixelPrior: the sigma-space view of a diffusers DDPM UNet, checked against diffusers itself."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_unet
from diffusers import DDPMScheduler

from invdiff.priors.pixel import PREDICTION_TYPES, PixelPrior, timestep_for_sigma


def make_prior(prediction_type: str = "epsilon") -> PixelPrior:
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, prediction_type=prediction_type, clip_sample=False
    )
    return PixelPrior(tiny_unet(), scheduler)


def test_sigmas_are_the_vp_grid(tiny_pixel_prior):
    abar = tiny_pixel_prior.scheduler.alphas_cumprod.double()
    expected = ((1 - abar) / abar).sqrt()
    torch.testing.assert_close(tiny_pixel_prior.sigmas.double(), expected, rtol=1e-6, atol=0)
    assert (tiny_pixel_prior.sigmas.diff() > 0).all()
    torch.testing.assert_close(tiny_pixel_prior.alphas_cumprod(), abar, rtol=1e-6, atol=1e-9)
    assert tiny_pixel_prior.in_shape == (1, 8, 8)


def test_x0_eps_score_agree(tiny_pixel_prior, generator):
    x = torch.randn(3, 1, 8, 8, generator=generator) * 2
    sigma = torch.tensor([0.05, 0.7, 4.0])
    x0 = tiny_pixel_prior.x0(x, sigma)
    eps = tiny_pixel_prior.eps(x, sigma)
    score = tiny_pixel_prior.score(x, sigma)
    s = sigma.view(-1, 1, 1, 1)
    torch.testing.assert_close(eps, (x - x0) / s)
    torch.testing.assert_close(score, (x0 - x) / s**2)
    torch.testing.assert_close(score, -eps / s)
    # a scalar sigma means the same sigma for every sample
    torch.testing.assert_close(
        tiny_pixel_prior.x0(x, 0.7), tiny_pixel_prior.x0(x, torch.full((3,), 0.7))
    )


def test_bad_sigma_shape(tiny_pixel_prior):
    with pytest.raises(ValueError, match="one value per sample"):
        tiny_pixel_prior.x0(torch.zeros(2, 1, 8, 8), torch.ones(3))


def test_nfe_counts_network_evaluations(tiny_pixel_prior):
    calls = []
    handle = tiny_pixel_prior.unet.register_forward_hook(lambda *a: calls.append(1))
    x = torch.zeros(2, 1, 8, 8)
    tiny_pixel_prior.nfe = 0
    tiny_pixel_prior.x0(x, 1.0)
    tiny_pixel_prior.eps(x, 1.0)
    tiny_pixel_prior.score(x, 1.0)
    handle.remove()
    assert tiny_pixel_prior.nfe == 3 == len(calls)


def test_timestep_round_trip_on_grid(tiny_pixel_prior):
    sigmas = tiny_pixel_prior.sigmas
    t = timestep_for_sigma(sigmas, sigmas)
    torch.testing.assert_close(t, torch.arange(len(sigmas), dtype=torch.float64), atol=1e-9, rtol=0)


def test_timestep_round_trip_between_grid_points(tiny_pixel_prior):
    """``t(sigma)`` is linear in ``log sigma`` between neighbours; inverting it gives ``sigma``."""
    sigmas = tiny_pixel_prior.sigmas.double()
    idx = torch.tensor([0, 3, 100, 500, 998])
    frac = torch.tensor([0.25, 0.5, 0.1, 0.9, 0.75], dtype=torch.float64)
    log_s = (1 - frac) * sigmas[idx].log() + frac * sigmas[idx + 1].log()
    t = timestep_for_sigma(log_s.exp(), tiny_pixel_prior.sigmas)
    torch.testing.assert_close(t, idx.double() + frac, atol=1e-5, rtol=0)
    # inverse: interpolate log sigma at the fractional timestep
    lo = t.floor().long()
    back = ((1 - (t - lo)) * sigmas[lo].log() + (t - lo) * sigmas[lo + 1].log()).exp()
    torch.testing.assert_close(back, log_s.exp(), rtol=1e-5, atol=0)
    # outside the grid: clamped to its ends
    out = timestep_for_sigma(torch.tensor([1e-5, 1e5]), tiny_pixel_prior.sigmas)
    assert out.tolist() == [0.0, len(sigmas) - 1.0]


def test_off_grid_sigma_feeds_interpolated_timestep(tiny_pixel_prior, generator):
    """Between grid points the UNet sees ``x / sqrt(1 + sigma^2)`` at the fractional timestep."""
    sigmas = tiny_pixel_prior.sigmas.double()
    sigma = float((sigmas[400].log() * 0.6 + sigmas[401].log() * 0.4).exp())
    x = torch.randn(2, 1, 8, 8, generator=generator) * sigma
    with torch.no_grad():
        out = tiny_pixel_prior.unet(x / (1 + sigma**2) ** 0.5, torch.tensor([400.4, 400.4])).sample
    torch.testing.assert_close(tiny_pixel_prior.x0(x, sigma), x - sigma * out, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_x0_matches_diffusers_scheduler(prediction_type, generator):
    """``prior.x0`` equals ``DDPMScheduler.step(...).pred_original_sample`` (same model output)."""
    prior = make_prior(prediction_type)
    scheduler = prior.scheduler
    timesteps = torch.tensor([0, 7, 250, 999])
    x_t = torch.randn(len(timesteps), 1, 8, 8, generator=generator)
    with torch.no_grad():
        model_output = prior.unet(x_t, timesteps).sample
    abar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    ours = prior.x0(x_t / abar.sqrt(), prior.sigmas[timesteps])  # the same points in sigma-space
    for i, t in enumerate(timesteps.tolist()):
        step = scheduler.step(model_output[i : i + 1], t, x_t[i : i + 1], generator=generator)
        torch.testing.assert_close(
            ours[i : i + 1],
            step.pred_original_sample,
            atol=2e-4,
            rtol=1e-4,
            msg=f"{prediction_type} t={t}",
        )


def test_per_sample_sigmas_match_single_calls(generator):
    prior = make_prior("v_prediction")
    x = torch.randn(3, 1, 8, 8, generator=generator)
    sigma = prior.sigmas[[5, 300, 900]]
    batched = prior.x0(x, sigma)
    single = torch.cat([prior.x0(x[i : i + 1], sigma[i]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_unknown_prediction_type():
    scheduler = DDPMScheduler(num_train_timesteps=10)
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type"):
        PixelPrior(tiny_unet(), scheduler)


def test_save_and_load_round_trip(tmp_path, generator):
    prior = make_prior("v_prediction")
    folder = prior.save(tmp_path / "prior")
    loaded = PixelPrior.from_folder(folder)
    assert loaded.prediction_type == "v_prediction" and loaded.in_shape == prior.in_shape
    assert loaded.name == "prior"
    assert torch.equal(loaded.sigmas, prior.sigmas)
    x = torch.randn(2, 1, 8, 8, generator=generator)
    assert torch.equal(loaded.x0(x, 0.3), prior.x0(x, 0.3))
    assert all(not p.requires_grad for p in loaded.unet.parameters())


def test_from_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="prior folder not found"):
        PixelPrior.from_folder(tmp_path / "nope")
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="missing"):
        PixelPrior.from_folder(tmp_path / "half")


# ------------------------------------------------------------ a prior is an nn.Module


def test_prior_is_a_module_with_the_network_as_submodule(tiny_pixel_prior, generator):
    prior = tiny_pixel_prior
    assert isinstance(prior, torch.nn.Module) and not prior.training
    # the state dict holds the weights only: the noise grid is a non-persistent buffer
    keys = list(prior.state_dict())
    assert keys and all(k.startswith("unet.") for k in keys)
    assert "sigmas" in dict(prior.named_buffers())
    x = torch.randn(2, 1, 8, 8, generator=generator)
    with torch.no_grad():
        assert torch.equal(prior(x, 0.7), prior.x0(x, 0.7))


def test_to_moves_the_grid_and_keeps_the_log_grid_cached(tiny_pixel_prior):
    prior = tiny_pixel_prior
    log = prior.log_sigmas
    assert prior.log_sigmas is log  # computed once per grid tensor, not per call
    assert torch.equal(log, prior.sigmas.double().log())
    assert prior.to("cpu") is prior and prior.log_sigmas is log
    prior.to(torch.device("meta"))
    assert prior.sigmas.device.type == "meta" and prior.log_sigmas.device.type == "meta"


def test_sigmas_of_any_subclass_follow_to():
    from invdiff.priors.base import Prior

    class Double(Prior):
        def __init__(self) -> None:
            super().__init__()
            self.in_shape, self.sigmas = (1, 2, 2), torch.tensor([0.1, 1.0])

        def denoise(self, x, sigma, cond):
            return x

    prior = Double().to(torch.device("meta"))
    assert prior.sigmas.device.type == "meta" and prior.state_dict() == {}


def test_training_conversions_match_diffusers(generator):
    """The training input and targets equal the scheduler's ``add_noise`` / ``get_velocity``,
    and ``x0_from_output`` inverts them in sigma-space."""
    from invdiff.priors.pixel import training_target, vp_noisy, x0_from_output

    scheduler = DDPMScheduler()
    t = torch.tensor([0, 10, 500, 999])
    x0 = torch.rand(4, 1, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(4, 1, 8, 8, generator=generator)
    abar = scheduler.alphas_cumprod.float()[t].view(-1, 1, 1, 1)
    xt = vp_noisy(x0, noise, abar)
    torch.testing.assert_close(xt, scheduler.add_noise(x0, noise, t), atol=1e-6, rtol=1e-6)
    v = training_target("v_prediction", x0, noise, abar)
    torch.testing.assert_close(v, scheduler.get_velocity(x0, noise, t), atol=1e-6, rtol=1e-6)
    assert training_target("epsilon", x0, noise, abar) is noise
    assert training_target("sample", x0, noise, abar) is x0
    sigma = ((1 - abar) / abar).sqrt()
    x = xt / abar.sqrt()
    for kind, out in (("epsilon", noise), ("v_prediction", v), ("sample", x0)):
        torch.testing.assert_close(x0_from_output(kind, x, sigma, out), x0, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="prediction_type"):
        training_target("score", x0, noise, abar)


def test_prior_timestep_uses_the_cached_log_grid(tiny_pixel_prior, monkeypatch):
    prior = tiny_pixel_prior
    sigma = torch.tensor([0.05, 1.0, 30.0])
    expected = timestep_for_sigma(sigma, prior.sigmas)
    prior.log_sigmas  # noqa: B018 - fill the cache
    # neither a host read nor a log of the grid inside the call
    monkeypatch.setattr(torch.Tensor, "item", lambda self: pytest.fail("host sync"))
    log = torch.Tensor.log
    monkeypatch.setattr(
        torch.Tensor,
        "log",
        lambda self: pytest.fail("grid re-logged") if self.numel() > 3 else log(self),
    )
    assert torch.equal(prior.timestep_for_sigma(sigma), expected)
