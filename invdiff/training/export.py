"""Export a training run into a zoo folder and write its model card.

    python -m invdiff.training.export runs/fmnist32-pixel invdiff/zoo/fmnist32-pixel

The run's EMA prior (``RUN/prior``) is loaded and validated with ``invdiff.priors.load``, saved
with half-precision weights (read back as fp32), and the folder gets ``samples.png`` (the run's
last grid), ``training.json`` (command, seed, step, wall time, device, parameters) and
``README.md``, the model card. ``scripts/prior_quality.py`` adds ``quality.json`` and refreshes
the card with its figures (``write_card``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

#: the guidance weight of a class-conditional prior's sample grid
CLASS_GRID_GUIDANCE = 3.0

KIND_TEXT = {
    "pixel": "an unconditional pixel-space DDPM prior (`PixelPrior`)",
    "sr3": "a conditional SR3 super-resolution prior (`SR3Prior`, a `ConditionalPrior`)",
    "latent": "a latent diffusion prior (`LatentDiffusionPrior`, a `LatentPrior`): "
    "an AutoencoderKL (f=4) and a DDPM on its scaled latents",
    "autoencoder": "an autoencoder (`AutoencoderKL`, f=4) for a latent prior "
    "(`invdiff train latent --autoencoder RUN`)",
    "controlnet": "a ControlNet adapter (Zhang et al. 2023) on a frozen pixel prior "
    "(`ControlNetPrior`, a `ConditionalPrior` conditioned on A^+ y)",
}


def _colour(channels: int) -> str:
    return "grey-scale" if channels == 1 else "RGB"


def _data_set(cfg: dict):  # noqa: ANN202 - the registered ImageDataset class, or None
    from invdiff.registry import DATASETS

    name = cfg.get("dataset", "fashion_mnist")
    return DATASETS.entry(name) if name in DATASETS else None


def _data_text(info: dict) -> str:
    """What the card says about the training data: set, size, channels, split, counts."""
    cfg, data = info["config"], info.get("data", {})
    known = _data_set(cfg)
    if known is not None and known.card_text and not cfg.get("data"):
        split = data.get("split", cfg.get("split", "train") + " split")
        count = data.get("train_images")
        if count is None:  # runs from before the count was recorded: count the split again
            count = len(known(split=cfg.get("split", "train")))
        counts = f" ({count:,} images)"
        return f"**{split}**{counts}. " + known.card_text.format(size=cfg["image_size"])
    size, channels = cfg["image_size"], cfg.get("image_channels", 1)
    source = data.get("source", cfg.get("data") or cfg["dataset"])
    held_out = data.get("validation_images")
    counts = f"{data.get('train_images', '?')} training images"
    if held_out is not None:
        counts += f", {held_out} held out for validation"
    return (
        f"`{source}` (`{cfg['dataset']}`): {counts}; the run used the "
        f"{data.get('split', cfg.get('split', 'train') + ' split')}. Every image is "
        f"centre-cropped to a square, resized to {size}x{size} (antialiased bicubic) and "
        f"converted to {_colour(channels)} ({channels} channel(s)), in [-1, 1]."
    )


def _reproduce_command(info: dict) -> str:
    """The run's command with ``--time-limit`` replaced by the step it reached (same weights)."""
    words = info.get("command", "").split()
    out, skip = [], False
    for i, w in enumerate(words):
        if skip:
            skip = False
            continue
        if w in ("--time-limit", "--steps"):
            skip = i + 1 < len(words)
            continue
        if w != "--resume":
            out.append(w)
    return " ".join(out + ["--steps", str(info["step"])])


