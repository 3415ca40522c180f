"""`invdiff demo`: a bundled photo through several operators, figure and images written."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from invdiff import cli
from invdiff.cli import demo
from invdiff.images import load_image


def test_demo_writes_figure_and_images(tmp_path, capsys):
    out = tmp_path / "demo"
    names = [
        "inpainting_box",
        "gaussian_blur",
        "super_resolution",
        "colorization",
        "phase_retrieval",
        "hdr",
    ]
    code = cli.main(["demo", "--out", str(out), "--size", "32", "--operators", *names])
    assert code == 0
    text = capsys.readouterr().out
    assert "sigma_y = 0.05" in text and all(n in text for n in names)
    with Image.open(out / "demo.png") as fig:
        assert fig.format == "PNG" and fig.size[0] > fig.size[1] > 100
    for n in names:
        assert (out / f"{n}_y.png").is_file()
    linear = {"inpainting_box", "gaussian_blur", "super_resolution", "colorization"}
    assert {p.name for p in out.glob("*_pinv.png")} == {f"{n}_pinv.png" for n in linear}
    assert not list(out.glob("*.tmp"))  # written atomically
    clean = load_image(out / "clean.png")
    assert clean.shape == (1, 3, 32, 32)
    # box inpainting: the pseudo-inverse keeps the observed pixels (+ noise) and zeroes the box
    pinv = load_image(out / "inpainting_box_pinv.png")
    assert (pinv - clean).abs().mean() < 0.2
    assert torch.allclose(pinv[..., 14:18, 14:18], torch.zeros(1), atol=0.01)


def test_demo_rows_are_consistent():
    from invdiff.data.photos import photo

    x = photo("astronaut", 16, 3)
    rows = demo.degrade(x, ["inpainting_random", "nonlinear_blur"], sigma_y=0.0, seed=0)
    assert [r.kind for r in rows] == ["SVD", "nonlinear"]
    assert rows[0].pinv is not None and rows[1].pinv is None
    # noiseless random inpainting: the pseudo-inverse is exact on the observed pixels
    observed = rows[0].y != 0
    assert torch.allclose(rows[0].pinv[observed], x[observed], atol=1e-5)


def test_for_display_maps_magnitudes_to_range():
    y = torch.rand(1, 3, 8, 8) * 40
    shown, note = demo.for_display(y)
    assert note and shown.min() >= -1 and shown.max() <= 1 and shown.shape == y.shape
    img = torch.rand(1, 1, 8, 8) * 2 - 1
    assert torch.equal(demo.for_display(img)[0], img)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--size", "30"], "multiple of 8"),
        (["--operators", "warp"], "unknown or unavailable"),
        (["--sigma-y", "-1"], "sigma-y"),
    ],
)
def test_demo_bad_arguments(argv, match, tmp_path):
    with pytest.raises(SystemExit, match=match):
        cli.main(["demo", "--out", str(tmp_path), *argv])
    assert not list(tmp_path.iterdir())
