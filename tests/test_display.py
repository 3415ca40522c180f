"""One rule for showing a measurement as an image, shared by solve, bench and demo."""

from __future__ import annotations

import torch

import invdiff
from invdiff.cli import demo
from invdiff.display import measurement_image


def test_phase_retrieval_is_on_a_log_scale_even_when_small():
    op = invdiff.operators.get("phase_retrieval", in_shape=(1, 8, 8))
    x = torch.full((2, 1, 8, 8), -0.99)  # a dark image: every |y| stays inside [-1.5, 1.5]
    x[:, :, 2:5, 3:6] = -0.5
    y = op(x)
    assert float(y.abs().max()) < 1.5
    shown, caption = measurement_image(y, op, (1, 8, 8))
    assert "log scale" in caption and shown.shape == y.shape
    assert shown.min() >= -1 and shown.max() <= 1 and shown.std() > 0.2  # not a flat square


def test_images_upsampling_and_vectors():
    sr = invdiff.operators.get("super_resolution", in_shape=(1, 8, 8), factor=2)
    y = sr(torch.rand(1, 1, 8, 8) * 2 - 1)
    shown, caption = measurement_image(y, sr, (1, 8, 8))
    assert caption == "y (upsampled)" and shown.shape == (1, 1, 8, 8)
    assert torch.equal(shown[..., ::2, ::2], y)
    cs = invdiff.operators.get("compressed_sensing", in_shape=(1, 8, 8), ratio=0.5, seed=0)
    shown, caption = measurement_image(cs(torch.zeros(1, 1, 8, 8)), cs, (1, 8, 8))
    assert caption.startswith("A⁺y") and shown.shape == (1, 1, 8, 8)


def test_solve_bench_and_demo_share_the_rule(tmp_path):
    import invdiff.bench.report as report
    import invdiff.cli.solve as command

    # the old per-command implementations are gone; each imports the one function
    assert not hasattr(report, "measurement_panel") and not hasattr(command, "measurement_image")
    op = invdiff.operators.get("phase_retrieval", in_shape=(1, 8, 8))
    y = op(torch.rand(1, 1, 8, 8) * 2 - 1)
    assert torch.equal(demo.for_display(y, op)[0], measurement_image(y, op)[0])
    for module in (report, command, demo):
        assert "measurement_image" in open(module.__file__).read()


def test_image_grid_is_written_atomically_as_a_png(tmp_path):
    from invdiff.display import image_grid, save_figure

    grey, rgb = torch.zeros(1, 1, 8, 8), torch.rand(3, 8, 8) * 2 - 1  # a batch of one or C x H x W
    fig = image_grid(
        [[grey, rgb], [rgb, grey]], column_titles=["a", "b"], row_labels=["#0", "#1"], title="t"
    )
    path = save_figure(fig, tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temporary file left
