"""Colour data sets: emoji rendered from the Noto Color Emoji font, and photo patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import invdiff.data
from invdiff.data import emoji
from invdiff.data.emoji import Emoji, group_of, is_picture, key_of, split_of
from invdiff.images import from_uint8

needs_font = pytest.mark.skipif(
    not emoji.SYSTEM_FONT.is_file(),
    reason=f"Noto Color Emoji not installed ({emoji.SETUP_LINE})",
)
#: the Debian 12 package's font (2.042), whose counts are in the emoji module's docstring
DEBIAN_FONT_SHA256 = "e5899ed38b8ed83e08bd3ac5de09791e9d19d288333a796de1d35ad17396f1ec"

THUMBS_UP = 0x1F44D
RUNNER, FEMALE, MALE, VS16, ZWJ = 0x1F3C3, 0x2640, 0x2642, 0xFE0F, 0x200D
MAN, WOMAN, PERSON, LAPTOP, RED_HAIR = 0x1F468, 0x1F469, 0x1F9D1, 0x1F4BB, 0x1F9B0


def test_registered():
    assert {"emoji", "photo_patches"} <= set(invdiff.data.names())


@pytest.mark.parametrize(
    "variants",
    [
        # skin tones
        [(THUMBS_UP,), (THUMBS_UP, 0x1F3FB), (THUMBS_UP, 0x1F3FF)],
        # gender signs, presentation selector, skin tone
        [(RUNNER,), (RUNNER, ZWJ, FEMALE, VS16), (RUNNER, 0x1F3FD, ZWJ, MALE, VS16)],
        # man / woman / person forms of a profession
        [(MAN, ZWJ, LAPTOP), (WOMAN, 0x1F3FC, ZWJ, LAPTOP), (PERSON, ZWJ, LAPTOP)],
        # hair styles and the plain faces
        [(WOMAN, ZWJ, RED_HAIR), (MAN,), (PERSON, 0x1F3FE), (WOMAN, 0x1F3FB, ZWJ, 0x1F9B3)],
        # families of any make-up, and the single family code point
        [(0x1F46A,), (MAN, ZWJ, WOMAN, ZWJ, 0x1F467), (WOMAN, ZWJ, 0x1F466, ZWJ, 0x1F466)],
        # couples with heart in either form
        [
            (0x1F491,),
            (WOMAN, ZWJ, 0x2764, VS16, ZWJ, MAN),
            (PERSON, 0x1F3FB, ZWJ, 0x2764, ZWJ, PERSON),
        ],
        # flags of tag letters keep the tags
        [(0x1F3F4, 0xE0067, 0xE0062, 0xE0065, 0xE006E, 0xE0067, 0xE007F)],
    ],
)
def test_variants_share_a_group_and_a_split(variants):
    groups = {group_of(v) for v in variants}
    assert len(groups) == 1 and all(groups)
    assert len({split_of(g) for g in groups}) == 1


def test_groups_are_not_too_coarse():
    # different emoji stay apart; a lone variant-maker drawn as an emoji is its own group
    assert group_of((THUMBS_UP,)) != group_of((0x1F44E,))
    assert group_of((FEMALE, VS16)) == (FEMALE,)
    assert group_of((0x1F1EB, 0x1F1F7)) != group_of((0x1F1E9, 0x1F1EA))  # France, Germany


def test_split_rule_is_pinned():
    # the split is a pure function of the group's key: these pin the rule (salt, hash, bounds)
    # so that a change that would reshuffle published splits fails here
    grinning, thumbs_up, rocket, fox = 0x1F600, 0x1F44D, 0x1F680, 0x1F98A
    assert [split_of((cp,)) for cp in (grinning, thumbs_up, rocket, fox)] == [
        "train",
        "test",
        "train",
        "val",
    ]
    assert split_of(group_of((THUMBS_UP, 0x1F3FD))) == split_of((THUMBS_UP,))
    assert key_of((0x1F469, 0x200D, 0x1F4BB)) == "1F469-200D-1F4BB"
    shares = [split_of((cp,)) for cp in range(0x1F300, 0x1F700)]
    frac = {s: shares.count(s) / len(shares) for s in ("train", "val", "test")}
    assert 0.75 < frac["train"] < 0.85 and 0.06 < frac["val"] < 0.14 and 0.06 < frac["test"] < 0.14


def test_what_counts_as_a_picture():
    assert is_picture((0x1F600,)) and is_picture((0x1F1EB, 0x1F1F7))
    assert is_picture((0x0023, VS16, 0x20E3))  # keycap #
    assert is_picture((0x1F3F4, 0xE0067, 0xE0062, 0xE0065, 0xE006E, 0xE0067, 0xE007F))
    for seq in [(0x23,), (ZWJ,), (VS16,), (0x1F1EB,), (0x1F3FB,), (0x1F9B0,), (0xFE4E5,)]:
        assert not is_picture(seq), seq
    assert not is_picture((0x1F3F4, 0xE007F))  # a cancel tag with no tag letters


@needs_font
def test_emoji_split_disjoint_complete_and_deterministic():
    sets = {s: Emoji(s, size=32) for s in ("train", "val", "test")}
    whole = Emoji("all", size=32)
    keys = [set(ds.keys) for ds in sets.values()]
    groups = [set(ds.groups) for ds in sets.values()]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not keys[a] & keys[b] and not groups[a] & groups[b]
    assert sum(len(ds) for ds in sets.values()) == len(whole) == len(set(whole.keys))
    for name, ds in sets.items():
        assert all(split_of(tuple(int(p, 16) for p in g.split("-"))) == name for g in ds.groups)
        assert ds.indices == sorted(ds.indices)
    # variants of one emoji land together: all six thumbs-up glyphs
    thumbs = [name for name, ds in sets.items() if key_of((THUMBS_UP,)) in ds.groups]
    assert len(thumbs) == 1
    assert sets[thumbs[0]].groups.count(key_of((THUMBS_UP,))) == 6
    if emoji.font_digest(whole.font) == DEBIAN_FONT_SHA256:
        assert [len(ds) for ds in sets.values()] == [3236, 292, 339]
        assert [len(g) for g in groups] == [1429, 190, 167]
    # built again from the cache file (not the in-process copy): the same images, same order
    first = sets["test"].images(range(0, len(sets["test"]), 7))
    emoji._rendered.cache_clear()
    again = Emoji("test", size=32)
    assert again.keys == sets["test"].keys
    assert torch.equal(again.images(range(0, len(again), 7)), first)
    assert Emoji("validation", size=32).keys == sets["val"].keys  # the training code's name


@needs_font
def test_rendering_matches_the_cached_images(monkeypatch):
    # render a handful of glyphs from the font afresh: identical to what the data set returns
    whole = Emoji("all", size=32)
    some = emoji.glyph_sequences(whole.font)[100:112]
    monkeypatch.setattr(emoji, "glyph_sequences", lambda path: some)
    images, keys = emoji._render(whole.font, 32, emoji.BACKGROUND)
    rows = [whole.keys.index(k) for k in keys]
    assert keys == [key_of(seq) for seq, _ in some]
    assert torch.equal(whole.images(rows), from_uint8(torch.from_numpy(images).permute(0, 3, 1, 2)))


@needs_font
@pytest.mark.parametrize("size", [32, 64])
def test_emoji_images(size):
    ds = invdiff.data.get("emoji", split="test", size=size)
    assert ds.image_shape == (3, size, size) and ds.labels is None
    x = ds.images(range(0, len(ds), 11))
    assert x.shape == (len(range(0, len(ds), 11)), 3, size, size) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    image, label = ds[0]
    assert image.shape == (3, size, size) and label == -1
    # colour, on the white page: corners mostly white, and the channels differ
    assert (x[:, :, 0, 0] > 0.95).float().mean() > 0.8
    assert (x[:, 0] - x[:, 2]).abs().mean() > 0.05


def test_missing_font_names_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setattr(emoji, "SYSTEM_FONT", tmp_path / "NotoColorEmoji.ttf")
    monkeypatch.delenv(emoji.FONT_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install .*fonts-noto-color-emoji"):
        invdiff.data.get("emoji", split="train")
    with pytest.raises(FileNotFoundError, match="no such file"):
        Emoji(font=tmp_path / "elsewhere.ttf")
    with pytest.raises(ValueError, match="does not download"):
        Emoji(download=True)
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    assert "fonts-noto-color-emoji" in setup


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"split": "bogus"}, "split must be one of"),
        ({"size": 8}, "size must be"),
        ({"size": 32.0}, "size must be"),
        ({"channels": 1}, "channels must be 3"),
        ({"background": (0, 0, 300)}, "background"),
    ],
)
def test_emoji_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Emoji(**kwargs)


def test_cache_is_keyed_written_once_and_rebuilt_when_stale(monkeypatch, tmp_path):
    monkeypatch.setenv("INVDIFF_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_render(path, size, background):
        calls.append(path)
        rng = np.random.default_rng(len(calls))
        return rng.integers(0, 256, (5, size, size, 3), dtype=np.uint8), [
            "1F600",
            "1F44D",
            "1F44D-1F3FB",
            "1F355",
            "2640",
        ]

    monkeypatch.setattr(emoji, "_render", fake_render)
    font = tmp_path / "font.ttf"
    font.write_bytes(b"one font")
    emoji._rendered.cache_clear()
    a = Emoji("all", size=16, font=font)
    assert len(calls) == 1 and len(a) == 5
    (entry,) = (tmp_path / "cache" / "emoji").iterdir()
    assert emoji.font_digest(font)[:16] in entry.name and "16px-ffffff" in entry.name
    emoji._rendered.cache_clear()
    b = Emoji("all", size=16, font=font)
    assert len(calls) == 1 and torch.equal(a.images(), b.images())  # read from the file
    entry.write_bytes(b"not an npz file")  # a damaged entry is rendered anew
    emoji._rendered.cache_clear()
    Emoji("all", size=16, font=font)
    assert len(calls) == 2
    font.write_bytes(b"another font")  # a changed font has its own entry
    emoji._rendered.cache_clear()
    Emoji("all", size=16, font=font)
    assert len(calls) == 3 and len(list((tmp_path / "cache" / "emoji").iterdir())) == 2
    emoji._rendered.cache_clear()


@pytest.mark.parametrize("size", [32, 64])
def test_photo_patches(size):
    ds = invdiff.data.get("photo_patches", size=size)
    assert len(ds) == 84 and ds.image_shape == (3, size, size)
    x = ds.images()
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, invdiff.data.get("photo_patches", split="all", size=size).images())
    assert ds.labels.tolist() == [0] * 16 + [1] * 24 + [2] * 24 + [3] * 20
    assert ds.names[0] == "astronaut-0" and ds.names[-1] == "rocket-19"


def test_photo_patches_same_regions_at_every_size():
    small = invdiff.data.get("photo_patches", size=32).images()
    large = invdiff.data.get("photo_patches", size=64).images()
    pooled = torch.nn.functional.avg_pool2d(large, 2)
    assert (pooled - small).abs().mean() < 0.02


def test_photo_patches_arguments():
    with pytest.raises(ValueError, match="out-of-distribution test set"):
        invdiff.data.get("photo_patches", split="train")
    with pytest.raises(ValueError, match="unknown photo"):
        invdiff.data.get("photo_patches", photos=["../etc/passwd"])
    with pytest.raises(ValueError, match="channels must be 3"):
        invdiff.data.get("photo_patches", channels=1)


@needs_font
def test_for_shape_builds_each_set_at_the_asked_shape():
    colour = invdiff.data.for_shape("emoji", split="test", size=64, channels=3)
    assert colour.images([0]).shape == (1, 3, 64, 64) and colour.split == "test"
    assert len(invdiff.data.for_shape("photos", size=16, channels=1)) == len(invdiff.data.PHOTOS)
    patches = invdiff.data.for_shape("photo_patches", size=16, channels=3)
    assert patches.images([0]).shape == (1, 3, 16, 16)
    # a set that has one shape only says so, rather than serving the wrong one
    with pytest.raises(ValueError, match="1 x 32 x 32 images, not the 1 x 64 x 64"):
        invdiff.data.for_shape("fashion_mnist", split="test", size=64, channels=1)