def _training_rows(info: dict, shipped: bool = True) -> list[str]:
    cfg = info["config"]
    minutes = info["wall_s"] / 60
    resumed = "--resume" in info["command"].split()
    as_run = "last command (continued an earlier run with --resume)" if resumed else "command"
    device = info["device"].upper() if info["device"] == "cpu" else info["device"]
    precision = "bf16 autocast" if cfg["bf16"] else "fp32"
    rows = [
        f"- {as_run}: `{info['command']}`",
        f"- the same weights in one uninterrupted run: `{_reproduce_command(info)}`",
        f"- seed {info['seed']}; {info['step']} optimiser steps at batch {cfg['batch_size']} "
        f"(AdamW, lr {cfg['lr']:g} after {cfg['warmup_steps']} warm-up steps, "
        f"grad-norm clip {cfg['grad_clip']:g}); EMA decay {cfg['ema_decay']:g} "
        f"(the EMA weights are {'shipped' if shipped else 'exported'})",
        f"- wall time {minutes:.1f} min on {device} ({info['threads']} thread(s)"
        f"{', a shared 2-core machine' if shipped else ''}), {precision}; torch {info['torch']}",
        f"- parameters: {info['parameters']:,}; network channels {tuple(cfg['channels'])}, "
        f"{cfg['layers_per_block']} layer(s) per block",
    ]
    if cfg.get("encode_limit") and cfg["kind"] == "latent":
        rows.append(
            f"- trained on the latents of the first {cfg['encode_limit']:,} training images"
        )
    if cfg["kind"] != "autoencoder":
        rows.append(
            f"- noise schedule: {cfg['num_train_timesteps']} steps, `{cfg['beta_schedule']}` "
            f"betas, `{cfg['prediction_type']}` prediction, loss weighting "
            f"`{cfg.get('snr_weighting', 'none')}`"
        )
    else:
        side = cfg["image_size"] // 2 ** (len(cfg["channels"]) - 1)
        terms = [f"{cfg['recon_loss'].upper()} reconstruction"]
        if cfg.get("quantizer", "kl") == "vq":
            terms.append(f"VQ codebook and commitment ({cfg['codebook_size']} entries)")
        else:
            terms.append(f"{cfg['kl_weight']:g} x KL per pixel")
        if cfg.get("perceptual_weight"):
            terms.append(f"{cfg['perceptual_weight']:g} x LPIPS")
        if cfg.get("adversarial_weight"):
            terms.append(
                f"{cfg['adversarial_weight']:g} x adaptive-weight hinge patch-GAN from step "
                f"{cfg.get('adversarial_start', 0)}"
            )
        rows.append(
            f"- loss: {' + '.join(terms)}; latents {cfg['latent_channels']} x {side} x {side}"
        )
    return rows


def _metric_text(m: dict) -> str:
    return f"PSNR {m['psnr']:.2f} dB / SSIM {m['ssim']:.3f} / LPIPS {m['lpips']:.3f}"


