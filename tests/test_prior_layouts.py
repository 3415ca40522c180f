"""`invdiff.priors.load` on checkpoints written by diffusers' save_pretrained, in each layout."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import tiny_unet
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DConditionModel

import invdiff
from invdiff.priors.checks import PriorFolderError
from invdiff.priors.pixel import PixelPrior


def tiny_condition_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)  # diffusers initialises from the global generator; tests only
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        cross_attention_dim=8,
        attention_head_dim=4,
    )


def same_denoiser(loaded, unet, scheduler) -> None:
    """The loaded prior denoises exactly as a prior built from the in-memory model does."""
    reference = PixelPrior(unet, scheduler)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for sigma in (0.05, 1.0, 20.0):
        assert torch.allclose(loaded.x0(x, sigma), reference.x0(x, sigma), atol=1e-6)
    assert loaded.prediction_type == scheduler.config.prediction_type
    assert loaded.in_shape == (1, 8, 8)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_pipeline_layout_from_ddpm_pipeline(tmp_path, prediction_type):
    unet = tiny_unet()
    scheduler = DDPMScheduler(num_train_timesteps=100, prediction_type=prediction_type)
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = invdiff.priors.load(tmp_path / "pipe")
    assert type(loaded) is PixelPrior and len(loaded.sigmas) == 100
    same_denoiser(loaded, unet, scheduler)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_single_model_layout_with_scheduler_config_beside(tmp_path, prediction_type):
    unet = tiny_unet()
    # a DDIM config, as many single-model repositories ship: the same training chain
    scheduler = DDIMScheduler(num_train_timesteps=50, prediction_type=prediction_type)
    unet.save_pretrained(tmp_path / "m")
    scheduler.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "config.json").is_file()
    assert (tmp_path / "m" / "scheduler_config.json").is_file()
    info = invdiff.priors.describe(tmp_path / "m")  # from the JSON files alone
    assert (info.kind, info.prior_type, info.image_shape) == ("pixel", PixelPrior, (1, 8, 8))
    assert info.noise_levels == 50
    loaded = invdiff.priors.load(tmp_path / "m")
    assert len(loaded.sigmas) == 50
    same_denoiser(loaded, unet, DDPMScheduler.from_config(scheduler.config))


def test_single_model_layout_without_scheduler_is_a_clear_error(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="scheduler_config.json") as err:
        invdiff.priors.load(tmp_path / "m")
    assert "does not guess" in str(err.value) and "save_pretrained" in str(err.value)
    # following the message makes the folder load
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "m")
    assert isinstance(invdiff.priors.load(tmp_path / "m"), PixelPrior)


@pytest.mark.parametrize("layout", ["pipeline", "single"])
def test_unet2d_condition_model(tmp_path, layout):
    unet = tiny_condition_unet()
    scheduler = DDPMScheduler(num_train_timesteps=100)
    folder = tmp_path / layout
    if layout == "pipeline":
        unet.save_pretrained(folder / "unet")
        scheduler.save_pretrained(folder / "scheduler")
    else:
        unet.save_pretrained(folder)
        scheduler.save_pretrained(folder)
    loaded = invdiff.priors.load(folder)
    assert isinstance(loaded.unet, UNet2DConditionModel)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = loaded.sigmas.new_tensor([0.5, 0.5])
    # the network sees one token of zeros as its (null) condition
    expected = (
        x
        - 0.5
        * unet(
            x / (1 + 0.25) ** 0.5,
            torch.full((2,), float(loaded_timestep(loaded, 0.5))),
            encoder_hidden_states=torch.zeros(2, 1, 8),
        ).sample
    )
    assert torch.allclose(loaded.x0(x, t), expected, atol=1e-5)


def loaded_timestep(prior, sigma: float) -> float:
    from invdiff.priors.pixel import timestep_for_sigma

    return float(timestep_for_sigma(torch.tensor([sigma]), prior.sigmas.cpu())[0])


@pytest.mark.parametrize("layout", ["pipeline", "single"])
def test_pickled_bin_weights_are_refused_unopened_with_a_safe_conversion(
    tmp_path, monkeypatch, layout
):
    unet = tiny_unet()
    folder = tmp_path / layout
    sub = folder / "unet" if layout == "pipeline" else folder
    unet.save_pretrained(sub, safe_serialization=False)
    DDPMScheduler().save_pretrained(folder / "scheduler" if layout == "pipeline" else folder)
    binary = sub / "diffusion_pytorch_model.bin"
    assert binary.is_file() and not (sub / "diffusion_pytorch_model.safetensors").exists()

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a user's pickle file was opened")

    with monkeypatch.context() as m:
        m.setattr(torch, "load", no_unpickling)
        m.setattr("pickle.load", no_unpickling)
        m.setattr("pickle.loads", no_unpickling)
        with pytest.raises(PriorFolderError, match="pickled") as err:
            invdiff.priors.load(folder)
    message = str(err.value)
    assert "weights_only=True" in message and "safetensors" in message
    # the command in the message, run as a user would, converts the file; the folder then loads
    code = re.search(r'python3 -c "(.*)"', message).group(1)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    loaded = invdiff.priors.load(folder)
    same_denoiser(loaded, unet, DDPMScheduler())


def test_a_folder_without_any_unet_names_both_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model_index.json").write_text(json.dumps({"_class_name": "X"}))
    with pytest.raises(FileNotFoundError, match="unet/config.json") as err:
        invdiff.priors.load(tmp_path / "empty")
    assert "single model" in str(err.value)


def test_a_variant_weights_file_is_named_in_the_error(tmp_path):
    tiny_unet().save_pretrained(tmp_path / "v", variant="fp16")
    DDPMScheduler().save_pretrained(tmp_path / "v")
    with pytest.raises(FileNotFoundError, match="found diffusion_pytorch_model.fp16.safetensors"):
        invdiff.priors.load(tmp_path / "v")


def test_the_command_line_prints_the_bin_refusal_on_one_line(tmp_path, capsys):
    from invdiff.cli import main

    folder = tmp_path / "bin"
    tiny_unet().save_pretrained(folder / "unet", safe_serialization=False)
    DDPMScheduler().save_pretrained(folder / "scheduler")
    argv = ["solve", "--problem", "fmnist-box", "--solver", "dps", "--prior", str(folder)]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "holds pickled PyTorch weights" in lines[0], lines
    # the conversion command stays whole, introduced by its sentence
    assert 'refuses code): python3 -c "import torch;' in lines[0]
    assert re.search(r'python3 -c "(.*)"; then load the folder again', lines[0])
    assert not (tmp_path / "out").exists()
