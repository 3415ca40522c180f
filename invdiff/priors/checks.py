"""Validation of prior folders before any weights are read."""

from __future__ import annotations

from pathlib import Path


def require_folder(folder: str | Path, required: list[str]) -> Path:
    """Return ``folder`` as a Path, or raise a clear error naming what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"prior folder not found: {folder}. Pass a shipped prior name (invdiff.priors.names()) "
            "or a local folder written by `invdiff train` / diffusers' save_pretrained."
        )
    missing = [r for r in required if not (folder / r).is_file()]
    if missing:
        raise FileNotFoundError(f"prior folder {folder} is incomplete: missing {', '.join(missing)}")
    return folder