def _quality_rows(quality: dict) -> list[str]:
    if not quality:
        return ["Not measured yet: run `scripts/build_zoo.sh quality` (scripts/prior_quality.py)."]
    command = quality.get("command", "scripts/prior_quality.py")
    data = quality.get("data", "Fashion-MNIST test split")
    rows = [f"Measured by `{command}` on the **{data}** (CPU).", ""]
    if "fid" in quality:
        f = quality["fid"]
        subset = f.get("kid_subset", f["n"])
        rows.append(
            f"- unconditional samples ({f['sampler']}): **FID {f['fid']:.1f}**, KID "
            f"{f['kid']:.4f} +- {f['kid_std']:.4f} (100 subsets of {subset}), with "
            f"**N = {f['n']}** samples vs {f.get('n_real', f['n'])} test "
            "images (Inception pool3; FID at small N is biased upwards: compare at equal N)"
        )
    if "denoise" in quality:
        d = quality["denoise"]
        where = (
            " (noise added to the scaled latents, both decoded)" if "autoencoder" in quality else ""
        )
        latent = all("latent_gain_db" in v for v in d["by_sigma"].values())
        rows += [
            f"- denoising (Tweedie x0, one network evaluation){where}, PSNR in dB over "
            f"{d['n']} test images"
            + (
                " (decoded, so capped by the autoencoder's reconstruction; the last column is "
                "the gain on the latents themselves, MSE of the noisy latents over the "
                "prior's, in dB)"
                if latent
                else ""
            )
            + ":",
            "",
            "  | sigma | noisy (identity) | prior |" + (" latent gain |" if latent else ""),
            "  |---|---|---|" + ("---|" if latent else ""),
        ]
        for s, v in d["by_sigma"].items():
            gain = f" {v['latent_gain_db']:+.2f} |" if latent else ""
            rows.append(f"  | {s} | {v['identity']:.2f} | {v['prior']:.2f} |{gain}")
        rows.append("")
    if "sr" in quality:
        s = quality["sr"]
        rows.append(
            f"- super-resolution x{s['factor']} ({s['n']} test images, {s['sampler']}): "
            f"SR3 {_metric_text(s['sr3'])}; bicubic {_metric_text(s['bicubic'])}"
        )
    if "conditional" in quality:
        c = quality["conditional"]
        rows.append(
            f"- reconstruction from {c['operator']} measurements ({c['n']} test images, "
            f"{c['sampler']}): sample {_metric_text(c['sample'])}; its condition A^+ y "
            f"{_metric_text(c['condition'])}"
        )
    if "guidance" in quality:
        rows += [
            f"- class-conditional samples ({quality['guidance']['sampler']}), "
            f"{quality['guidance']['n']} per guidance weight w, judged by the package's "
            f"Fashion-MNIST classifier (test accuracy {quality['guidance']['classifier']:.3f}):",
            "",
            "  | w | accuracy | FID | KID |",
            "  |---|---|---|---|",
        ]
        for r in quality["guidance"]["rows"]:
            rows.append(f"  | {r['w']:g} | {r['accuracy']:.3f} | {r['fid']:.1f} | {r['kid']:.4f} |")
        rows.append("")
    if "autoencoder" in quality:
        a = quality["autoencoder"]
        rows.append(f"- autoencoder reconstruction PSNR {a['psnr']:.2f} dB ({a['n']} test images)")
    return rows


