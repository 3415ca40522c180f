"""The zoo: shipped prior checkpoints, loadable by name, and loading of local folders.

A shipped prior is a folder under ``invdiff/zoo/<name>/`` written by ``invdiff train``:
``prior.json`` names its kind (``pixel``, ``sr3``, ``latent``), the diffusers sub-folders
hold config + safetensors, and ``README.md`` is its model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from invdiff.paths import zoo_dir
from invdiff.priors.base import Prior
from invdiff.priors.checks import (
    SCHEDULER_FILE,
    find_layout,
    read_json,
    read_prior_json,
    require_folder,
    validate_prior_folder,
)
from invdiff.priors.kinds import prior_class

ZOO_DIR = zoo_dir()


def kind_of(obj: object) -> str:
    """The kind of a prior, a prior class (or capability type) or a prior folder / shipped name.

    A folder's kind is the ``kind`` of its ``prior.json`` (``pixel`` for a plain diffusers
    checkpoint without one).
    """
    if isinstance(obj, str | Path):
        return str(read_prior_json(resolve(obj)).get("kind", "pixel"))
    cls = obj if isinstance(obj, type) else type(obj)
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{cls.__name__} is not a prior type (it declares no kind)")
    return kind


def names() -> list[str]:
    """Names of the priors shipped with the package."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "prior.json").is_file())


def resolve(name_or_folder: str | Path) -> Path:
    """The folder of a shipped prior name, or ``name_or_folder`` itself if it is a folder."""
    if not isinstance(name_or_folder, str | Path):
        raise TypeError(
            "name_or_folder must be a shipped prior name "
            f"({', '.join(names())}) or a folder path, got {name_or_folder!r}"
        )
    key = str(name_or_folder)
    if key in names():
        return ZOO_DIR / key
    folder = Path(name_or_folder)
    if not folder.exists():
        shipped = ", ".join(names()) or "(none shipped in this install)"
        raise FileNotFoundError(
            f"no shipped prior named {key!r} and no folder at that path. Shipped priors: {shipped}"
        )
    return require_folder(folder, [])


@dataclass(frozen=True)
class PriorInfo:
    """What a prior folder holds, read from its JSON files alone (no weights, no network)."""

    folder: Path
    kind: str  # a folder kind (invdiff.priors.folder_kinds): pixel, sr3 or latent
    prior_type: type[Prior]  # the class ``load`` returns
    image_shape: tuple[int, int, int]  # (C, H, W) of the images it models (decoded, if latent)
    noise_levels: int  # size of its noise grid (num_train_timesteps)
    factor: int | None = None  # SR3: the super-resolution factor it was trained for
    #: SR3: the operator that made its low-resolution training inputs (registry name and
    #: arguments, as ``SR3Prior.degradation_spec``), so a pairing can be checked before loading
    degradation: dict | None = None
    #: a class-conditional prior (class embedding or class tokens, trained with label dropout):
    #: its classes, without the null class; None for a prior that takes no label
    classes: int | None = None

    def __str__(self) -> str:
        c, h, w = self.image_shape
        what = f"SR3 x{self.factor}" if self.kind == "sr3" else self.kind
        colour = "grey" if c == 1 else "RGB" if c == 3 else f"{c}-channel"
        return f"{what} prior for {h}x{w} {colour} images"


def describe(name_or_folder: str | Path) -> PriorInfo:
    """Kind, class and image shape of a shipped prior or folder, without loading weights: what
    a command needs to check a pairing before the expensive part."""
    folder = resolve(name_or_folder)
    meta = read_prior_json(folder)
    kind = meta.get("kind", "pixel")
    layout = find_layout(folder)
    unet = read_json(layout.unet / "config.json")
    size = unet.get("sample_size", 0)
    h, w = (size, size) if isinstance(size, int) else size
    shape = (int(unet.get("out_channels", 3)), int(h), int(w))
    if kind == "latent":
        vae = read_json(require_folder(folder, ["vae/config.json"]) / "vae" / "config.json")
        side = int(vae.get("sample_size", 0))
        shape = (int(vae.get("in_channels", 3)), side, side)
    levels = int(read_json(layout.scheduler / SCHEDULER_FILE).get("num_train_timesteps", 1000))
    prior_type = prior_class(kind)
    factor = int(meta["factor"]) if kind == "sr3" and "factor" in meta else None
    degradation = None
    if factor is not None:
        from invdiff.priors.sr3 import DEGRADATION

        degradation = dict(meta.get("degradation") or {"name": DEGRADATION, "factor": factor})
    embeds = unet.get("num_class_embeds")
    tokens = meta.get("class_tokens")
    labels = tokens.get("num_labels") if isinstance(tokens, dict) else embeds
    classes = int(labels) - 1 if isinstance(labels, int) and labels >= 2 else None
    return PriorInfo(folder, kind, prior_type, shape, levels, factor, degradation, classes)


def load(name_or_folder: str | Path, *, device: str | torch.device = "cpu") -> Prior:
    """Load a shipped prior by name, or a prior folder from disk (never from a hub)."""
    folder = resolve(name_or_folder)
    # validate_prior_folder refuses a kind that no class loads from a folder
    kind = validate_prior_folder(folder).get("kind", "pixel")
    return prior_class(kind).from_folder(folder, device=device, name=folder.name)
