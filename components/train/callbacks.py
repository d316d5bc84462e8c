"""The Keras callbacks of the training loop, and the crash-safe files they keep in the work
directory: the per-epoch history, the best epoch's weights, TensorBoard scalars, and the stop
on a non-finite loss.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.train import optim
from edgeline.pipeline.errors import UserError


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the fix is in the config (rate, data, precision)."""


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss and says where and what to try."""

    def __init__(self, learning_rate: float):
        super().__init__()
        self.learning_rate = learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"training diverged: the loss became {float(loss)} at epoch {self.epoch + 1}, "
                f"step {batch + 1}; lower optimizer.learning_rate (received "
                f"{self.learning_rate}), add a warmup, or check the data"
            )


def save_weights(model, path: Path, writer: bool) -> None:
    """Writes ``path`` atomically on the writing worker. Every worker must call it: reading
    distributed variables is a collective op, so a worker that skipped it would stall the
    others (non-writers write to a private file that is removed)."""
    if writer:
        tmp = path.with_name(path.name.replace(".weights.h5", ".tmp.weights.h5"))
        model.save_weights(str(tmp))
        os.replace(tmp, path)
        return
    scratch = path.with_name(f".worker-{os.getpid()}-{path.name}")
    model.save_weights(str(scratch))
    scratch.unlink(missing_ok=True)


def _atomic_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(tmp, path)


class HistoryLog(keras.callbacks.Callback):
    """Every finished epoch's logs in ``history.json`` of the work dir, so a resumed run's
    history starts where the crashed one stopped."""

    def __init__(self, path: Path, phase: str, writer: bool):
        super().__init__()
        self.path = path
        self.phase = phase
        self.writer = writer
        self.epochs = load_history_epochs(path)

    def drop_from(self, epoch: int) -> None:
        self.epochs = {e: logs for e, logs in self.epochs.items() if e < epoch}

    def on_epoch_end(self, epoch, logs=None):
        entry = {k: float(v) for k, v in (logs or {}).items()}
        optimizer = self.model.optimizer
        entry["learning_rate"] = float(_current_learning_rate(optimizer))
        entry["phase"] = self.phase
        self.epochs[epoch] = entry
        if self.writer:
            _atomic_json(self.path, {str(e): v for e, v in sorted(self.epochs.items())})


def load_history_epochs(path: Path) -> dict[int, dict]:
    if not path.is_file():
        return {}
    return {int(e): v for e, v in json.loads(path.read_text()).items()}


def history_columns(epochs: dict[int, dict]) -> dict[str, list]:
    """{epoch: logs} -> {"epoch": [...], metric: [...]} (Keras ``History.history`` style)."""
    ordered = [epochs[e] for e in sorted(epochs)]
    keys = sorted({k for logs in ordered for k in logs})
    columns: dict[str, list] = {"epoch": sorted(epochs)}
    for key in keys:
        columns[key] = [logs.get(key) for logs in ordered]
    return columns


def _current_learning_rate(optimizer) -> float:
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    rate = inner.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(inner.iterations)
    return float(keras.backend.get_value(rate))


class TensorBoardScalars(keras.callbacks.Callback):
    """Per-epoch scalars in TensorBoard's event format, laid out as Keras' TensorBoard
    callback does (``train/`` and ``validation/`` runs, ``epoch_<metric>`` tags).

    Kept beside Keras' own ``TensorBoard`` callback because it logs the learning rate every
    epoch (Keras' logs it only for a schedule, and the fine-tuning phases change a constant
    one) and writes the epoch scalars alone (no graph, no profile, no per-step runs).
    """

    def __init__(self, log_dir: Path):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()
        self.writers = {}

    def _writer(self, run: str):
        if run not in self.writers:
            self.writers[run] = tf.summary.create_file_writer(str(self.log_dir / run))
        return self.writers[run]

    def on_epoch_end(self, epoch, logs=None):
        values = dict(logs or {})
        values["learning_rate"] = _current_learning_rate(self.model.optimizer)
        for key, value in values.items():
            run, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(run).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value), tf.float32),
                                 step=epoch, metadata=self.metadata)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()


class KeepBest(keras.callbacks.Callback):
    """Saves the weights of the best epoch by ``monitor`` (the weight average's, if any)."""

    def __init__(self, directory: Path, monitor: str, mode: str, writer: bool):
        super().__init__()
        self.directory = directory
        self.monitor = monitor
        self.better = (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)
        self.writer = writer
        self.state_path = directory / "best.json"
        self.weights_path = directory / "best.weights.h5"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise UserError(
                f"train.monitor: the validation logs have no {self.monitor!r}; they have "
                f"{', '.join(sorted(k for k in (logs or {}) if k.startswith('val_')))}"
            )
        value = float(value)
        if self.state and not self.better(value, self.state["value"]):
            return
        self.state = {"epoch": int(epoch), "value": value, "monitor": self.monitor}
        with optim.swapped_ema_weights(self.model.optimizer, self.model):
            save_weights(self.model, self.weights_path, self.writer)
        if self.writer:
            _atomic_json(self.state_path, self.state)



class ConsoleProgress(keras.callbacks.Callback):
    """The console's view of ``fit``: a bar over the phase's steps with the live loss and the
    first metric (in a terminal), and one line per epoch with its figures (always), in place
    of Keras' own progress output (``fit(verbose=0)``).

    ``mode`` is the ``progress`` option: ``auto`` (a bar in a terminal), ``bar``, ``epoch``
    (the epoch lines only) or ``off``.
    """

    def __init__(self, mode: str, *, phase: str, first_epoch: int, last_epoch: int,
                 total_epochs: int, steps_per_epoch: int | None):
        super().__init__()
        self.mode = mode
        self.phase = phase
        self.first_epoch, self.last_epoch = first_epoch, last_epoch
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self._progress = None
        self._epoch = first_epoch

    def on_train_begin(self, logs=None):
        from edgeline.pipeline import console

        if self.mode in ("auto", "bar") and self.steps_per_epoch:
            steps = (self.last_epoch - self.first_epoch) * self.steps_per_epoch
            progress = console.progress(steps, self._description(), "step", lines=False,
                                        bar=True if self.mode == "bar" else None)
            self._progress = progress if progress.is_bar else None

    def _description(self) -> str:
        phase = "" if self.phase == "train" else f" ({self.phase})"
        return f"train epoch {self._epoch + 1}/{self.total_epochs}{phase}"

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self._progress is not None:
            self._progress.describe(self._description())

    def on_train_batch_end(self, batch, logs=None):
        if self._progress is not None:
            # Two figures fit beside the bar: the loss and the first metric Keras reports.
            shown = dict(list((logs or {}).items())[:2])
            self._progress.update(1, **{k: float(v) for k, v in shown.items()})

    def on_epoch_end(self, epoch, logs=None):
        from edgeline.pipeline import console

        if self.mode == "off":
            return
        figures = ", ".join(f"{k} {float(v):.4f}" for k, v in (logs or {}).items()
                            if k != "learning_rate")
        console.log(f"train: epoch {epoch + 1}/{self.total_epochs}: {figures}")

    def on_train_end(self, logs=None):
        if self._progress is not None:
            self._progress.close()
            self._progress = None
