"""The end of training: the trained weights in a float32 network, measured, and written as a
Model artifact through :mod:`edgeline.models.io`."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.train import data, distribute
from edgeline.components.train.callbacks import HistoryLog, history_columns
from edgeline.components.train.task import Log
from edgeline.models import io as model_io


@dataclasses.dataclass
class PublishedModel:
    model_dir: model_io.ModelDir
    history: dict[str, list]
    metrics: dict[str, float]


def write_model_artifact(*, model, task, info: data.ExamplesInfo, history: HistoryLog,
                         best_epoch: int | None, output_dir: Path, work_dir: Path,
                         log: Log) -> PublishedModel:
    """Rebuilds ``model`` in float32, measures it, and writes the Model artifact (with the
    TensorBoard logs, when training wrote any) to ``output_dir``."""
    # The artifact holds a float32 network: mixed precision is a training device, and the
    # exported model must not depend on the policy of the process that loads it.
    distribute.set_precision_policy("float32")
    final_model = task.build_model()
    final_model.set_weights(model.get_weights())
    kept_epoch = best_epoch if best_epoch is not None else max(history.epochs, default=0)
    metrics = _final_metrics(final_model, task, history.epochs, kept_epoch, log)
    columns = history_columns(history.epochs)
    preprocessing = task.preprocessing()
    tensorboard_dir = work_dir / "tensorboard"
    if tensorboard_dir.is_dir():
        shutil.copytree(tensorboard_dir, output_dir / "tensorboard", dirs_exist_ok=True)
    model_dir = model_io.save_model_dir(
        output_dir, model=final_model, labels=info.labels, preprocessing=preprocessing,
        history=columns,
    )
    return PublishedModel(model_dir=model_dir, history=columns, metrics=metrics)


def _final_metrics(final_model, task, history: dict[int, dict], kept_epoch: int,
                   log) -> dict:
    """The validation metrics of the epoch whose weights the artifact holds (measured by
    ``fit`` with exactly those weights, the average's when there is one), plus the task's own
    (box mAP, measured here on the float32 network)."""
    logs = history.get(kept_epoch, {})
    metrics = {k: float(v) for k, v in logs.items() if k.startswith("val_")}
    metrics.update(task.final_metrics(final_model, log))
    return metrics
