"""`invdiff train KIND --data DIR`: training on a folder of the user's images."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_training import read_log, tiny_config, tiny_data

import invdiff
from invdiff.cli import main
from invdiff.training import train
from invdiff.training.loop import load_checkpoint_file

TINY = ["--steps", "3", "--image-size", "8", "--channels", "8,16", "--attention", "0,0"]
TINY += ["--norm-groups", "4", "--layers-per-block", "1", "--batch-size", "2", "--log-every", "1"]
TINY += ["--sample-every", "1000", "--num-samples", "4", "--sample-steps", "2", "--no-progress"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """8 RGB PNGs of different sizes and aspect ratios, some in a sub-folder."""
    root = tmp_path_factory.mktemp("photos")
    g = np.random.default_rng(0)
    for i in range(8):
        h, w = 12 + 2 * i, 20 - i
        where = root / "more" if i % 3 == 0 else root
        where.mkdir(exist_ok=True)
        Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(where / f"{i}.png")
    return root


def test_train_pixel_on_a_folder_of_pngs(photo_folder, tmp_path, capsys):
    out = tmp_path / "pixel"
    assert main(["train", "pixel", "--data", str(photo_folder), "--out", str(out), *TINY]) == 0
    prior = invdiff.priors.load(out / "prior")
    assert prior.in_shape == (3, 8, 8)  # RGB by default for a folder
    assert len(read_log(out)) == 3
    info = json.loads((out / "prior" / "training.json").read_text())
    assert info["data"]["train_images"] == 7 and info["data"]["validation_images"] == 1
    card = (out / "prior" / "README.md").read_text()
    assert "8x8 RGB" in card and str(photo_folder) in card
    assert "7 training images, 1 held out for validation" in card and "SHA-256" in card
    # the sample grid is labelled: a title band above the 2 x 2 grid of 8 px samples
    grid = np.asarray(Image.open(out / "samples" / "latest.png"))
    assert grid.shape[0] > 2 * 8 + 3 * 2 and grid[:8].max() > 240


def test_train_sr3_autoencoder_and_latent_on_a_folder(photo_folder, tmp_path):
    data = ["--data", str(photo_folder), *TINY, "--steps", "1"]  # the last --steps counts
    assert main(["train", "sr3", "--factor", "2", "--out", str(tmp_path / "sr3"), *data]) == 0
    sr3 = invdiff.priors.load(tmp_path / "sr3" / "prior")
    assert sr3.in_shape == (3, 8, 8) and sr3.factor == 2
    assert main(["train", "autoencoder", "--out", str(tmp_path / "ae"), *data]) == 0
    ae_card = (tmp_path / "ae" / "autoencoder" / "README.md").read_text()
    assert "8x8 RGB" in ae_card and "held out for validation" in ae_card
    argv = ["train", "latent", "--autoencoder", str(tmp_path / "ae"), "--out"]
    assert main([*argv, str(tmp_path / "lat"), *data]) == 0
    latent = invdiff.priors.load(tmp_path / "lat" / "prior")
    assert latent.image_shape == (3, 8, 8)


def test_folder_errors_before_training(tmp_path, capsys):
    assert main(["train", "pixel", "--dataset", "image_folder", "--out", str(tmp_path / "a")]) == 2
    assert "--data DIR" in capsys.readouterr().err
    assert (
        main(["train", "pixel", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    )
    assert "no such folder" in capsys.readouterr().err


def test_the_split_is_deterministic_and_disjoint(photo_folder, tmp_path):
    def names(root, split):
        ds = invdiff.data.get("image_folder", root=root, size=8, split=split)
        return sorted(p.relative_to(root).as_posix() for p in ds.files)

    train, val = names(photo_folder, "train"), names(photo_folder, "validation")
    assert len(val) == 1 and not set(train) & set(val)
    assert sorted(train + val) == names(photo_folder, "all")
    # a copy written in another order splits the same way
    copy = tmp_path / "copy"
    for rel in reversed(names(photo_folder, "all")):
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo_folder / rel, copy / rel)
    assert names(copy, "validation") == val


def test_loss_csv_is_continuous_across_a_resume(tmp_path):
    data = tiny_data()
    kw = dict(log_every=2, checkpoint_every=1, batch_size=2)
    straight = train(
        tiny_config(tmp_path, name="straight", steps=2, **kw), progress=False, data=data
    )
    train(tiny_config(tmp_path, name="resumed", steps=1, **kw), progress=False, data=data)
    with open(tmp_path / "resumed" / "loss.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["1"]  # the end of the first part
    # the running mean of the loss since the last on-grid row is kept in the checkpoint
    running, count = load_checkpoint_file(tmp_path / "resumed" / "checkpoint.safetensors")[
        "loss_running"
    ]
    assert count == 1 and running > 0
    resumed = train(
        tiny_config(tmp_path, name="resumed", steps=2, **kw), resume=True, progress=False, data=data
    )
    a, b = read_log(straight), read_log(resumed)
    assert [r["step"] for r in b] == ["2"]  # the mean of steps 1 and 2, as in the straight run
    assert [(r["step"], r["loss"]) for r in a] == [(r["step"], r["loss"]) for r in b]
    assert torch.equal(
        load_checkpoint_file(straight / "checkpoint.safetensors")["model"]["conv_in.weight"],
        load_checkpoint_file(resumed / "checkpoint.safetensors")["model"]["conv_in.weight"],
    )
