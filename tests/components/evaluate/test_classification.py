"""Top-1, top-5, per-class accuracy and the confusion matrix (and its PNG)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeline.components.evaluate import classification
from edgeline.pipeline.errors import UserError

NAMES = ["cat", "dog", "fox", "owl", "elk", "bee", "ant"]


def _brute_force_top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The definition, one image at a time: fewer than k classes score above the label's
    score, counting a tie with a lower class index as above."""
    result = []
    for row, label in zip(scores, labels):
        better = sum(1 for c, s in enumerate(row)
                     if s > row[label] or (s == row[label] and c < label))
        result.append(better < k)
    return np.array(result)


def test_top_k_matches_the_definition_including_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, len(NAMES))).astype(np.float32)  # many ties
    labels = rng.integers(0, len(NAMES), size=200)
    for k in (1, 3, 5):
        np.testing.assert_array_equal(classification.top_k_correct(scores, labels, k),
                                      _brute_force_top_k(scores, labels, k))


def test_metrics_on_a_known_case():
    scores = np.array([
        [0.9, 0.1, 0, 0, 0, 0, 0],   # label 0, predicted 0
        [0.2, 0.7, 0.1, 0, 0, 0, 0],  # label 1, predicted 1
        [0.6, 0.3, 0.1, 0, 0, 0, 0],  # label 2, predicted 0 (label ranks 3rd: top-5 hit)
        [0.5, 0.1, 0.1, 0.05, 0.04, 0.03, 0.2],  # label 5, ranks 6th: top-5 miss
    ], np.float32)
    labels = np.array([0, 1, 2, 5])
    metrics = classification.classification_metrics(scores, labels, NAMES)
    assert metrics["top1"] == pytest.approx(0.5)
    assert metrics["top5"] == pytest.approx(0.75)
    assert metrics["per_class_accuracy"]["cat"] == 1.0
    assert metrics["per_class_accuracy"]["fox"] == 0.0
    assert metrics["per_class_accuracy"]["owl"] is None  # no image of that class
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix[2, 0] == 1 and matrix[5, 0] == 1 and matrix.sum() == 4
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=7))


def test_confusion_matrix_png(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(NAMES), size=60)
    predictions = np.where(rng.random(60) < 0.7, labels, rng.integers(0, len(NAMES), size=60))
    matrix = classification.confusion_matrix(labels, predictions, len(NAMES))
    path = classification.write_confusion_matrix_png(matrix, NAMES, tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 200
        # Not a blank canvas: the heat map has many colors.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


def test_bad_inputs_name_the_problem():
    with pytest.raises(UserError, match=r"\(N, 7\)"):
        classification.classification_metrics(np.zeros((3, 5)), np.zeros(3, int), NAMES)
    with pytest.raises(UserError, match="label 9"):
        classification.classification_metrics(np.zeros((2, 7)), np.array([0, 9]), NAMES)