def write_card(folder: str | Path, name: str | None = None, *, shipped: bool = True) -> Path:
    """(Re)write ``folder/README.md`` from ``training.json`` and (if present) ``quality.json``.

    ``shipped``: a zoo folder (fp16 weights, its own ``samples.png``); otherwise the exported
    model of a training run (fp32 weights, grids in the run's ``samples/``).
    """
    folder = Path(folder)
    name = name or folder.name
    info = json.loads((folder / "training.json").read_text())
    meta_file = folder / "prior.json"
    if not meta_file.is_file():
        meta_file = folder / "autoencoder.json"
    meta = json.loads(meta_file.read_text())
    quality_path = folder / "quality.json"
    quality = json.loads(quality_path.read_text()) if quality_path.is_file() else {}
    kind = meta["kind"]
    cfg = info["config"]
    size, channels = cfg["image_size"], cfg.get("image_channels", 1)
    known = _data_set(cfg)
    data_name = known.card_name if known is not None and not cfg.get("data") else ""
    low = size // meta.get("factor", 1)
    text = KIND_TEXT[kind]
    labels = (meta.get("class_tokens") or {}).get("num_labels") or meta.get("num_class_embeds")
    classes = int(labels) - 1 if labels else None
    if kind == "pixel" and classes:
        how = (
            "cross-attention to learned class tokens (`UNet2DConditionModel`, "
            "`encoder_hidden_states`)"
            if meta.get("class_tokens")
            else "a class embedding"
        )
        text = (
            f"a class-conditional pixel-space DDPM prior (`PixelPrior`, {classes} classes "
            f"through {how}, trained with label dropout: `prior.conditioned(label, "
            "guidance=w)` samples with classifier-free guidance, Ho & Salimans 2022)"
        )
    vae_config = folder / "vae" / "config.json"
    if vae_config.is_file() and json.loads(vae_config.read_text()).get("_class_name") == "VQModel":
        text = text.replace("an AutoencoderKL", "a VQModel").replace(
            "its scaled latents", "its scaled pre-quantisation latents"
        )
    what = text[0].upper() + text[1:]
    task = f", super-resolution x{meta['factor']} from {low}x{low} px" if kind == "sr3" else ""
    if kind == "controlnet":
        spec = ", ".join(f"{k}={v}" for k, v in meta["degradation"].items() if k != "name")
        task = (
            f", for measurements of {meta['degradation']['name']}({spec}) with noise "
            f"sigma {meta['noise_sigma']} on the frozen prior {meta.get('base_prior', '')}"
        )
    weights = "weights stored in fp16 (loaded as fp32)" if shipped else "weights stored in fp32"
    load = (
        f'prior = invdiff.priors.load("{name}")'
        if kind != "autoencoder"
        else f"# a latent prior on it: invdiff train latent --autoencoder {name}"
    )
    lines = [
        f"# {name}",
        "",
        f"{what} for {size}x{size} {_colour(channels)} {data_name + ' ' if data_name else ''}"
        f"images{task}. Trained by this package's own `invdiff train`; {weights}.",
        "",
        "```python",
        "import invdiff",
        "",
        load,
        "```",
        "",
        "## Data",
        "",
        _data_text(info),
        "",
    ]
    if "autoencoder" in info:
        lines += ["## Training: autoencoder", ""] + _training_rows(info["autoencoder"], shipped)
        lines += [
            f"- scaling factor (1 / std of the latent means): {meta['scaling_factor']:.4f}",
            "",
        ]
        lines += ["## Training: latent DDPM", ""]
    else:
        lines += ["## Training", ""]
    lines += _training_rows(info, shipped) + [""]
    lines += ["## Samples", ""]
    if shipped:
        grid_text = {
            "pixel": "DDIM, 50 steps, x0 clipped to [-1, 1], seed 0",
            "sr3": "rows: bicubic upsampling of the low-resolution input, SR3 sample (DDIM, 50 "
            "steps, x0 clipped, seed 0), ground truth; the first 8 test images",
            "latent": "DDIM, 50 steps on latents, decoded, seed 0",
            "controlnet": "rows: A^+ y of the training operator's measurements (the condition), "
            "ControlNet sample (DDIM, 50 steps, x0 clipped, seed 0), ground truth; the first 8 "
            "test images",
        }[kind]
        if kind == "pixel" and classes:
            grid_text = (
                f"one class per column (labels 0-{classes - 1}), classifier-free "
                f"guidance w = {CLASS_GRID_GUIDANCE:g}, DDIM, 50 steps, x0 clipped, seed 0"
            )
        lines += [f"![samples](samples.png) ({grid_text})", ""]
    else:
        lines += [
            "![latest grid](../samples/latest.png) (the run's labelled grids, one per "
            "`--sample-every` steps, are in `../samples/`)",
            "",
        ]
    if kind != "autoencoder":
        lines += ["## Quality", ""]
        if shipped or quality:
            lines += _quality_rows(quality) + [""]
        else:
            lines += ["Not measured (`scripts/prior_quality.py` measures the shipped priors).", ""]
    if shipped:
        lines += [
            "## Limitations",
            "",
            "A small model trained for minutes on a shared CPU: good enough to test and compare "
            f"solvers on {data_name or 'its data'}, far from the quality of a GPU-trained prior "
            "(`invdiff train ... --config full`).",
            "",
        ]
    from invdiff.io import write_text

    return write_text(folder / "README.md", "\n".join(lines))


