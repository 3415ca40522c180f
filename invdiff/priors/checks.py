"""Validation of prior folders before (and while) weights are read.

A prior folder written by ``invdiff train`` holds ``prior.json`` (kind and shapes), ``unet/`` and
``scheduler/`` (diffusers ``save_pretrained``) and, for a latent prior, ``vae/``. Every check
fails with a message that names the folder, the file and what was expected, so a user with a
half-copied or hand-edited folder knows what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
KINDS = ("pixel", "sr3", "latent")
# files each kind needs, relative to the folder
REQUIRED_FILES = {
    "pixel": ["unet/config.json", f"unet/{WEIGHTS_FILE}", "scheduler/scheduler_config.json"],
    "sr3": [
        "prior.json",
        "unet/config.json",
        f"unet/{WEIGHTS_FILE}",
        "scheduler/scheduler_config.json",
    ],
    "latent": [
        "prior.json",
        "unet/config.json",
        f"unet/{WEIGHTS_FILE}",
        "scheduler/scheduler_config.json",
        "vae/config.json",
        f"vae/{WEIGHTS_FILE}",
    ],
}


class PriorFolderError(ValueError):
    """A prior folder whose files, configuration or weights are not what its kind needs."""


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
        raise FileNotFoundError(
            f"prior folder {folder} is incomplete: missing {', '.join(missing)}"
        )
    return folder


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PriorFolderError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise PriorFolderError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_prior_json(folder: str | Path, required: tuple[str, ...] = ()) -> dict:
    """``prior.json`` of ``folder`` (``{"kind": "pixel"}`` for a plain diffusers DDPM folder)."""
    path = Path(folder) / "prior.json"
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"prior folder {folder} is incomplete: missing prior.json")
        return {"kind": "pixel"}
    meta = read_json(path)
    kind = meta.get("kind", "pixel")
    if kind not in KINDS:
        raise PriorFolderError(f"{path}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    missing = [k for k in required if k not in meta]
    if missing:
        raise PriorFolderError(
            f"{path} lacks the field(s) {', '.join(missing)} that a {kind} prior needs"
        )
    return meta


def check_weights(model_cls, subfolder: Path) -> dict:  # noqa: ANN001 - a diffusers model class
    """Compare the safetensors file of ``subfolder`` with the model its config describes.

    The model is built on the ``meta`` device (no memory, no random initialisation), so a
    missing, extra or wrongly shaped tensor is reported by name before anything is loaded.
    Returns the config.
    """
    from safetensors import safe_open

    config = read_json(subfolder / "config.json")
    try:
        with torch.device("meta"):
            model = model_cls.from_config(config)
    except Exception as err:  # a config diffusers cannot build
        raise PriorFolderError(
            f"{subfolder / 'config.json'} does not describe a valid {model_cls.__name__}: {err}"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    try:
        with safe_open(str(subfolder / WEIGHTS_FILE), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:
        raise PriorFolderError(
            f"{subfolder / WEIGHTS_FILE} is not a readable safetensors file: {err}"
        ) from None
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) (e.g. {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s) (e.g. {', '.join(extra[:3])})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} tensor(s) of the wrong shape "
            f"(e.g. {k}: {found[k]}, config expects {expected[k]})"
        )
    if problems:
        raise PriorFolderError(
            f"{subfolder / WEIGHTS_FILE} does not match {subfolder / 'config.json'}: "
            + "; ".join(problems)
        )
    return config


def validate_prior_folder(folder: str | Path) -> dict:
    """Check files, configs and weight shapes of a prior folder; return its ``prior.json``.

    Raises ``FileNotFoundError`` for a missing folder or file and ``PriorFolderError`` for a
    configuration or weights file that does not fit the kind.
    """
    from diffusers import AutoencoderKL, UNet2DModel

    folder = require_folder(folder, [])
    meta = read_prior_json(folder)
    kind = meta.get("kind", "pixel")
    require_folder(folder, REQUIRED_FILES[kind])
    unet_cfg = check_weights(UNet2DModel, folder / "unet")
    read_json(folder / "scheduler" / "scheduler_config.json")
    cin, cout = int(unet_cfg.get("in_channels", 3)), int(unet_cfg.get("out_channels", 3))
    size = unet_cfg.get("sample_size")
    if kind == "pixel" and cin != cout:
        raise PriorFolderError(
            f"{folder}/unet: a pixel prior needs in_channels == out_channels, got {cin} and {cout}"
        )
    if kind == "sr3" and cin != 2 * cout:
        raise PriorFolderError(
            f"{folder}/unet: an SR3 prior needs in_channels = 2 x out_channels "
            "(image + condition), "
            f"got {cin} and {cout}"
        )
    if kind in ("pixel", "sr3") and "image_size" in meta and meta["image_size"] != size:
        raise PriorFolderError(
            f"{folder}: prior.json says image_size {meta['image_size']} "
            f"but unet/config.json has sample_size {size}"
        )
    if kind == "latent":
        vae_cfg = check_weights(AutoencoderKL, folder / "vae")
        down = 2 ** (len(vae_cfg.get("block_out_channels", [0])) - 1)
        latent = (
            int(vae_cfg.get("latent_channels", 4)),
            int(vae_cfg.get("sample_size", 0)) // down,
        )
        if (cout, size) != latent:
            raise PriorFolderError(
                f"{folder}: the latent UNet models {cout} channels at {size}px "
                "but the autoencoder's "
                f"latents are {latent[0]} channels at {latent[1]}px"
            )
    return meta


def load_unet_and_scheduler(folder: Path, *, device: str | torch.device = "cpu"):  # noqa: ANN201
    """The diffusers UNet (fp32, on ``device``) and DDPM scheduler of a prior folder."""
    from diffusers import DDPMScheduler, UNet2DModel

    require_folder(folder, ["unet/config.json", "scheduler/scheduler_config.json"])
    unet = (
        UNet2DModel.from_pretrained(
            folder / "unet", local_files_only=True, low_cpu_mem_usage=False, use_safetensors=True
        )
        .float()
        .to(device)
    )
    check_finite(unet, folder / "unet" / WEIGHTS_FILE)
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    return unet, scheduler


def load_vae(subfolder: Path, *, device: str | torch.device = "cpu"):  # noqa: ANN201
    """The diffusers ``AutoencoderKL`` of a latent prior folder (fp32, on ``device``)."""
    from diffusers import AutoencoderKL

    require_folder(subfolder, ["config.json", WEIGHTS_FILE])
    vae = (
        AutoencoderKL.from_pretrained(
            subfolder, local_files_only=True, low_cpu_mem_usage=False, use_safetensors=True
        )
        .float()
        .to(device)
    )
    check_finite(vae, subfolder / WEIGHTS_FILE)
    return vae


def check_finite(model: torch.nn.Module, source: Path) -> None:
    """Refuse weights with NaN or Inf at load time: they would surface only after a solve."""
    bad = [
        name
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        raise PriorFolderError(
            f"{source} holds NaN or Inf values in {len(bad)} tensor(s) (e.g. {', '.join(bad[:3])}):"
            " the model diverged or the file is damaged; use an earlier checkpoint or retrain"
        )
