"""The zoo: shipped prior checkpoints, loadable by name, and loading of local folders.

A shipped prior is a folder under ``invdiff/zoo/<name>/`` written by ``invdiff train``:
``prior.json`` names its kind (``pixel``, ``sr3``, ``latent``), the diffusers sub-folders
hold config + safetensors, and ``README.md`` is its model card.
"""

from __future__ import annotations

from pathlib import Path

import torch

from invdiff.paths import zoo_dir
from invdiff.priors.base import Prior
from invdiff.priors.checks import require_folder, validate_prior_folder
from invdiff.priors.pixel import PixelPrior

ZOO_DIR = zoo_dir()


def names() -> list[str]:
    """Names of the priors shipped with the package."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "prior.json").is_file())


def load(name_or_folder: str | Path, *, device: str | torch.device = "cpu") -> Prior:
    """Load a shipped prior by name, or a prior folder from disk (never from a hub)."""
    if not isinstance(name_or_folder, str | Path):
        raise TypeError(
            "name_or_folder must be a shipped prior name "
            f"({', '.join(names())}) or a folder path, got {name_or_folder!r}"
        )
    key = str(name_or_folder)
    if key in names():
        folder = ZOO_DIR / key
    else:
        folder = Path(name_or_folder)
        if not folder.exists():
            shipped = ", ".join(names()) or "(none shipped in this install)"
            raise FileNotFoundError(
                f"no shipped prior named {key!r} and no folder at that path. "
                f"Shipped priors: {shipped}"
            )
    folder = require_folder(folder, [])
    kind = validate_prior_folder(folder).get("kind", "pixel")
    if kind == "pixel":
        return PixelPrior.from_folder(folder, device=device, name=folder.name)
    if kind == "sr3":
        from invdiff.priors.sr3 import SR3Prior

        return SR3Prior.from_folder(folder, device=device)
    if kind == "latent":
        from invdiff.priors.latent import LatentDiffusionPrior

        return LatentDiffusionPrior.from_folder(folder, device=device)
    raise ValueError(
        f"prior folder {folder} has unknown kind {kind!r} in prior.json (pixel, sr3, latent)"
    )
