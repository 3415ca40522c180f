"""Counts per split of the colour data sets and a grid of examples.

    PYTHONPATH=$PWD python3 scripts/colour_data_report.py --out benchmarks/results/colour-data

Prints (and writes to ``OUT/counts.txt``) the number of images and of base-emoji groups in each
split of ``emoji``, checks that no image and no group is in two splits, and the number of
``photo_patches``; saves ``OUT/grid-64.png`` and ``OUT/grid-32.png``: evenly spaced examples
of each emoji split and of the photo patches. Needs the font (scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

import invdiff.data
from invdiff.data import emoji
from invdiff.images import to_uint8
from invdiff.io import write_bytes, write_text

SPLITS = ("train", "val", "test")


def counts(size: int) -> list[str]:
    """The lines of the counts table at ``size``; raises if two splits share an image or group."""
    sets = {s: invdiff.data.get("emoji", split=s, size=size) for s in SPLITS}
    total = invdiff.data.get("emoji", split="all", size=size)
    lines = [f"emoji {size}x{size} (font {total.font}, sha256 {emoji.font_digest(total.font)})"]
    lines.append(f"{'split':8s} {'images':>7s} {'groups':>7s} {'share':>6s}")
    for s, ds in sets.items():
        share = len(ds) / len(total)
        lines.append(f"{s:8s} {len(ds):7d} {len(set(ds.groups)):7d} {share:6.1%}")
    lines.append(f"{'all':8s} {len(total):7d} {len(set(total.groups)):7d}")
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                if set(sets[a].keys) & set(sets[b].keys) or set(sets[a].groups) & set(
                    sets[b].groups
                ):
                    raise AssertionError(f"splits {a} and {b} overlap")
    if sum(len(ds) for ds in sets.values()) != len(total):
        raise AssertionError("the splits do not add up to the whole set")
    lines.append("the three splits are disjoint (by image and by group) and cover the set")
    patches = invdiff.data.get("photo_patches", size=size)
    per_photo = ", ".join(
        f"{name} {int((patches.labels == i).sum())}" for i, name in enumerate(patches.photos)
    )
    lines.append(f"photo_patches {size}x{size}: {len(patches)} ({per_photo})")
    return lines


def mosaic(x: np.ndarray, cols: int) -> np.ndarray:
    """``N x H x W x 3`` uint8 tiles as one ``rows*H x cols*W x 3`` image (1-pixel grey gaps)."""
    n, h, w, _ = x.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, 3), 128, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = x[i]
    return out


def grid(size: int, path: Path, cols: int = 16, rows: int = 2) -> None:
    """Evenly spaced examples of each split and of the photo patches, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(f"emoji {s}", invdiff.data.get("emoji", split=s, size=size)) for s in SPLITS]
    panels.append(
        ("photo_patches (out of distribution)", invdiff.data.get("photo_patches", size=size))
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(cols * 0.55, len(panels) * rows * 0.62))
    for ax, (title, ds) in zip(axes, panels, strict=True):
        idx = np.linspace(0, len(ds) - 1, min(len(ds), cols * rows)).round().astype(int)
        ax.imshow(mosaic(to_uint8(ds.images(idx.tolist())), cols), interpolation="nearest")
        ax.set_title(
            f"{title}: {len(ds)} images ({size}x{size}), {len(idx)} evenly spaced", fontsize=8
        )
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    write_bytes(path, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/colour-data"))
    args = parser.parse_args()
    lines = []
    for size in emoji.SIZES:
        lines += counts(size) + [""]
        grid(size, args.out / f"grid-{size}.png")
        lines.append(f"grid: {args.out / f'grid-{size}.png'}")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    write_text(args.out / "counts.txt", text)


if __name__ == "__main__":
    main()
