"""Fine-tuning after a compression method: the model, the training data, a few epochs.

The methods here take a :class:`TrainingData` (batches, the task's loss, steps per epoch) and
never build their own input pipeline, so the same pruning or QAT code fine-tunes a classifier
or a detector; :mod:`edgeline.components.compress.core` builds the data with the train stage's
input pipeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.pipeline.errors import UserError


@dataclasses.dataclass
class CompressedModel:
    """What a compression method returns: the new model (for QAT, with its fake-quant
    wrappers in place), a report of what it did, and the fine-tuning history."""

    model: Any
    report: dict[str, Any]
    history: dict[str, list[float]]


@dataclasses.dataclass
class TrainingData:
    """What fine-tuning needs.

    Attributes:
      train: a repeating ``tf.data.Dataset`` of ``(images, targets)`` batches, or a function
        ``epochs -> dataset`` giving exactly ``epochs * steps_per_epoch`` batches (the train
        stage's deterministic stream).
      steps_per_epoch: batches per epoch.
      loss: the task's Keras loss (for a classifier, sparse categorical cross-entropy on the
        model's outputs, which may be logits or probabilities).
      metrics: Keras metrics to report while fine-tuning.
      validation: optional finite dataset of ``(images, targets)`` batches.
      task: ``"classification"`` or ``"detection"``.
      num_classes: outputs of the classifier (None for a detector).
    """

    train: Any
    steps_per_epoch: int
    loss: Any
    metrics: Sequence[Any] = ()
    validation: Any = None
    task: str = "classification"
    num_classes: int | None = None

    def train_batches(self, epochs: int):
        return self.train(epochs) if callable(self.train) else self.train

    def sample_images(self, count: int = 8, batches: int = 1):
        """Up to ``count`` training images (numpy) from the first ``batches`` batches, to
        probe a model's outputs or calibrate ranges."""
        import numpy as np

        images = [np.asarray(x) for x, _ in self.train_batches(1).take(batches)]
        return np.concatenate(images)[:count]


def require_epochs(method: str, epochs: int) -> None:
    if epochs < 1:
        raise UserError(f"{method} needs fine-tuning: received fine_tune.epochs={epochs}; "
                        "use epochs >= 1")


def fine_tune(model, data: TrainingData, *, epochs: int, learning_rate: float,
              callbacks: Sequence[Any] = (), loss: Any = None) -> dict[str, list[float]]:
    """Compile ``model`` with Adam and the task's loss, train it, return the history.

    A non-finite loss stops with an error (a NaN in fine-tuning is a bug or a bad learning
    rate, never something to save).
    """
    import tf_keras as keras

    if epochs < 1:
        return {}
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=loss if loss is not None else data.loss,
        metrics=list(data.metrics),
    )
    history = model.fit(
        data.train_batches(epochs),
        epochs=epochs,
        steps_per_epoch=data.steps_per_epoch,
        validation_data=data.validation,
        callbacks=[*callbacks, keras.callbacks.TerminateOnNaN()],
        verbose=0,
    )
    values = {k: [float(v) for v in vs] for k, vs in history.history.items()}
    if any(not math.isfinite(v) for vs in values.values() for v in vs):
        raise FloatingPointError(f"fine-tuning produced a non-finite value: {values}")
    return values


def total_steps(data: TrainingData, epochs: int) -> int:
    return data.steps_per_epoch * epochs
