"""Classifier-free guidance, measured: class accuracy and FID / KID of guided samples.

For a class-conditional pixel prior (``invdiff train pixel --class-conditional`` or
``--cross-attention``), draws ``--n`` samples (the classes in turn) at every guidance weight
``w`` (``prior.conditioned(labels, guidance=w)``, DDIM with the x0 estimate clipped), judges
them with the in-package Fashion-MNIST classifier (``invdiff.metrics.classifier``, its test
accuracy printed) and computes FID / KID against ``--n`` test images. Guidance should raise the
accuracy, and past some ``w`` cost FID (less diversity), as in Ho & Salimans 2022, Fig. 2-4.

    python scripts/cfg_accuracy.py --prior runs/cfg/prior --n 1000 --guidance 0 1 3 5

Two cores can share a table: each process measures some weights into its own ``--json``, and
a last call with ``--merge`` of those files (and ``--guidance`` of none or more weights) puts
the whole table in the model card. Rows merge only if prior, N, steps and seed agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import invdiff
from invdiff.metrics.classifier import load_classifier, predict
from invdiff.training.tasks import ddim_sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prior", required=True, help="class-conditional prior: name or folder")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--guidance", type=float, nargs="*", default=[0.0, 1.0, 3.0, 5.0])
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-fid", action="store_true")
    parser.add_argument("--json", help="also write the table here")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="JSON",
        help="rows measured by earlier calls (their --json), joined to this call's",
    )
    parser.add_argument(
        "--update-card",
        action="store_true",
        help="a zoo prior: put the table in its quality.json and model card",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {"prior": args.prior, "n": args.n, "steps": args.steps, "seed": args.seed}
    merged, commands = [], []
    for path in args.merge:  # checked before any sampling
        earlier = json.loads(Path(path).read_text())
        theirs = {key: earlier.get(key) for key in settings}
        if theirs != settings:
            raise SystemExit(f"--merge {path}: measured with {theirs}, this call is {settings}")
        merged += earlier["rows"]
        commands.append(earlier.get("command", path))
    weights = [row["w"] for row in merged] + list(args.guidance)
    if len(set(weights)) < len(weights):
        raise SystemExit(f"--merge: a guidance weight would be measured twice ({sorted(weights)})")
    prior = invdiff.priors.load(args.prior)
    if prior.null_label is None:
        raise SystemExit(f"{args.prior}: not a class-conditional prior (no null class)")
    classes = prior.null_label
    classifier = load_classifier()
    info = json.loads((invdiff.metrics.classifier.CLASSIFIER_DIR / "classifier.json").read_text())
    print(
        f"# prior {args.prior}; {args.n} samples per w, DDIM {args.steps} steps, x0 clipped; "
        f"classifier test accuracy {info['test_accuracy']:.4f}"
    )
    real = None
    if not args.no_fid and args.guidance:  # a merge alone samples nothing
        test = invdiff.data.get("fashion_mnist", split="test").images(range(args.n))
        metric = invdiff.metrics.InceptionDistance(progress=False)
        metric.update(test, real=True)
        real = metric.features(True)
    labels = torch.arange(args.n) % classes
    rows = []
    print(f"{'w':>5} {'accuracy':>9} {'fid':>8} {'kid':>9} {'wall_s':>7}")
    for w in args.guidance:
        start = time.perf_counter()
        chunks = []
        for i in range(0, args.n, args.batch):
            part = labels[i : i + args.batch]
            view = prior.conditioned(part, guidance=w)
            g = torch.Generator().manual_seed(args.seed + i)
            chunks.append(ddim_sample(view, len(part), args.steps, g, clip=True))
        samples = torch.cat(chunks).clamp(-1, 1)
        accuracy = float((predict(classifier, samples) == labels).float().mean())
        row = {"w": w, "accuracy": accuracy, "n": args.n}
        if real is not None:
            metric = invdiff.metrics.InceptionDistance(progress=False)
            metric.update_features(real, real=True)
            metric.update(samples, real=False)
            scores = metric.compute(kid_subsets=100, kid_subset_size=args.n // 2, generator=0)
            row.update(fid=scores.fid, kid=scores.kid, kid_std=scores.kid_std)
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(
            f"{w:>5g} {accuracy:>9.4f} {row.get('fid', float('nan')):>8.2f} "
            f"{row.get('kid', float('nan')):>9.5f} {row['wall_s']:>7.0f}",
            flush=True,
        )
    from invdiff.io import write_text

    command = "; ".join([*commands, "python " + " ".join(sys.argv)])
    rows = sorted(merged + rows, key=lambda row: row["w"])
    if args.json:  # the whole table: a later --merge of it needs nothing else
        table = {**settings, "command": command, "rows": rows}
        write_text(args.json, json.dumps(table, indent=2) + "\n")
    if args.update_card:
        from invdiff.priors.zoo import resolve
        from invdiff.training.export import write_card

        folder = resolve(args.prior)
        path = folder / "quality.json"
        quality = json.loads(path.read_text()) if path.is_file() else {}
        quality.setdefault("command", command)
        quality.setdefault("data", "fashion_mnist test split, 32 px, 1 channel(s)")
        quality["guidance"] = {
            "command": command,
            "sampler": f"DDIM {args.steps} steps, x0 clipped",
            "n": args.n,
            "classifier": info["test_accuracy"],
            "rows": rows,
        }
        write_text(path, json.dumps(quality, indent=2) + "\n")
        write_card(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
