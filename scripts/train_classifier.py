"""Train the Fashion-MNIST classifier that judges class-conditional samples
(``invdiff.metrics.classifier``) and write it, with its test accuracy, to
``invdiff/zoo/fmnist32-classifier/``.

    python scripts/train_classifier.py --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

import invdiff
from invdiff.metrics.classifier import (
    CLASSIFIER_DIR,
    predict,
    save_classifier,
    train_classifier,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(CLASSIFIER_DIR))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train = invdiff.data.get("fashion_mnist", split="train")
    test = invdiff.data.get("fashion_mnist", split="test")
    start = time.perf_counter()
    model = train_classifier(train.images(), train.labels, epochs=args.epochs, seed=args.seed)
    wall = time.perf_counter() - start
    pred = predict(model, test.images())
    truth = test.labels
    accuracy = float((pred == truth).float().mean())
    per_class = [float((pred[truth == c] == c).float().mean()) for c in range(10)]
    info = {
        "command": "python " + shlex.join(["scripts/train_classifier.py", *sys.argv[1:]]),
        "data": "fashion_mnist train (60,000 images, 32 x 32, [-1, 1])",
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(wall, 1),
        "test_accuracy": accuracy,
        "test_images": len(truth),
        "per_class_accuracy": per_class,
    }
    save_classifier(model, args.out, info)
    print(f"test accuracy {accuracy:.4f} on {len(truth)} images ({wall:.0f} s); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
