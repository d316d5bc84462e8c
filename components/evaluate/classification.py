"""Classification metrics: top-1, top-5, per-class accuracy and the confusion matrix.

Top-k accuracy is the ImageNet challenge's (Russakovsky et al., IJCV 2015): an image counts
when its label is among the k highest-scoring classes. Ties are broken by class index, as a
stable sort does, so the figure is the same whichever form of model produced the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeline.pipeline.errors import UserError


def top_k_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Whether each label is among its row's ``k`` best scores: (N, C), (N,) -> (N,) bool."""
    k = min(k, scores.shape[1])
    # A stable sort on the negated scores: among equal scores the lower class index ranks first.
    ranking = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (N, k)
    return (ranking == labels[:, None]).any(axis=1)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
) -> dict:
    """top-1, top-5, per-class accuracy (None for a class without images) and the confusion
    matrix of ``scores`` (N, C) (logits or probabilities) against 0-based ``labels`` (N,)."""
    scores = np.asarray(scores, np.float32)
    labels = np.asarray(labels, np.int64)
    num_classes = len(label_names)
    if scores.ndim != 2 or scores.shape[1] != num_classes:
        raise UserError(
            f"Received: model outputs of shape {scores.shape}; expected (N, {num_classes}), "
            f"one score per class of labels.txt"
        )
    if len(labels) != len(scores) or len(labels) == 0:
        raise UserError(f"Received: {len(scores)} score rows and {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise UserError(
            f"Received: label {int(labels.max() if labels.max() >= num_classes else labels.min())}"
            f"; labels must be in [0, {num_classes - 1}]"
        )
    predictions = np.argsort(-scores, axis=1, kind="stable")[:, 0]  # (N,)
    matrix = confusion_matrix(labels, predictions, num_classes)  # (C, C)
    per_class_total = matrix.sum(axis=1)
    per_class = {
        name: (float(matrix[i, i] / per_class_total[i]) if per_class_total[i] else None)
        for i, name in enumerate(label_names)
    }
    return {
        "num_images": int(len(labels)),
        "top1": float(np.mean(predictions == labels)),
        "top5": float(np.mean(top_k_correct(scores, labels, 5))),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def write_confusion_matrix_png(
    matrix: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path, dpi: int = 100
) -> Path:
    """The confusion matrix as a heat map, each row normalized by its class's image count, with
    the counts written in the cells when there are few classes. Agg canvas, no pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, np.float64)  # (C, C)
    totals = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    num_classes = len(label_names)
    side = min(4.0 + 0.35 * num_classes, 20.0)
    figure = Figure(figsize=(side, side), dpi=dpi)
    figure.subplots_adjust(left=0.2, right=0.95, bottom=0.2, top=0.93)  # no tight_layout: slow
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(normalized, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    if num_classes <= 30:
        ticks = np.arange(num_classes)
        short = [name[:20] for name in label_names]
        axes.set_xticks(ticks, short, rotation=90, fontsize=7)
        axes.set_yticks(ticks, short, fontsize=7)
        for row in range(num_classes):
            for column in range(num_classes):
                if matrix[row, column]:
                    color = "white" if normalized[row, column] > 0.5 else "black"
                    axes.text(column, row, int(matrix[row, column]), ha="center",
                              va="center", fontsize=6, color=color)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("confusion matrix")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
