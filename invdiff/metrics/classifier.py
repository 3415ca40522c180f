"""A Fashion-MNIST classifier to judge class-conditional samples.

Classifier-free guidance (Ho & Salimans 2022) trades diversity for fidelity to the class; its
usual yardsticks are the accuracy of a pretrained classifier on guided samples and FID (the
paper's Inception score is a classifier's confidence too). No Fashion-MNIST classifier comes
with the packages invdiff may use offline, so one is trained in-package
(``scripts/train_classifier.py``): a small VGG-style CNN (two blocks of two 3 x 3 convolutions and
a max-pool, then two linear layers) on the 60,000 training images at 32 x 32 in [-1, 1], its
accuracy on the 10,000 test images recorded beside its weights
(``invdiff/zoo/fmnist32-classifier/``, safetensors: loading runs no code).

    from invdiff.metrics.classifier import class_accuracy, load_classifier
    acc = class_accuracy(samples, labels)          # share of samples judged to be their class
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from invdiff.data.fashion_mnist import CLASSES

CLASSIFIER_DIR = Path(__file__).resolve().parent.parent / "zoo" / "fmnist32-classifier"
WEIGHTS = "classifier.safetensors"


class FashionClassifier(nn.Module):
    """32 x 32 grey images in [-1, 1] -> logits of the 10 Fashion-MNIST classes."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]

        self.features = nn.Sequential(*block(1, width), *block(width, 2 * width))
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * 8 * 8, 128),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(128, len(CLASSES)),
        )
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 32, 32):
            raise ValueError(f"the classifier takes N x 1 x 32 x 32 images, got {tuple(x.shape)}")
        return self.head(self.features(x))


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> FashionClassifier:
    """Adam on the cross-entropy, with random one-pixel shifts (the only augmentation)."""
    from tqdm import tqdm

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FashionClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(images) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    bar = tqdm(range(steps), desc="train classifier", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(images), (batch_size,), generator=generator)
        x = images[idx]
        dx, dy = torch.randint(-1, 2, (2,), generator=generator).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        loss = nn.functional.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{float(loss):.3f}")
    return model.eval()


@torch.no_grad()
def predict(model: FashionClassifier, images: Tensor, batch_size: int = 500) -> Tensor:
    """The predicted class of every image."""
    device = next(model.parameters()).device
    out = [
        model(images[i : i + batch_size].to(device).float().clamp(-1, 1)).argmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def save_classifier(model: FashionClassifier, folder: Path, info: dict) -> Path:
    from safetensors.torch import save

    from invdiff.io import write_bytes, write_text

    folder = Path(folder)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes(folder / WEIGHTS, save(state))
    write_text(folder / "classifier.json", json.dumps({"width": model.width, **info}, indent=2))
    return folder


_CACHE: dict[str, FashionClassifier] = {}


def load_classifier(folder: str | Path | None = None) -> FashionClassifier:
    """The shipped classifier (or one saved by ``save_classifier`` in ``folder``)."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else CLASSIFIER_DIR
    key = str(folder)
    if key not in _CACHE:
        path = folder / WEIGHTS
        if path.is_symlink() or not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the Fashion-MNIST classifier is trained by "
                "`python scripts/train_classifier.py` (it ships with the package)"
            )
        info = json.loads((folder / "classifier.json").read_text())
        model = FashionClassifier(int(info.get("width", 32)))
        model.load_state_dict(load_file(str(path)))
        _CACHE[key] = model.eval()
    return _CACHE[key]


def class_accuracy(images: Tensor, labels: Tensor, model: FashionClassifier | None = None) -> float:
    """The share of ``images`` (N x 1 x 32 x 32 in [-1, 1]) the classifier assigns to
    ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    model = model if model is not None else load_classifier()
    return float((predict(model, images) == labels.cpu()).float().mean())


__all__ = [
    "CLASSES",
    "FashionClassifier",
    "class_accuracy",
    "load_classifier",
    "predict",
    "save_classifier",
    "train_classifier",
]
