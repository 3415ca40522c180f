"""Write the versioned operator banks: fixed inpainting masks and motion-blur kernels.

``invdiff banks`` draws every bank from its own seed and writes ``operators/<name>.npz`` (one
array ``data``, ``count x H x W``) and ``operators/manifest.json`` (SHA-256 of each file, the
seed, the parameters and the command that made it). Files are written atomically and
byte-for-byte reproducibly, so running the command again changes nothing.
``invdiff banks --check`` verifies the files against the manifest without writing.

Operators read a bank entry with ``bank=`` and ``index=``, e.g.
``invdiff.operators.get("inpainting_random", bank="fmnist32-random70", index=3)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invdiff.io import sha256_file
from invdiff.operators import kernels, masks
from invdiff.paths import banks_dir

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BankSpec:
    """How a bank is made: ``count`` entries drawn from ``make(generator)`` with ``seed``."""

    family: str  # the operator family that reads it: random, box, freeform, motion
    count: int
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def make(self, generator: torch.Generator) -> Tensor:
        p = dict(self.params)
        if self.family == "random":
            return masks.random_mask(p["H"], p["W"], p["missing"], generator=generator)
        if self.family == "box":
            return masks.box_mask(p["H"], p["W"], tuple(p["box"]), generator=generator)
        if self.family == "freeform":
            return masks.freeform_mask(p["H"], p["W"], generator=generator)
        if self.family == "motion":
            return kernels.motion_kernel(p["size"], p["intensity"], generator=generator)
        raise ValueError(f"unknown bank family {self.family!r}")  # pragma: no cover


BANKS: dict[str, BankSpec] = {
    "fmnist32-random70": BankSpec(
        "random", 32, 7001, {"H": 32, "W": 32, "missing": 0.7}, "32x32 masks, 70% of pixels missing"
    ),
    "fmnist32-random92": BankSpec(
        "random",
        32,
        9201,
        {"H": 32, "W": 32, "missing": 0.92},
        "32x32 masks, 92% of pixels missing",
    ),
    "fmnist32-box": BankSpec(
        "box",
        32,
        1601,
        {"H": 32, "W": 32, "box": [16, 16]},
        "32x32 masks, a 16x16 box missing at a random place",
    ),
    "fmnist32-freeform": BankSpec(
        "freeform",
        32,
        4242,
        {"H": 32, "W": 32},
        "32x32 free-form brush-stroke masks (DeepFill v2 style)",
    ),
    "motion-k9": BankSpec(
        "motion",
        32,
        9009,
        {"size": 9, "intensity": 0.5},
        "9x9 motion kernels, intensity 0.5 (for 32x32 images)",
    ),
    "motion-k61": BankSpec(
        "motion",
        16,
        6161,
        {"size": 61, "intensity": 0.5},
        "61x61 motion kernels, intensity 0.5 (the DPS setting)",
    ),
}


class BankError(RuntimeError):
    """A bank that is missing, stale or does not fit the operator asking for it."""


def _npz_bytes(data: np.ndarray) -> bytes:
    """An ``.npz`` archive with a fixed timestamp, so the same array always gives the same bytes."""
    arr = io.BytesIO()
    np.lib.format.write_array(arr, np.ascontiguousarray(data), allow_pickle=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("data.npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, arr.getvalue())
    return out.getvalue()


def _write_atomic(path: Path, payload: bytes) -> None:
    from invdiff.io import write_bytes

    write_bytes(path, payload)


def build(name: str) -> np.ndarray:
    """The array of bank ``name``: masks as uint8 (1 = observed), kernels as float32."""
    spec = BANKS[name]
    g = torch.Generator().manual_seed(spec.seed)
    entries = torch.stack([spec.make(g) for _ in range(spec.count)])
    if spec.family == "motion":
        return entries.numpy().astype(np.float32)
    return entries.numpy().astype(np.uint8)


def _manifest_path(folder: Path) -> Path:
    return folder / MANIFEST


def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    path = _manifest_path(folder or banks_dir())
    if not path.is_file():
        raise BankError(
            f"no bank manifest at {path}; run `invdiff banks` to write the operator banks"
        )
    return json.loads(path.read_text())


def load(name: str, family: str, folder: Path | None = None) -> Tensor:
    """The entries of bank ``name`` (float64, ``count x ...``) after checking its SHA-256.

    ``family`` is what the caller reads (``random``, ``box``, ``freeform``, ``motion``); a bank
    of another family is refused.
    """
    folder = folder or banks_dir()
    if name not in BANKS:
        raise BankError(f"unknown bank {name!r}; valid banks: {', '.join(BANKS)}")
    if BANKS[name].family != family:
        fitting = [n for n, s in BANKS.items() if s.family == family]
        raise BankError(
            f"bank {name!r} holds {BANKS[name].family} entries, not {family}; use one of: "
            f"{', '.join(fitting)}"
        )
    manifest = read_manifest(folder)
    entry = manifest.get("banks", {}).get(name)
    path = folder / f"{name}.npz"
    if entry is None or not path.is_file():
        raise BankError(f"bank {name!r} is missing from {folder}; run `invdiff banks` to write it")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise BankError(
            f"bank file {path} does not match its manifest (SHA-256 {digest[:12]}... != "
            f"{entry['sha256'][:12]}...); run `invdiff banks` to rewrite the banks"
        )
    with np.load(path, allow_pickle=False) as z:
        return torch.from_numpy(z["data"].astype(np.float64))


def entry(name: str, family: str, index: int, folder: Path | None = None) -> Tensor:
    """Entry ``index`` of bank ``name`` (see ``load``)."""
    data = load(name, family, folder)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < data.shape[0]:
        raise ValueError(
            f"index must be an int in [0, {data.shape[0]}) for bank {name!r}, got {index!r}"
        )
    return data[index]


def write(
    folder: Path | None = None, names: list[str] | None = None, command: str = "invdiff banks"
) -> dict[str, Any]:
    """Write the banks ``names`` (default all) and the manifest into ``folder``; return it."""
    from tqdm import tqdm

    folder = folder or banks_dir()
    names = list(BANKS) if names is None else names
    try:
        manifest = read_manifest(folder)
    except BankError:
        manifest = {}
    manifest = {"format": FORMAT_VERSION, "banks": dict(manifest.get("banks", {}))}
    for name in tqdm(names, desc="banks", unit="bank"):
        spec = BANKS[name]
        data = build(name)
        path = folder / f"{name}.npz"
        _write_atomic(path, _npz_bytes(data))
        manifest["banks"][name] = {
            "file": path.name,
            "sha256": sha256_file(path),
            "family": spec.family,
            "dtype": str(data.dtype),
            "shape": list(data.shape),
            "seed": spec.seed,
            "params": spec.params,
            "description": spec.description,
            "command": command,
        }
    manifest["banks"] = dict(sorted(manifest["banks"].items()))
    _write_atomic(_manifest_path(folder), (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def check(folder: Path | None = None) -> list[str]:
    """Problems found: files missing or not matching the manifest, or not what the seed makes."""
    folder = folder or banks_dir()
    problems = []
    try:
        manifest = read_manifest(folder)
    except BankError as err:
        return [str(err)]
    for name in BANKS:
        entry_ = manifest.get("banks", {}).get(name)
        path = folder / f"{name}.npz"
        if entry_ is None or not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != entry_["sha256"]:
            problems.append(f"{name}: SHA-256 does not match the manifest")
        elif hashlib.sha256(_npz_bytes(build(name))).hexdigest() != entry_["sha256"]:
            problems.append(
                f"{name}: the file is not what seed {BANKS[name].seed} makes with this code"
            )
    return problems
