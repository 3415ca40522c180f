"""Emoji: colour images rendered from the Noto Color Emoji font (Google, SIL Open Font Licence).

The source is Debian's ``fonts-noto-color-emoji`` package (``/usr/share/fonts/truetype/noto/
NotoColorEmoji.ttf``, installed by ``scripts/setup.sh``; version 2.042 in Debian 12). The font
is a colour bitmap font: each glyph is a 136 x 128 RGBA PNG in its ``CBDT`` table. Every glyph
reached from a Unicode code point (``cmap``) or an emoji sequence (the ``GSUB`` ligatures: ZWJ
sequences, skin tones, keycaps, flags) is one image:

1. its PNG is composited (alpha "over") onto a fixed opaque background, white by default
   (``BACKGROUND``),
2. padded with that background to a centred 136 x 136 square,
3. resized to ``size`` x ``size`` (32 or 64) with Pillow's ``BOX`` filter: the area average,
   which neither rings nor overshoots, so no pixel leaves [0, 255],

and returned as float32 ``3 x size x size`` in [-1, 1]. Glyphs that are not pictures are left
out: ASCII, lone joiners and selectors, lone regional-indicator letters, skin-tone swatches and
hair components, private-use aliases, and glyphs whose bitmap is empty or a byte-for-byte copy
of an earlier glyph's.

**Split.** Every glyph has a *group*: its code point sequence with the variant-making parts
removed (variation selectors, skin tones, hair styles, gender signs), man/woman -> person and
boy/girl -> child, couples and families folded onto one key each. The group's SHA-256 (salted
with ``SPLIT_SALT``) read as a number u in [0, 1) puts the whole group in ``train`` (u < 0.8),
``val`` (0.8 <= u < 0.9) or ``test``, so all the skin-tone, gender and hair variants of one emoji
are in the same split, no glyph is in two splits, and the split depends on nothing but the
sequences (not the machine, the order of the font's tables or a random state; a newer font
adds glyphs without moving any old group to another split).

With the Debian 12 font (2.042): 3,867 images in 1,786 groups; ``train`` 3,236 images (1,429
groups), ``val`` 292 (190), ``test`` 339 (167): whole groups move, so the shares (83.7 / 7.6 /
8.8 %) are not exactly 80 / 10 / 10. ``scripts/colour_data_report.py`` prints them and checks
the splits are disjoint. ``split="all"`` is every image, sorted by code point sequence; a split
keeps that order.

The rendered images are cached in ``invdiff.data.cache.cache_dir("emoji")`` (written
atomically; the file name carries ``RENDER_VERSION``, the size, the background and the font's
SHA-256, so a changed font or recipe is rendered anew), so only the first load takes seconds.
Nothing is downloaded.

Why this source: the Debian package installs with ``apt-get`` like ``dataset-fashion-mnist``
(no Node.js toolchain, as the npm ``emoji-datasource-google`` PNGs would need), holds the same
Noto artwork at 136 x 128 (so the 64 x 64 set is downsampled, never upsampled from 64 x 64
PNGs), and its ~3,900 glyphs include every skin-tone and ZWJ variant for the grouped split.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from invdiff.data.base import ImageDataset
from invdiff.data.cache import cache_dir
from invdiff.images import from_uint8
from invdiff.io import sha256_file, write_with
from invdiff.registry import DATASETS

SYSTEM_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
#: a NotoColorEmoji.ttf elsewhere (another distribution, a user's copy)
FONT_ENV_VAR = "INVDIFF_EMOJI_FONT"
#: the line in scripts/setup.sh that installs the font
SETUP_LINE = "apt-get install -y --no-install-recommends fonts-noto-color-emoji"
#: the sizes the colour problems and priors use (any size from 16 to 128 renders)
SIZES = (32, 64)
MIN_SIZE, MAX_SIZE = 16, 128
#: white: the usual page an emoji is seen on, and [-1, 1]'s +1
BACKGROUND = (255, 255, 255)
#: bump when the rendering changes, so every cache is rebuilt
RENDER_VERSION = 1
SPLIT_SALT = "invdiff-emoji-split-v1:"
#: the interval of u = the group's hash in [0, 1) that each split takes
SPLIT_BOUNDS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
SPLITS = ("train", "val", "test", "all")
#: "validation" is what invdiff.training asks for; it is "val"
_ALIASES = {"validation": "val"}

_ZWJ, _VS15, _VS16, _KEYCAP = 0x200D, 0xFE0E, 0xFE0F, 0x20E3
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_HAIR = range(0x1F9B0, 0x1F9B4)
_GENDER = (0x2640, 0x2642)
_TAGS = range(0xE0020, 0xE0080)
_REGIONAL = range(0x1F1E6, 0x1F200)
# man, woman -> person; boy, girl -> child; old man, old woman -> older person
_PEOPLE = {0x1F468: 0x1F9D1, 0x1F469: 0x1F9D1, 0x1F466: 0x1F9D2, 0x1F467: 0x1F9D2}
_PEOPLE |= {0x1F474: 0x1F9D3, 0x1F475: 0x1F9D3}
_PERSON, _CHILD, _HEART, _KISS_MARK, _HANDSHAKE = 0x1F9D1, 0x1F9D2, 0x2764, 0x1F48B, 0x1F91D
# sequences drawn as the same picture as a single code point: holding hands, handshake
# (the ZWJ forms only add skin tones or genders)
_FOLD = {
    (_PERSON, _ZWJ, _HANDSHAKE, _ZWJ, _PERSON): (0x1F46B,),
    (0x1F46C,): (0x1F46B,),
    (0x1F46D,): (0x1F46B,),
    (0x1FAF1, _ZWJ, 0x1FAF2): (_HANDSHAKE,),
}
_FAMILY = (0x1F46A,)


def key_of(sequence: tuple[int, ...]) -> str:
    """The key of a code point sequence: upper-case hex joined by '-' (``1F469-200D-1F4BB``)."""
    return "-".join(f"{cp:04X}" for cp in sequence)


def sequence_of(key: str) -> tuple[int, ...]:
    """The code points of a key made by ``key_of``."""
    return tuple(int(part, 16) for part in key.split("-"))


def text_of(key: str) -> str:
    """The emoji itself as a string (for captions and look-ups)."""
    return "".join(map(chr, sequence_of(key)))


def group_of(sequence: tuple[int, ...]) -> tuple[int, ...]:
    """The base emoji a sequence is a variant of (see the module docstring).

    ``group_of`` of every skin-tone, gender, hair and presentation variant of an emoji is the
    same, so a split by group keeps the variants together.
    """
    kept: list[int] = []
    for cp in sequence:
        if cp in (_VS15, _VS16) or cp in _SKIN_TONES or cp in _HAIR or cp in _GENDER:
            continue
        cp = _PEOPLE.get(cp, cp)
        if cp == _ZWJ and (not kept or kept[-1] == _ZWJ):
            continue  # a joiner left with nothing (more) to join
        kept.append(cp)
    while kept and kept[-1] == _ZWJ:
        kept.pop()
    out = tuple(kept)
    if not out:
        # a lone variant-maker drawn as an emoji of its own (the female sign, U+2640)
        return tuple(cp for cp in sequence if cp not in (_VS15, _VS16))
    members = out[::2]
    if (
        len(members) >= 2
        and all(j == _ZWJ for j in out[1::2])
        and all(m in (_PERSON, _CHILD) for m in members)
    ):
        return _FAMILY  # every family of two to four people
    if set(members) == {_PERSON, _HEART, _KISS_MARK} or set(members) == {_PERSON, _HEART}:
        # couples, in whichever order the font lists the parts
        return (0x1F48F,) if _KISS_MARK in members else (0x1F491,)
    return _FOLD.get(out, out)


def is_picture(sequence: tuple[int, ...]) -> bool:
    """Whether a sequence the font maps is an emoji picture (not a component or an alias)."""
    if not sequence:
        return False
    if any(0xE000 <= cp <= 0xF8FF or cp >= 0xF0000 for cp in sequence):
        return False  # private-use aliases of real sequences
    if any(cp in _TAGS for cp in sequence):
        # a tag sequence (England, Scotland, Wales): black flag, tag letters, cancel tag
        return (
            len(sequence) >= 3
            and sequence[0] == 0x1F3F4
            and sequence[-1] == 0xE007F
            and all(0xE0020 <= cp <= 0xE007E for cp in sequence[1:-1])
        )
    if len(sequence) == 1:
        cp = sequence[0]
        return not (
            cp < 0x80
            or cp in (_ZWJ, _VS15, _VS16, _KEYCAP)
            or cp in _SKIN_TONES
            or cp in _HAIR
            or cp in _REGIONAL
        )
    return True


def split_of(group: tuple[int, ...]) -> str:
    """``train``, ``val`` or ``test``: where the salted SHA-256 of ``group``'s key falls."""
    digest = hashlib.sha256((SPLIT_SALT + key_of(group)).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    for name, (lo, hi) in SPLIT_BOUNDS.items():
        if lo <= u < hi:
            return name
    raise AssertionError(u)  # pragma: no cover - the bounds cover [0, 1)


def find_font(font: str | Path | None = None) -> Path:
    """The Noto Color Emoji font file: ``font`` when given (and only it), else
    ``$INVDIFF_EMOJI_FONT``, else Debian's ``SYSTEM_FONT``; a clear error naming the install
    line when there is none."""
    if font is not None:
        path = Path(font).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"font={str(font)!r}: no such file (it should be NotoColorEmoji.ttf)"
            )
        return path
    candidates = []
    if os.environ.get(FONT_ENV_VAR):
        candidates.append(Path(os.environ[FONT_ENV_VAR]).expanduser())
    candidates.append(SYSTEM_FONT)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise FileNotFoundError(
        f"the emoji data set needs the Noto Color Emoji font, not found at: {looked}. Install "
        f"it with `{SETUP_LINE}` (Debian/Ubuntu; scripts/setup.sh runs it), or set "
        f"{FONT_ENV_VAR}=/path/to/NotoColorEmoji.ttf"
    )


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)  # size and mtime only key the memo