@torch.no_grad()
def held_out_images(cfg: dict, n: int = 8) -> torch.Tensor:
    """The first ``n`` images a run did not train on: the test split of a registered set, the
    validation part of a folder (``--data DIR``)."""
    from invdiff import data

    size, channels = cfg["image_size"], cfg.get("image_channels", 1)
    if cfg.get("data"):
        folder = data.get(
            "image_folder",
            root=cfg["data"],
            split="validation",
            size=size,
            channels=channels,
            val_fraction=cfg.get("val_fraction", 0.1),
        )
    else:
        folder = data.for_shape(cfg["dataset"], split="test", size=size, channels=channels)
    return folder.images(range(min(n, len(folder))))


def render_samples(  # noqa: ANN001
    prior, path: Path, seed: int = 0, steps: int = 50, truth: torch.Tensor | None = None
) -> None:
    """The card's grid: 16 DDIM samples (x0 clipped in pixel space) or, for SR3, the held-out
    images ``truth`` (``held_out_images``) as rows bicubic / SR3 / truth."""
    from invdiff.images import save_image
    from invdiff.priors.base import ConditionalPrior, LatentPrior
    from invdiff.priors.pixel import PixelPrior
    from invdiff.training.tasks import ddim_sample, make_grid

    g = torch.Generator().manual_seed(seed)
    if isinstance(prior, ConditionalPrior):
        if truth is None:
            raise ValueError("a conditional prior's grid needs held-out images: pass truth=")
        cond = prior.condition(prior.degradation(truth))
        x = ddim_sample(prior, len(truth), steps, g, cond=cond, clip=True)
        grid = make_grid(torch.cat([cond, x, truth]), nrow=8)
    elif isinstance(prior, PixelPrior) and prior.null_label is not None:
        # class-conditional: two rows, one class per column, guided with CLASS_GRID_GUIDANCE
        labels = torch.arange(2 * prior.null_label) % prior.null_label
        view = prior.conditioned(labels, guidance=CLASS_GRID_GUIDANCE)
        grid = make_grid(ddim_sample(view, len(labels), steps, g, clip=True), nrow=prior.null_label)
    elif isinstance(prior, LatentPrior):
        grid = make_grid(prior.decode(ddim_sample(prior, 16, steps, g)), nrow=4)
    else:
        grid = make_grid(ddim_sample(prior, 16, steps, g, clip=True), nrow=4)
    save_image(grid, path)


def export_run(run: str | Path, dest: str | Path) -> Path:
    """Copy the EMA prior of ``run`` into ``dest`` (fp16 weights) with its card."""
    from invdiff.io import replace_folder
    from invdiff.priors.zoo import load

    run, dest = Path(run), Path(dest)
    prior = load(run / "prior")
    info = json.loads((run / "prior" / "training.json").read_text())
    if info["kind"] == "latent":
        ae = Path(info["config"]["autoencoder"])
        ae = ae / "autoencoder" if (ae / "autoencoder").is_dir() else ae
        info["autoencoder"] = json.loads((ae / "training.json").read_text())

    def build(folder: Path) -> None:
        prior.save(folder, dtype=torch.float16)
        (folder / "training.json").write_text(json.dumps(info, indent=2) + "\n")
        conditional = info["kind"] in ("sr3", "controlnet")
        truth = held_out_images(info["config"]) if conditional else None
        render_samples(prior, folder / "samples.png", truth=truth)
        if (dest / "quality.json").is_file():  # keep figures measured earlier
            shutil.copy(dest / "quality.json", folder / "quality.json")
        write_card(folder, dest.name)

    replace_folder(build, dest)
    load(dest)  # the exported folder must load
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"exported {run} -> {dest} ({size / 1e6:.1f} MB, step {info['step']})")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="training run folder (holds prior/)")
    parser.add_argument("dest", help="zoo folder to write, e.g. invdiff/zoo/fmnist32-pixel")
    args = parser.parse_args(argv)
    export_run(args.run, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
