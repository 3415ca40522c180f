"""Family-specific operator tests: kernels, masks, maths of each family, parameter errors, banks."""

from __future__ import annotations

import json

import pytest
import torch

import invdiff
from invdiff.cli import main as cli_main
from invdiff.operators import banks, kernels, masks
from invdiff.operators.blur import CircularBlur, fold_kernel

get = invdiff.operators.get


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return (
        torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2
        - 1
    )


def _circular_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[i] = sum_a k[a] x[i - a + c]`` with periodic boundaries, term by term."""
    out = torch.zeros_like(x)
    ch, cw = k.shape[0] // 2, k.shape[1] // 2
    for a in range(k.shape[0]):
        for b in range(k.shape[1]):
            out += k[a, b] * torch.roll(x, shifts=(a - ch, b - cw), dims=(2, 3))
    return out


# --- kernels ---------------------------------------------------------------------------------
def test_kernels_are_normalised_centred_and_validated():
    g = kernels.gaussian_kernel(7, 1.2)
    assert g.shape == (7, 7) and abs(float(g.sum()) - 1) < 1e-12 and g.argmax() == 24
    torch.testing.assert_close(g, g.T)
    u = kernels.uniform_kernel(3)
    torch.testing.assert_close(u, torch.full((3, 3), 1 / 9, dtype=torch.float64))
    m = kernels.motion_kernel(9, 0.5, seed=0)
    assert m.shape == (9, 9) and bool((m >= 0).all()) and abs(float(m.sum()) - 1) < 1e-12
    assert int((m > 1e-3).sum()) > 3  # a stroke, not a point
    with pytest.raises(ValueError, match="size must be a positive odd"):
        kernels.gaussian_kernel(8, 1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        kernels.gaussian_kernel(7, -1.0)
    with pytest.raises(ValueError, match="intensity"):
        kernels.motion_kernel(9, 1.5)
    with pytest.raises(ValueError, match="size"):
        get("uniform_blur", size=4)
    with pytest.raises(ValueError, match="sigma"):
        get("gaussian_blur_padded", sigma=0.0)


# --- blur ------------------------------------------------------------------------------------
def test_circular_blur_is_the_circular_convolution_and_folds_large_kernels():
    k = torch.rand(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = _rand(2, 2, 6, 7)
    torch.testing.assert_close(
        CircularBlur(k, (2, 6, 7)).double()(x), _circular_conv(x, k), atol=1e-12, rtol=0
    )
    # a 13 x 13 kernel on 6 x 7 images: folded modulo the image size, still exact
    big = kernels.gaussian_kernel(13, 2.0)
    torch.testing.assert_close(
        CircularBlur(big, (2, 6, 7)).double()(x), _circular_conv(x, big), atol=1e-12, rtol=0
    )
    assert abs(float(fold_kernel(big, 6, 7).sum()) - 1) < 1e-12
    # the DPS setting on the default 32 x 32 image
    op = get("gaussian_blur", size=61, sigma=3.0)
    assert op(torch.zeros(1, 1, 32, 32)).shape == (1, 1, 32, 32)


def test_padded_blur_reflects_and_refuses_impossible_padding():
    op = get("gaussian_blur_padded", in_shape=(1, 8, 8), size=3, sigma=1.0).double()
    x = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    torch.testing.assert_close(op(x), x, atol=1e-12, rtol=0)  # reflect keeps a constant image
    with pytest.raises(ValueError, match="reflect padding"):
        get("gaussian_blur_padded", in_shape=(1, 16, 16), size=61, sigma=3.0)  # pads 30 >= 16
    with pytest.raises(ValueError, match="padding must be one of"):
        get("uniform_blur_padded", padding="mirror")
    assert (
        get("gaussian_blur_padded", in_shape=(1, 8, 8), size=61, sigma=3.0, padding="zeros")
        is not None
    )


def test_motion_blur_from_generator_and_bank():
    a = get("motion_blur", seed=3)
    b = get("motion_blur", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.kernel, b.kernel, atol=0, rtol=0)
    c = get("motion_blur_padded", bank="motion-k9", index=5)
    torch.testing.assert_close(
        c.kernel.double(), banks.entry("motion-k9", "motion", 5).float().double()
    )
    with pytest.raises(ValueError, match="not both"):
        get("motion_blur", bank="motion-k9", seed=1)
    with pytest.raises(ValueError, match="index= needs bank="):
        get("motion_blur", index=2)


# --- inpainting ------------------------------------------------------------------------------
def test_masks():
    r = masks.random_mask(10, 10, 0.7, seed=0)
    assert int((r == 0).sum()) == 70
    assert float(masks.random_mask(4, 4, 0.0, seed=0).min()) == 1.0
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"missing must be a fraction in \[0, 1\)"):
            masks.random_mask(4, 4, bad)
    b = masks.box_mask(8, 8, (2, 4))
    assert int((b == 0).sum()) == 8 and float(b[3:5, 2:6].sum()) == 0  # centred
    with pytest.raises(ValueError, match="box"):
        masks.box_mask(8, 8, (9, 2))
    torch.testing.assert_close(
        masks.half_mask(2, 4)[0], torch.tensor([1.0, 1, 0, 0], dtype=torch.float64)
    )
    lines = masks.lines_mask(4, 3)
    assert lines[:, 0].tolist() == [1, 0, 1, 0]
    f = masks.freeform_mask(32, 32, seed=1)
    assert 0.02 < float(1 - f.mean()) < 0.8 and set(f.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="side"):
        masks.half_mask(4, 4, "middle")


def test_inpainting_svd_puts_observed_pixels_first():
    op = get("inpainting_random", in_shape=(3, 4, 4), missing=0.25, seed=0).double()
    assert op.mask.shape == (1, 1, 4, 4) and op.is_inpainting
    observed = int(op.mask.sum())
    s = op.singular_values
    assert (
        s.numel() == 48
        and float(s[: 3 * observed].min()) == 1
        and float(s[3 * observed :].max()) == 0
    )
    x = _rand(2, 3, 4, 4)
    torch.testing.assert_close(op(x), x * op.mask)
    z = op.Vt(x)
    torch.testing.assert_close(
        z[:, : 3 * observed].sort(dim=1).values,
        x[op.mask.expand_as(x).bool()].reshape(2, -1).sort(dim=1).values,
    )
    with pytest.raises(ValueError, match="missing"):
        get("inpainting_random", missing=1.0)


# --- super-resolution ------------------------------------------------------------------------
def test_super_resolution_parameters():
    with pytest.raises(ValueError, match="factor must be one of 2, 4, 8"):
        get("super_resolution", factor=3)
    with pytest.raises(ValueError, match="divisible by factor=4"):
        get("bicubic_downsampling", in_shape=(1, 30, 30), factor=4)
    with pytest.raises(ValueError, match="reflect padding"):
        get("bicubic_downsampling", in_shape=(1, 8, 8), factor=8)
    op = get("super_resolution", in_shape=(1, 8, 8), factor=4)
    x = _rand(1, 1, 8, 8).float()
    torch.testing.assert_close(op(x), torch.nn.functional.avg_pool2d(x, 4))
    torch.testing.assert_close(
        op.pinv(op(x)), op(x).repeat_interleave(4, 2).repeat_interleave(4, 3)
    )
    # bicubic keeps constants (the kernel sums to 1) and works on RGB
    bic = get("bicubic_downsampling", in_shape=(3, 16, 16), factor=2)
    c = torch.full((1, 3, 16, 16), -0.4)
    torch.testing.assert_close(bic(c), torch.full((1, 3, 8, 8), -0.4))


# --- colorization, compressed sensing ----------------------------------------------------------
def test_colorization():
    op = get("colorization", in_shape=(3, 4, 4)).double()
    x = _rand(2, 3, 4, 4)
    torch.testing.assert_close(op(x), x.mean(1, keepdim=True))
    luma = get("colorization", in_shape=(3, 4, 4), weights="luma").double()
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    torch.testing.assert_close(luma(x), (x * w[:, None, None]).sum(1, keepdim=True))
    with pytest.raises(ValueError, match="3 channels"):
        get("colorization", in_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        get("colorization", weights="hsv")


def test_compressed_sensing():
    op = get("compressed_sensing", in_shape=(1, 8, 8), ratio=0.25, seed=0).double()
    assert op.out_shape() == (16,) and op.matrix().shape == (16, 64)
    assert op.singular_values.dtype == torch.float64
    # E ||A x||^2 = ||x||^2 for entries N(0, 1/m): the Frobenius norm^2 is close to n
    assert abs(float(op.matrix().square().sum()) / 64 - 1) < 0.2
    assert get("compressed_sensing", in_shape=(1, 4, 4), measurements=5).out_shape() == (5,)
    with pytest.raises(ValueError, match="ratio"):
        get("compressed_sensing", ratio=0.0)
    with pytest.raises(ValueError, match="measurements"):
        get("compressed_sensing", in_shape=(1, 4, 4), measurements=17)
    with pytest.raises(ValueError, match="not both"):
        get("compressed_sensing", ratio=0.5, measurements=3)
    # float64 buffers survive a round trip through float32 (kept as masters)
    o = get("compressed_sensing", in_shape=(1, 4, 4), seed=1)
    assert o.left.dtype == torch.float32
    u = o.to(torch.float64).left
    torch.testing.assert_close(
        u.T @ u, torch.eye(u.shape[0], dtype=torch.float64), atol=1e-13, rtol=0
    )


# --- nonlinear --------------------------------------------------------------------------------
def test_phase_retrieval():
    op = get("phase_retrieval", in_shape=(1, 6, 6), oversampling=2.0).double()
    assert op.out_shape() == (1, 12, 12)
    x = _rand(2, 1, 6, 6)
    y = op(x)
    # Parseval with the orthonormal DFT: ||y|| = ||(x + 1) / 2||
    torch.testing.assert_close(y.flatten(1).norm(dim=1), ((x + 1) / 2).flatten(1).norm(dim=1))
    assert float(op(-torch.ones(1, 1, 6, 6, dtype=torch.float64)).abs().max()) == 0  # black image
    with pytest.raises(ValueError, match="oversampling must be >= 1"):
        get("phase_retrieval", oversampling=0.5)


def test_hdr_and_nonlinear_blur():
    x = _rand(2, 1, 6, 6)
    hdr = get("hdr", in_shape=(1, 6, 6), scale=2.0).double()
    torch.testing.assert_close(hdr(x), torch.tanh(2 * x))
    hard = get("hdr", in_shape=(1, 6, 6), smooth=False).double()
    torch.testing.assert_close(hard(x), (2 * x).clamp(-1, 1))
    with pytest.raises(ValueError, match="scale"):
        get("hdr", scale=-1.0)
    nb = get("nonlinear_blur", in_shape=(3, 8, 8), seed=0).double()
    xx = _rand(2, 3, 8, 8)
    y = nb(xx)
    assert float(y.abs().max()) <= 1.0
    assert float((nb(0.5 * xx) - 0.5 * y).abs().max()) > 1e-3  # not linear
    torch.testing.assert_close(
        get("nonlinear_blur", in_shape=(3, 8, 8), seed=0).double()(xx), y, atol=0, rtol=0
    )
    assert nb(torch.zeros(1, 3, 8, 8, dtype=torch.float64)).abs().max() == 0
    with pytest.raises(ValueError, match="size"):
        get("nonlinear_blur", size=4)


# --- banks -----------------------------------------------------------------------------------
def test_shipped_banks_match_manifest_and_code():
    assert banks.check() == []
    manifest = banks.read_manifest()
    for name, entry in manifest["banks"].items():
        assert entry["sha256"] == invdiff.io.sha256_file(invdiff.paths.banks_dir() / entry["file"])
        assert entry["seed"] == banks.BANKS[name].seed and entry["command"].startswith(
            "invdiff banks"
        )
    op = get("inpainting_random", bank="fmnist32-random70", index=3)
    assert op.in_shape == (1, 32, 32) and abs(op.observed_fraction - 0.3) < 1e-3
    op92 = get("inpainting_random", bank="fmnist32-random92", index=0, in_shape=(3, 32, 32))
    assert abs(op92.observed_fraction - 0.08) < 1e-3
    assert get("inpainting_box", bank="fmnist32-box", index=31).observed_fraction == 0.75


def test_bank_round_trip_and_errors(tmp_path, monkeypatch):
    out = tmp_path / "operators"
    assert cli_main(["banks", "--out", str(out), "fmnist32-box", "motion-k9"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    first = {n: e["sha256"] for n, e in manifest["banks"].items()}
    assert set(first) == {"fmnist32-box", "motion-k9"}
    # byte-reproducible: writing again gives the same files
    banks.write(out, ["fmnist32-box"])
    assert banks.read_manifest(out)["banks"]["fmnist32-box"]["sha256"] == first["fmnist32-box"]
    data = banks.load("fmnist32-box", "box", out)
    torch.testing.assert_close(data, torch.from_numpy(banks.build("fmnist32-box")).double())
    monkeypatch.setenv("INVDIFF_HOME", str(tmp_path))
    torch.testing.assert_close(
        get("inpainting_box", bank="fmnist32-box", index=2).mask[0, 0].double(), data[2]
    )
    with pytest.raises(ValueError, match=r"index must be an int in \[0, 32\)"):
        get("inpainting_box", bank="fmnist32-box", index=32)
    with pytest.raises(banks.BankError, match="run `invdiff banks`"):
        get("inpainting_random", bank="fmnist32-random70")  # not written in this folder
    with pytest.raises(banks.BankError, match="holds box entries"):
        get("inpainting_random", bank="fmnist32-box")
    with pytest.raises(banks.BankError, match="unknown bank"):
        get("inpainting_random", bank="nope")
    with pytest.raises(ValueError, match="in_shape"):
        get("inpainting_box", bank="fmnist32-box", in_shape=(1, 16, 16))
    # a tampered file is refused
    path = out / "fmnist32-box.npz"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(banks.BankError, match="does not match its manifest.*invdiff banks"):
        get("inpainting_box", bank="fmnist32-box", index=0)
    assert cli_main(["banks", "--check", "--out", str(out)]) == 1
    (out / "manifest.json").unlink()
    with pytest.raises(banks.BankError, match="no bank manifest.*invdiff banks"):
        banks.load("fmnist32-box", "box", out)