def font_digest(path: Path) -> str:
    """SHA-256 of the font file (remembered per path, size and modification time)."""
    st = path.stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def glyph_sequences(path: Path) -> list[tuple[tuple[int, ...], str]]:
    """``(sequence, glyph name)`` of every picture glyph of the font, sorted by sequence.

    A glyph reached by several sequences (with and without U+FE0F, say) is listed once, under
    its shortest (then smallest) sequence.
    """
    from fontTools.ttLib import TTFont

    font = TTFont(str(path), lazy=True)
    cmap = font.getBestCmap()
    first_cp: dict[str, int] = {}
    for cp, glyph in sorted(cmap.items()):
        if not (0xE000 <= cp <= 0xF8FF or cp >= 0xF0000):
            first_cp.setdefault(glyph, cp)
    found: dict[str, set[tuple[int, ...]]] = {}
    for cp, glyph in cmap.items():
        found.setdefault(glyph, set()).add((cp,))
    for lookup in font["GSUB"].table.LookupList.Lookup:
        for sub in lookup.SubTable:
            sub = getattr(sub, "ExtSubTable", sub)  # extension lookups wrap the real one
            for first, ligatures in (getattr(sub, "ligatures", None) or {}).items():
                for lig in ligatures:
                    glyphs = [first, *lig.Component]
                    if all(g in first_cp for g in glyphs):
                        seq = tuple(first_cp[g] for g in glyphs)
                        found.setdefault(lig.LigGlyph, set()).add(seq)
    out = []
    for glyph, seqs in found.items():
        pictures = [s for s in seqs if is_picture(s)]
        if pictures:
            out.append((min(pictures, key=lambda s: (len(s), s)), glyph))
    return sorted(out)


