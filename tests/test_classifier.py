"""The shipped Fashion-MNIST classifier that judges class-conditional samples."""

from __future__ import annotations

import json

import pytest
import torch

import invdiff
from invdiff.metrics.classifier import CLASSIFIER_DIR, class_accuracy, load_classifier


def test_the_shipped_classifier_recognises_test_images():
    test = invdiff.data.get("fashion_mnist", split="test")
    idx = list(range(0, 10_000, 20))  # 500 images over the whole split
    accuracy = class_accuracy(test.images(idx), test.labels[idx])
    recorded = json.loads((CLASSIFIER_DIR / "classifier.json").read_text())["test_accuracy"]
    assert accuracy > 0.85 and abs(accuracy - recorded) < 0.04
    # a wrong label for every image: (almost) nothing is judged right
    assert class_accuracy(test.images(idx), (test.labels[idx] + 5) % 10) < 0.1


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="N x 1 x 32 x 32"):
        load_classifier()(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="labels"):
        class_accuracy(torch.zeros(2, 1, 32, 32), torch.zeros(3, dtype=torch.long))
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_classifier(tmp_path)
