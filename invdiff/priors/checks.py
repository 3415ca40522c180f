"""Validation of prior folders before (and while) weights are read.

A prior folder written by ``invdiff train`` holds ``prior.json`` (kind and shapes), ``unet/`` and
``scheduler/`` (diffusers ``save_pretrained``) and, for a latent prior, ``vae/``. A pixel prior
may also be any diffusers checkpoint a user has on disk (``find_layout``):

* the pipeline layout: ``unet/`` (config + weights) and ``scheduler/scheduler_config.json``,
  as ``DDPMPipeline.save_pretrained`` writes it;
* the single-model layout: ``config.json`` and the weights at the top of the folder, as
  ``UNet2DModel.save_pretrained`` writes it, with ``scheduler_config.json`` beside them (or in
  ``scheduler/``), as the single-model hub repositories ship it.

The UNet is a ``UNet2DModel`` or a ``UNet2DConditionModel`` (``_class_name`` of its config);
the prediction type (epsilon, v, sample) comes from the scheduler's config. Weights must be
safetensors: a pickled ``.bin`` file is refused, never opened, with the command that converts
it. Every check fails with a message that names the folder, the file and what was expected, so
a user with a half-copied or hand-edited folder knows what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from invdiff.priors.kinds import folder_kinds

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
PICKLED_WEIGHTS_FILE = "diffusion_pytorch_model.bin"
SCHEDULER_FILE = "scheduler_config.json"
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
# files each kind needs, relative to the folder
REQUIRED_FILES = {
    "pixel": ["unet/config.json", f"unet/{WEIGHTS_FILE}", "scheduler/scheduler_config.json"],
    "controlnet": [
        "prior.json",
        "unet/config.json",
        f"unet/{WEIGHTS_FILE}",
        "scheduler/scheduler_config.json",
        "controlnet/adapter.safetensors",
    ],
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
    kinds = folder_kinds()
    if kind not in kinds:
        raise PriorFolderError(f"{path}: unknown kind {kind!r}; expected one of {', '.join(kinds)}")
    missing = [k for k in required if k not in meta]
    if missing:
        raise PriorFolderError(
            f"{path} lacks the field(s) {', '.join(missing)} that a {kind} prior needs"
        )
    return meta


def refuse_pickled_weights(subfolder: Path) -> None:
    """Refuse a model folder whose weights are only a pickled ``.bin`` file, saying how to convert
    it; the file is never opened (unpickling a file can run any code it carries)."""
    pickled = subfolder / PICKLED_WEIGHTS_FILE
    if (subfolder / WEIGHTS_FILE).is_file() or not pickled.is_file():
        return
    target = subfolder / WEIGHTS_FILE
    raise PriorFolderError(
        f"{pickled} holds pickled PyTorch weights, which invdiff does not load: unpickling a file "
        "can run any code it contains. Convert it once to safetensors with PyTorch's restricted "
        "loader (torch.load(..., weights_only=True) reads tensors only and refuses code):\n"
        '  python3 -c "import torch; from safetensors.torch import save_file; '
        f"save_file(torch.load({str(pickled)!r}, map_location='cpu', weights_only=True), "
        f'{str(target)!r})"\n'
        "then load the folder again (the .bin file may stay; it is not read)."
    )


@dataclass(frozen=True)
class Layout:
    """Where the parts of a diffusers pixel checkpoint lie in a folder."""

    folder: Path
    unet: Path  # the folder holding the UNet's config.json and weights
    scheduler: Path  # the folder holding scheduler_config.json
    unet_class: str  # one of UNET_CLASSES
    single_model: bool  # config and weights at the top of the folder


def find_layout(folder: str | Path) -> Layout:
    """Find the UNet and the scheduler config of a pixel checkpoint in either diffusers layout.

    Reads JSON only. Raises ``FileNotFoundError`` naming what is missing and the layouts that
    are understood, and ``PriorFolderError`` for pickled weights or an unsupported model class.
    """
    folder = require_folder(folder, [])
    if (folder / "unet" / "config.json").is_file():
        unet, single = folder / "unet", False
    elif (folder / "config.json").is_file():
        unet, single = folder, True
    else:
        raise FileNotFoundError(
            f"no diffusers UNet in {folder}: expected unet/config.json (the pipeline layout that "
            "`invdiff train` and DDPMPipeline.save_pretrained write) or config.json with "
            f"{WEIGHTS_FILE} at the top of the folder (a single model, as "
            "UNet2DModel.save_pretrained writes it)"
        )
    refuse_pickled_weights(unet)
    where = "" if single else "unet/"
    if not (unet / WEIGHTS_FILE).is_file():
        variants = sorted(p.name for p in unet.glob("diffusion_pytorch_model.*.safetensors"))
        hint = (
            f" (found {', '.join(variants)}: a variant or shard file; invdiff reads one "
            f"{WEIGHTS_FILE}: copy a variant to that name)"
            if variants
            else ""
        )
        raise FileNotFoundError(
            f"prior folder {folder} is incomplete: missing {where}{WEIGHTS_FILE}{hint}"
        )
    candidates = [folder / "scheduler", folder] if not single else [folder, folder / "scheduler"]
    scheduler = next((c for c in candidates if (c / SCHEDULER_FILE).is_file()), None)
    if scheduler is None:
        target = folder if single else folder / "scheduler"
        raise FileNotFoundError(
            f"prior folder {folder} is incomplete: missing {'' if single else 'scheduler/'}"
            f"{SCHEDULER_FILE}. The noise schedule the UNet was trained with is not in the "
            "folder and invdiff does not guess it. Copy the scheduler_config.json that came with "
            "the model, or write the one it was trained with, e.g. "
            "diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule='linear', "
            f"prediction_type='epsilon').save_pretrained('{target}')"
        )
    class_name = read_json(unet / "config.json").get("_class_name", "UNet2DModel")
    if class_name not in UNET_CLASSES:
        raise PriorFolderError(
            f"{unet / 'config.json'} describes a {class_name}; a pixel prior needs one of "
            f"{', '.join(UNET_CLASSES)}"
        )
    return Layout(folder, unet, scheduler, class_name, single)


def unet_class(name: str):  # noqa: ANN201 - a diffusers model class
    import diffusers

    if name not in UNET_CLASSES:
        raise PriorFolderError(f"unsupported UNet class {name!r}; expected one of {UNET_CLASSES}")
    return getattr(diffusers, name)


def check_weights(model_cls, subfolder: Path) -> dict:  # noqa: ANN001 - a diffusers model class
    """Compare the safetensors file of ``subfolder`` with the model its config describes.

    The model is built on the ``meta`` device (no memory, no random initialisation), so a
    missing, extra or wrongly shaped tensor is reported by name before anything is loaded.
    Returns the config.
    """
    from safetensors import safe_open

    refuse_pickled_weights(subfolder)
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
    folder = require_folder(folder, [])
    meta = read_prior_json(folder)
    kind = meta.get("kind", "pixel")
    if kind != "pixel":
        refuse_pickled_weights(folder / "unet")
        require_folder(folder, REQUIRED_FILES[kind])
    layout = find_layout(folder)
    unet_cfg = check_weights(unet_class(layout.unet_class), layout.unet)
    read_json(layout.scheduler / SCHEDULER_FILE)
    cin, cout = int(unet_cfg.get("in_channels", 3)), int(unet_cfg.get("out_channels", 3))
    size = unet_cfg.get("sample_size")
    if kind in ("pixel", "controlnet") and cin != cout:
        raise PriorFolderError(
            f"{folder}/unet: a pixel prior needs in_channels == out_channels, got {cin} and {cout}"
        )
    if kind == "sr3" and cin != 2 * cout:
        raise PriorFolderError(
            f"{folder}/unet: an SR3 prior needs in_channels = 2 x out_channels "
            "(image + condition), "
            f"got {cin} and {cout}"
        )
    if (
        kind in ("pixel", "sr3", "controlnet")
        and "image_size" in meta
        and meta["image_size"] != size
    ):
        raise PriorFolderError(
            f"{folder}: prior.json says image_size {meta['image_size']} "
            f"but unet/config.json has sample_size {size}"
        )
    if kind == "latent":
        refuse_pickled_weights(folder / "vae")
        require_folder(folder / "vae", ["config.json"])
        vae_cfg = check_weights(vae_class(folder / "vae"), folder / "vae")
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
    """The diffusers UNet (fp32, on ``device``) and DDPM scheduler of a prior folder, in either
    layout (``find_layout``). Only safetensors are read (``use_safetensors=True``)."""
    from diffusers import DDPMScheduler

    layout = find_layout(folder)
    unet = (
        unet_class(layout.unet_class)
        .from_pretrained(
            layout.unet, local_files_only=True, low_cpu_mem_usage=False, use_safetensors=True
        )
        .float()
        .to(device)
    )
    check_finite(unet, layout.unet / WEIGHTS_FILE)
    # a DDIM / PNDM config describes the same training chain (betas, prediction type)
    scheduler = DDPMScheduler.from_pretrained(layout.scheduler, local_files_only=True)
    return unet, scheduler


#: the autoencoder classes a latent prior may use (``_class_name`` of ``vae/config.json``)
VAE_CLASSES = ("AutoencoderKL", "VQModel")


def vae_class(subfolder: Path):  # noqa: ANN201 - a diffusers model class
    """``AutoencoderKL`` or ``VQModel``, as ``subfolder/config.json`` names it (a config
    without ``_class_name`` is an ``AutoencoderKL``, as older runs wrote it)."""
    import diffusers

    cfg = read_json(subfolder / "config.json")
    name = cfg.get("_class_name", "AutoencoderKL")
    if name not in VAE_CLASSES:
        raise PriorFolderError(
            f"{subfolder}/config.json: _class_name {name!r} is not an autoencoder invdiff "
            f"loads; expected one of {', '.join(VAE_CLASSES)}"
        )
    return getattr(diffusers, name)


def load_vae(subfolder: Path, *, device: str | torch.device = "cpu"):  # noqa: ANN201
    """The diffusers ``AutoencoderKL`` or ``VQModel`` of a latent prior folder (fp32, on
    ``device``)."""
    refuse_pickled_weights(subfolder)
    require_folder(subfolder, ["config.json", WEIGHTS_FILE])
    vae = (
        vae_class(subfolder)
        .from_pretrained(
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
