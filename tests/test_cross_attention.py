"""Cross-attention conditioning (Rombach et al. 2022, Sec. 3.3): class tokens, or any (N, L, D)
token sequence, reach the UNet's attention blocks as keys and values; guidance against the
null sequence; tokens saved and loaded as tensors."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DConditionModel

import invdiff
from invdiff.priors.pixel import PixelPrior
from invdiff.priors.tokens import TOKENS_FILE, ClassTokens

CLASSES, TOKENS, DIM = 3, 2, 8


def _xattn_prior() -> PixelPrior:
    torch.manual_seed(0)  # diffusers initialises from the global generator; tests only
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        norm_num_groups=4,
        cross_attention_dim=DIM,
        attention_head_dim=8,
    )
    tokens = ClassTokens(CLASSES + 1, TOKENS, DIM)
    with torch.no_grad():  # tokens far apart, so that classes differ visibly
        tokens.table.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(1))
    return PixelPrior(unet, DDPMScheduler(), class_tokens=tokens)


@pytest.fixture(scope="module")
def prior():
    return _xattn_prior()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(2)
    return torch.randn(4, 1, 8, 8, generator=g), torch.tensor(0.7)


def _cross_attention_contexts(unet) -> tuple[list, object]:
    """The ``encoder_hidden_states`` every cross-attention (``attn2``) block receives."""
    seen: list = []

    def hook(module, args, kwargs):  # noqa: ANN001, ANN202
        seen.append(kwargs.get("encoder_hidden_states"))

    handles = [
        m.register_forward_pre_hook(hook, with_kwargs=True)
        for name, m in unet.named_modules()
        if name.endswith("attn2")
    ]
    return seen, handles


def test_attention_receives_the_tokens(prior, inputs):
    x, sigma = inputs
    tokens = torch.randn(4, 5, DIM, generator=torch.Generator().manual_seed(3))
    seen, handles = _cross_attention_contexts(prior.unet)
    try:
        prior.conditioned(tokens=tokens).x0(x, sigma)
    finally:
        for h in handles:
            h.remove()
    assert len(seen) >= 2  # the down, middle and up blocks
    for context in seen:
        assert context.shape == (4, 5, DIM)
        torch.testing.assert_close(context, tokens)


def test_changing_the_tokens_changes_the_output(prior, inputs):
    x, sigma = inputs
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(1, 3, DIM, generator=g), torch.randn(1, 3, DIM, generator=g)
    out_a = prior.conditioned(tokens=a).x0(x, sigma)
    out_b = prior.conditioned(tokens=b).x0(x, sigma)
    assert (out_a - out_b).abs().max() > 1e-3
    # a label is its class tokens
    label = torch.tensor(1)
    via_tokens = prior.conditioned(tokens=prior.class_tokens(label[None]))
    torch.testing.assert_close(prior.conditioned(label).x0(x, sigma), via_tokens.x0(x, sigma))
    assert not torch.allclose(
        prior.conditioned(torch.tensor(0)).x0(x, sigma), prior.conditioned(label).x0(x, sigma)
    )


def test_guidance_is_the_combination_and_the_null_branch_is_the_null_class(prior, inputs):
    x, sigma = inputs
    labels = torch.tensor([0, 1, 2, 1])
    x0_cond = prior.conditioned(labels).x0(x, sigma)
    x0_null = prior.x0(x, sigma)  # no condition: the null class's tokens
    torch.testing.assert_close(x0_null, prior.conditioned(torch.tensor(CLASSES)).x0(x, sigma))
    for w in (0.0, 1.0, 3.0):
        guided = prior.conditioned(labels, guidance=w).x0(x, sigma)
        torch.testing.assert_close(guided, (1 + w) * x0_cond - w * x0_null, atol=1e-5, rtol=1e-5)
    # token sequences of another length than the null sequence: guided in two calls
    tokens = torch.randn(1, 5, DIM, generator=torch.Generator().manual_seed(5))
    t_cond = prior.conditioned(tokens=tokens).x0(x, sigma)
    guided = prior.conditioned(tokens=tokens, guidance=2.0)
    torch.testing.assert_close(guided.x0(x, sigma), 3 * t_cond - 2 * x0_null, atol=1e-5, rtol=1e-5)
    assert guided.nfe == 2  # the conditional and the null branch


def test_class_tokens_survive_save_and_load(prior, inputs, tmp_path):
    x, sigma = inputs
    prior.save(tmp_path / "p")
    assert (tmp_path / "p" / TOKENS_FILE).is_file()
    loaded = invdiff.priors.load(tmp_path / "p")
    assert loaded.null_label == CLASSES
    label = torch.tensor(2)
    torch.testing.assert_close(
        loaded.conditioned(label, 1.5).x0(x, sigma), prior.conditioned(label, 1.5).x0(x, sigma)
    )


def test_bad_conditions_are_refused(prior, tmp_path):
    with pytest.raises(ValueError, match=r"\(N, L, 8\)"):
        prior.conditioned(tokens=torch.zeros(1, 2, DIM + 1))
    with pytest.raises(TypeError, match="float tensor"):
        prior.conditioned(tokens=torch.zeros(1, 2, DIM, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        prior.conditioned(tokens=torch.full((1, 2, DIM), float("nan")))
    with pytest.raises(ValueError, match="exactly one"):
        prior.conditioned(torch.tensor(1), tokens=torch.zeros(1, 2, DIM))
    with pytest.raises(ValueError, match="class_labels must be"):
        prior.conditioned(torch.tensor(CLASSES + 1))
    with pytest.raises(ValueError, match="guidance"):
        prior.conditioned(tokens=torch.zeros(1, 2, DIM), guidance=float("nan"))
    grey = invdiff.priors.load("fmnist32-pixel")
    with pytest.raises(ValueError, match="cross-attention UNet"):
        grey.conditioned(tokens=torch.zeros(1, 2, DIM))
    # a token file that does not match prior.json, or none
    prior.save(tmp_path / "p")
    from safetensors.torch import save_file

    save_file({"table": torch.zeros(2, 3)}, str(tmp_path / "p" / TOKENS_FILE))
    with pytest.raises(Exception, match="declares"):
        invdiff.priors.load(tmp_path / "p")
    (tmp_path / "p" / TOKENS_FILE).unlink()
    with pytest.raises(Exception, match="class tokens"):
        invdiff.priors.load(tmp_path / "p")


def test_cross_attention_training_run_exports_a_guidable_prior(tmp_path):
    from test_training import tiny_config, tiny_data

    from invdiff.training.loop import train

    cfg = tiny_config(
        tmp_path,
        steps=2,
        cross_attention=True,
        attention=(False, True),
        class_tokens=2,
        token_dim=8,
        label_dropout=0.5,
        sample_every=2,
        num_samples=4,
    )
    out = train(cfg, progress=False, data=tiny_data())
    assert (out / "samples" / "latest.png").is_file()  # one guided class per column
    prior = invdiff.priors.load(out / "prior")
    assert isinstance(prior.unet, UNet2DConditionModel) and prior.null_label == 10
    x = torch.zeros(2, 1, 8, 8)
    guided = prior.conditioned(torch.tensor([3, 4]), guidance=3.0)
    assert guided.x0(x, 0.5).shape == (2, 1, 8, 8)
    samples = invdiff.samplers.ddim(guided, 2, steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(samples).all()
    with pytest.raises(ValueError, match="choose one"):
        tiny_config(tmp_path, class_conditional=True, cross_attention=True)
