"""Autoencoders side by side: reconstruction PSNR / SSIM / LPIPS and rFID on the test split.

Each source is an autoencoder run (``invdiff train autoencoder``: ``RUN`` or
``RUN/autoencoder``) or a latent prior (a zoo name or folder: its ``vae/``). Every image is
encoded and decoded once (``AutoencoderKL``: the posterior mean; ``VQModel``: the quantised
latent), clamped to [-1, 1] and scored against the original; rFID is the FID between the
reconstructions and the originals (Inception features, N images each; Esser et al. 2021 report
it for the same reason: PSNR rewards blur, rFID and LPIPS do not).

    python scripts/autoencoder_table.py runs/fmnist32-vqgan runs/fmnist32-vq-l1 fmnist32-latent \
        --n 1000 --json benchmarks/results/autoencoders/fmnist32.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import invdiff
from invdiff.priors.checks import load_vae
from invdiff.priors.latent import encoder_output


def vae_folder(source: str) -> Path:
    """The ``vae/`` folder of an autoencoder run or a latent prior."""
    path = Path(source)
    if not path.exists():
        path = invdiff.priors.zoo.resolve(source)
    for candidate in (path / "autoencoder" / "vae", path / "vae"):
        if (candidate / "config.json").is_file():
            return candidate
    raise SystemExit(f"{source}: no vae/ (an autoencoder run or a latent prior)")


def recipe(vae_dir: Path) -> str:
    """The training settings that distinguish the autoencoders (from training.json)."""
    path = vae_dir.parent / "training.json"
    if not path.is_file():
        return ""
    info = json.loads(path.read_text())
    info = info.get("autoencoder", info)  # a latent prior: its autoencoder's run
    cfg = info.get("config", {})
    parts = [cfg.get("quantizer", "kl"), cfg.get("recon_loss", "l1")]
    if cfg.get("perceptual_weight"):
        parts.append(f"LPIPS x{cfg['perceptual_weight']:g}")
    if cfg.get("adversarial_weight"):
        start = cfg.get("adversarial_start", 0)
        parts.append(f"GAN x{cfg['adversarial_weight']:g} from step {start}")
    step = info.get("step")
    return " + ".join(parts) + (f", {step} steps" if step else "")


@torch.no_grad()
def reconstruct(vae, x: torch.Tensor, batch: int) -> torch.Tensor:
    """``decode(encode(x))`` as a latent prior does it (``encoder_output``)."""
    latent = encoder_output(vae)
    parts = [x[i : i + batch] for i in range(0, len(x), batch)]
    return torch.cat([vae.decode(latent(vae.encode(p))).sample.clamp(-1, 1) for p in parts])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="autoencoder runs or latent priors")
    parser.add_argument("--n", type=int, default=1000, help="test images")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x = invdiff.data.get("fashion_mnist", split="test").images(range(args.n))
    metric = invdiff.metrics.InceptionDistance(progress=False)
    metric.update(x, real=True)
    real = metric.features(True)
    m = invdiff.metrics
    rows = []
    print(f"# {args.n} Fashion-MNIST test images; rFID: reconstructions vs originals")
    print(f"{'source':<28} {'psnr':>6} {'ssim':>6} {'lpips':>7} {'rfid':>7}  recipe")
    for source in args.sources:
        start = time.perf_counter()
        folder = vae_folder(source)
        vae = load_vae(folder).eval()
        rec = reconstruct(vae, x, args.batch)
        lp = torch.cat([m.lpips(rec[i : i + 100], x[i : i + 100]) for i in range(0, len(x), 100)])
        fid = invdiff.metrics.InceptionDistance(progress=False)
        fid.update_features(real, real=True)
        fid.update(rec, real=False)
        row = {
            "source": source,
            "recipe": recipe(folder),
            "class": type(vae).__name__,
            "n": args.n,
            "psnr": float(m.psnr(rec, x).mean()),
            "ssim": float(m.ssim(rec, x).mean()),
            "lpips": float(lp.mean()),
            "rfid": fid.compute(kid_subsets=10, kid_subset_size=args.n // 2, generator=0).fid,
            "wall_s": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        print(
            f"{source:<28} {row['psnr']:6.2f} {row['ssim']:6.3f} {row['lpips']:7.4f} "
            f"{row['rfid']:7.2f}  {row['recipe']}",
            flush=True,
        )
    if args.json:
        from invdiff.io import write_text

        command = "python scripts/autoencoder_table.py " + " ".join(argv or sys.argv[1:])
        write_text(args.json, json.dumps({"command": command, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