def _render(path: Path, size: int, background: tuple[int, int, int]) -> tuple[np.ndarray, list]:
    """All picture glyphs as ``N x size x size x 3`` uint8 and their keys (see module doc)."""
    from fontTools.ttLib import TTFont
    from PIL import Image

    font = TTFont(str(path), lazy=True)
    strike = font["CBDT"].strikeData[0]
    images, keys, seen = [], [], set()
    for seq, glyph in glyph_sequences(path):
        bitmap = strike.get(glyph)
        data = getattr(bitmap, "imageData", None)
        if not data or data in seen:
            continue
        seen.add(data)
        rgba = Image.open(io.BytesIO(data)).convert("RGBA")
        if rgba.getchannel("A").getextrema()[1] == 0:
            continue
        side = max(rgba.size)
        page = Image.new("RGBA", (side, side), (*background, 255))
        offset = ((side - rgba.width) // 2, (side - rgba.height) // 2)
        page.alpha_composite(rgba, offset)
        small = page.convert("RGB").resize((size, size), Image.Resampling.BOX)
        images.append(np.asarray(small, dtype=np.uint8))
        keys.append(key_of(seq))
    return np.stack(images), keys


def _cache_file(digest: str, size: int, background: tuple[int, int, int]) -> Path:
    bg = "".join(f"{c:02x}" for c in background)
    return cache_dir("emoji") / f"emoji-r{RENDER_VERSION}-{size}px-{bg}-{digest[:16]}.npz"


def _read_cache(file: Path, size: int) -> tuple[np.ndarray, list[str]] | None:
    """The cached images and keys, or None when the file is missing or not a valid entry."""
    try:
        with np.load(file, allow_pickle=False) as z:
            images, keys = z["images"], [str(k) for k in z["keys"]]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if images.dtype != np.uint8 or images.shape != (len(keys), size, size, 3) or not keys:
        return None
    return images, keys


@functools.lru_cache(maxsize=4)
def _rendered(
    path: str, digest: str, size: int, background: tuple[int, int, int]
) -> tuple[np.ndarray, tuple[str, ...]]:
    file = _cache_file(digest, size, background)
    cached = _read_cache(file, size)
    if cached is None:
        images, keys = _render(Path(path), size, background)

        def save(f) -> None:  # noqa: ANN001 - a binary file
            np.savez(f, images=images, keys=np.array(keys, dtype=str))

        try:
            write_with(file, save)
        except OSError:
            pass  # a read-only cache folder costs the next process a render, nothing else
        cached = images, keys
    images, keys = cached
    images.setflags(write=False)
    return images, tuple(keys)


@DATASETS.register("emoji")
class Emoji(ImageDataset):
    """Emoji ``split`` (``train``/``val``/``test``/``all``) at ``size`` (32 or 64): ``3 x size x
    size`` colour images in [-1, 1] on a white (``background``) page; no labels.

    ``Emoji("test", size=64).images(range(16))`` -> ``16 x 3 x 64 x 64``. ``.keys[i]`` is image
    i's code point sequence (``1F469-200D-1F4BB``), ``.groups[i]`` its base emoji (what the
    split is decided on), ``.indices[i]`` its index in ``split="all"``.
    """

    card_name: ClassVar[str] = "emoji"
    card_text: ClassVar[str] = (
        "Colour emoji rendered from the Noto Color Emoji font (Google, SIL Open Font Licence; "
        "Debian's `fonts-noto-color-emoji`): each 136x128 glyph composited on white, padded to "
        "a square and area-averaged to {size}x{size} RGB, in [-1, 1]. The split is by emoji "
        "group (skin-tone, gender and hair variants in one split; `invdiff.data.emoji`)."
    )

    def __init__(
        self,
        split: str = "train",
        size: int = 32,
        channels: int = 3,
        background: tuple[int, int, int] = BACKGROUND,
        font: str | Path | None = None,
        download: bool = False,
    ):
        split = _ALIASES.get(split, split)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(
                f"size must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels "
                f"(the colour problems use {' or '.join(map(str, SIZES))}), got {size!r}"
            )
        if channels != 3:
            raise ValueError(f"the emoji data set is colour: channels must be 3, got {channels!r}")
        background = tuple(int(c) for c in background)
        if len(background) != 3 or not all(0 <= c <= 255 for c in background):
            raise ValueError(f"background must be three integers in [0, 255], got {background!r}")
        if download:
            raise ValueError(
                f"invdiff does not download data sets; install the font with `{SETUP_LINE}`"
            )
        self.split, self.size, self.background = split, size, background
        self.font = find_font(font)
        images, keys = _rendered(str(self.font), font_digest(self.font), size, background)
        groups = [key_of(group_of(sequence_of(k))) for k in keys]
        self.indices = [
            i for i, g in enumerate(groups) if split == "all" or split_of(sequence_of(g)) == split
        ]
        self.keys = [keys[i] for i in self.indices]
        self.groups = [groups[i] for i in self.indices]
        self._images = images
        self.image_shape = (3, size, size)

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, indices: Tensor) -> Tensor:
        rows = np.asarray(self.indices, dtype=np.int64)[indices.numpy()]
        return from_uint8(torch.from_numpy(self._images[rows]).permute(0, 3, 1, 2))
