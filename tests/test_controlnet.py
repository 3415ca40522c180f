"""ControlNet (Zhang et al. 2023): the zero-initialised adapter leaves the frozen prior exactly
as it was, the residual injection reproduces the UNet, training moves only the adapter, and a
ControlNet prior refuses problems measured with another operator."""

from __future__ import annotations

import pytest
import torch

import invdiff
from invdiff.priors.controlnet import (
    ControlledUNet,
    ControlNetAdapter,
    ControlNetPrior,
    controlled_unet,
)


@pytest.fixture(scope="module")
def base():
    return invdiff.priors.load("fmnist32-pixel")


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 1, 32, 32, generator=g), torch.tensor([10.0, 400.0, 900.0])


def _prior(base, adapter=None) -> ControlNetPrior:
    return ControlNetPrior(
        base.unet,
        base.scheduler,
        adapter if adapter is not None else ControlNetAdapter(base.unet, 1),
        degradation={"name": "super_resolution", "factor": 4},
        noise_sigma=0.05,
    )


def test_the_residual_forward_is_the_unet(base, inputs):
    x, t = inputs
    with torch.no_grad():
        torch.testing.assert_close(controlled_unet(base.unet, x, t), base.unet(x, t).sample)


def test_at_initialisation_the_adapted_model_is_the_prior_exactly(base, inputs):
    x, _ = inputs
    prior = _prior(base)
    cond = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    for sigma in (0.05, 1.0, 20.0):
        assert torch.equal(prior.x0(x, sigma, cond), base.x0(x, sigma))


def test_the_zero_convolutions_get_gradients_and_then_the_condition_matters(base, inputs):
    import copy

    x, t = inputs
    unet = copy.deepcopy(base.unet)
    model = ControlledUNet(unet, ControlNetAdapter(unet, 1))
    cond = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    # the whole adapter trains, its copy of the encoder included, though copied from a frozen
    # prior; the prior itself stays frozen
    assert all(p.requires_grad for p in model.adapter.parameters())
    assert not any(p.requires_grad for p in model.unet.parameters())
    model(x, t, cond=cond).sample.square().mean().backward()
    assert all(p.grad is None for p in model.unet.parameters())
    zero = model.adapter.zero_convs[0].weight
    assert zero.grad is not None and zero.grad.abs().sum() > 0
    with torch.no_grad():
        for conv in [*model.adapter.zero_convs, model.adapter.mid_zero_conv]:
            conv.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
        model.adapter.cond_embedding[-1].weight.normal_(0, 0.1)
        a = model(x, t, cond=cond).sample
        b = model(x, t, cond=-cond).sample
    assert (a - b).abs().max() > 1e-3
    # once the zero convolutions are not zero, the copied encoder gets gradients too
    model.zero_grad()
    model(x, t, cond=cond).sample.square().mean().backward()
    copied = [*model.adapter.down_blocks.parameters(), *model.adapter.mid_block.parameters()]
    assert all(p.grad is not None for p in copied)
    assert sum(float(p.grad.abs().sum()) for p in copied) > 0


def test_the_prior_conditions_on_the_pseudo_inverse_and_refuses_other_operators(base):
    prior = _prior(base)
    sr4 = invdiff.problems.get("fmnist-sr4")
    assert prior.mismatch(sr4.operator()) is None
    why = prior.mismatch(invdiff.problems.get("fmnist-random70").operator())
    assert why is not None and "super_resolution" in why
    x = invdiff.data.get("fashion_mnist", split="test").images(range(2))
    y = sr4.operator()(x)
    torch.testing.assert_close(prior.condition(y), sr4.operator().pinv(y).clamp(-1, 1))
    with pytest.raises(ValueError, match="N x 1 x 8 x 8"):
        prior.condition(x)
    with pytest.raises(ValueError, match="cond="):
        prior.x0(x, 1.0)
    with pytest.raises(Exception, match="super_resolution"):
        invdiff.solve(
            "sr3",
            prior=prior,
            operator=invdiff.problems.get("fmnist-random70").operator(),
            y=x,
            noise=sr4.noise,
            steps=2,
            generator=torch.Generator().manual_seed(0),
        )


def test_save_load_and_solve(base, tmp_path):
    adapter = ControlNetAdapter(base.unet, 1)
    with torch.no_grad():
        for conv in adapter.zero_convs:
            conv.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    prior = _prior(base, adapter)
    prior.save(tmp_path / "cn")
    loaded = invdiff.priors.load(tmp_path / "cn")
    assert isinstance(loaded, ControlNetPrior) and loaded.degradation_spec["factor"] == 4
    x = torch.zeros(2, 1, 32, 32)
    cond = torch.full((2, 1, 32, 32), 0.5)
    torch.testing.assert_close(loaded.x0(x, 0.7, cond), prior.x0(x, 0.7, cond))
    sr4 = invdiff.problems.get("fmnist-sr4")
    y = sr4.operator()(invdiff.data.get("fashion_mnist", split="test").images(range(2)))
    out = invdiff.solve(
        "sr3",
        prior=loaded,
        operator=sr4.operator(),
        y=y,
        noise=sr4.noise,
        steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all()
    (tmp_path / "cn" / "controlnet" / "adapter.safetensors").unlink()
    with pytest.raises(Exception, match="adapter.safetensors"):
        invdiff.priors.load(tmp_path / "cn")


def test_controlnet_training_moves_only_the_adapter(tmp_path):
    from test_training import tiny_data

    from invdiff.training.config import TrainConfig
    from invdiff.training.loop import train

    images, labels = tiny_data(n=32, size=32)
    cfg = TrainConfig.preset(
        "controlnet",
        out=str(tmp_path / "run"),
        prior="fmnist32-pixel",
        problem="fmnist-sr4",
        steps=2,
        batch_size=4,
        log_every=1,
        checkpoint_every=2,
        sample_every=1000,
        num_samples=4,
        sample_steps=2,
        warmup_steps=1,
    )
    out = train(cfg, progress=False, data=(images, labels))
    prior = invdiff.priors.load(out / "prior")
    base = invdiff.priors.load("fmnist32-pixel")
    assert isinstance(prior, ControlNetPrior)
    for (k, a), b in zip(prior.unet.state_dict().items(), base.unet.state_dict().values()):
        assert torch.equal(a, b), k
    moved = sum(float(c.weight.abs().sum()) for c in prior.adapter.zero_convs)
    assert moved > 0
    with pytest.raises(ValueError, match="--prior NAME --problem PRESET"):
        TrainConfig.preset("controlnet", prior="fmnist32-pixel")
