"""Knowledge distillation: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
Network" (NeurIPS Deep Learning Workshop, 2015).

A small student learns from the softened output distribution of a trained teacher as well as
from the labels:

    p_T = softmax(z / T)                            (teacher z_t, student z_s)
    L   = alpha * CE(y, softmax(z_s))
          + (1 - alpha) * T^2 * KL(p_T(z_t) || p_T(z_s))

The T^2 factor keeps the soft term's gradients at the same scale as the hard term's when T
changes (Hinton et al., Sec. 2: the gradients of the soft targets scale as 1/T^2). A model
that ends in a softmax is distilled through ``log(p)``, which equals its logits up to a
per-example constant that the softmax cancels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.compress.finetune import TrainingData, fine_tune
from edgeline.pipeline.errors import UserError

# Probabilities are clipped here before the log: low enough not to bend the small
# probabilities a softmax really gives (float32 keeps them to ~1e-38), high enough for
# an exact zero (underflow) to stay finite.
_LOG_FLOOR = 1e-30


def outputs_probabilities(model, images: np.ndarray) -> bool:
    """Whether ``model`` returns class probabilities (non-negative rows summing to 1)
    rather than logits, judged on real inputs as the export stage does."""
    scores = np.asarray(model(images[:8], training=False), np.float64)
    return bool(np.all(scores >= 0) and np.allclose(scores.sum(-1), 1.0, atol=1e-3))


def as_logits(outputs, from_probabilities: bool):
    outputs = tf.cast(outputs, tf.float32)
    if from_probabilities:
        return tf.math.log(tf.clip_by_value(outputs, _LOG_FLOOR, 1.0))
    return outputs


def hard_label_loss(labels, logits):
    """Cross-entropy with the labels, sparse (N,) or one-hot (N, C)."""
    if labels.shape.rank == logits.shape.rank:
        return keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def distillation_loss(teacher_logits, student_logits, temperature: float):
    """T^2 * KL(softmax(z_t / T) || softmax(z_s / T)) per example."""
    teacher_soft = tf.nn.softmax(teacher_logits / temperature, axis=-1)  # (N, C)
    student_log_soft = tf.nn.log_softmax(student_logits / temperature, axis=-1)  # (N, C)
    teacher_log_soft = tf.nn.log_softmax(teacher_logits / temperature, axis=-1)
    kl = tf.reduce_sum(teacher_soft * (teacher_log_soft - student_log_soft), axis=-1)  # (N,)
    return temperature**2 * kl


class Distiller(keras.Model):
    """Trains ``student`` on the Hinton et al. loss; the teacher is frozen (inference mode).

    ``fit`` on this model updates only the student's variables; evaluation reports the
    student's hard-label loss and metrics.
    """

    def __init__(self, *, student, teacher, temperature: float, alpha: float,
                 student_probabilities: bool, teacher_probabilities: bool, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.student_probabilities = student_probabilities
        self.teacher_probabilities = teacher_probabilities
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hard_tracker = keras.metrics.Mean(name="hard_loss")
        self.soft_tracker = keras.metrics.Mean(name="distillation_loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_tracker, self.soft_tracker, self.accuracy_tracker]

    def call(self, images, training=False):
        return self.student(images, training=training)

    def _accuracy(self, labels, logits):
        predicted = tf.argmax(logits, axis=-1)
        if labels.shape.rank == logits.shape.rank:
            labels = tf.argmax(labels, axis=-1)
        return tf.reduce_mean(tf.cast(predicted == tf.cast(labels, predicted.dtype), tf.float32))

    def train_step(self, data):
        images, labels = data
        teacher_logits = as_logits(self.teacher(images, training=False),
                                   self.teacher_probabilities)  # (N, C)
        with tf.GradientTape() as tape:
            student_logits = as_logits(self.student(images, training=True),
                                       self.student_probabilities)  # (N, C)
            hard = tf.reduce_mean(hard_label_loss(labels, student_logits))
            soft = tf.reduce_mean(
                distillation_loss(teacher_logits, student_logits, self.temperature)
            )
            loss = self.alpha * hard + (1.0 - self.alpha) * soft
            if self.student.losses:  # weight decay of the student's layers
                loss += tf.add_n(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss)
        self.hard_tracker.update_state(hard)
        self.soft_tracker.update_state(soft)
        self.accuracy_tracker.update_state(self._accuracy(labels, student_logits))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = data
        student_logits = as_logits(self.student(images, training=False),
                                   self.student_probabilities)
        hard = tf.reduce_mean(hard_label_loss(labels, student_logits))
        self.loss_tracker.update_state(hard)
        self.hard_tracker.update_state(hard)
        self.accuracy_tracker.update_state(self._accuracy(labels, student_logits))
        return {m.name: m.result() for m in self.metrics}


@dataclasses.dataclass
class DistillResult:
    model: Any  # the trained student
    report: dict[str, Any]
    history: dict[str, list[float]]


def distill(teacher, student, data: TrainingData, *, temperature: float, alpha: float,
            epochs: int, learning_rate: float) -> DistillResult:
    """Train ``student`` (a fresh network) from ``teacher`` on ``data``; return the student.

    Both must output class scores over the same classes (logits or probabilities).
    """
    if data.task != "classification":
        raise UserError(f"distill supports classifiers; received a {data.task} model "
                        "(detection heads have no class distribution to soften)")
    images = data.sample_images()
    teacher_classes = int(teacher(images[:1], training=False).shape[-1])
    student_classes = int(student(images[:1], training=False).shape[-1])
    if teacher_classes != student_classes:
        raise UserError(f"distill: the student has {student_classes} outputs and the teacher "
                        f"{teacher_classes}; they must predict the same classes")
    teacher_was_trainable = teacher.trainable
    try:
        distiller = Distiller(
            student=student, teacher=teacher, temperature=temperature, alpha=alpha,
            student_probabilities=outputs_probabilities(student, images),
            teacher_probabilities=outputs_probabilities(teacher, images),
        )
        # Distiller computes its own losses in train_step; compile gets a placeholder.
        history = fine_tune(distiller, dataclasses.replace(data, metrics=()), epochs=epochs,
                            learning_rate=learning_rate, loss=None)
    finally:
        # The teacher is frozen only while it teaches: the caller's model comes back as it
        # was (a frozen copy would silently stop every later fine-tuning of it).
        teacher.trainable = teacher_was_trainable
    report = {
        "method": "distill",
        "temperature": temperature,
        "alpha": alpha,
        "epochs": epochs,
        "student_parameters": int(student.count_params()),
        "teacher_parameters": int(teacher.count_params()),
    }
    return DistillResult(model=student, report=report, history=history)
