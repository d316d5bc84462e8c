"""The train stage's core: Examples in, a Model artifact out.

``run(...)`` reads top to bottom:

1. pick the tf.distribute strategy (first: collectives must be set up before TF runs
   anything), seed everything, and set the precision policy;
2. build the network from the registry inside the strategy's scope, and copy in the starting
   weights when fine-tuning;
3. train in phases (backbone frozen, then all layers at a lower rate; or one phase), each a
   ``model.fit`` whose state ``BackupAndRestore`` saves after every epoch into ``work_dir``,
   so a killed run resumes from its last finished epoch; the input stream starts at that
   epoch too, so the resumed run sees the batches an uninterrupted one would;
4. keep the best epoch's weights by the validation metric (the weight average's, when
   enabled), stop with a clear message when the loss turns NaN;
5. rebuild the network in float32, evaluate it, and write the Model artifact through
   :mod:`edgeline.models.io`.

``work_dir`` must survive a crash (the stage puts it in the run store's cache keyed by the
step's identity); ``output_dir`` may be thrown away with a failed attempt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.determinism import determinism
from edgeline.components.train import data, distribute, optim
from edgeline.components.train.options import TrainOptions
from edgeline.models import io as model_io
from edgeline.pipeline.errors import UserError

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the fix is in the config (rate, data, precision)."""


@dataclasses.dataclass
class TrainResult:
    model_dir: model_io.ModelDir
    history: dict[str, list]
    metrics: dict[str, float]
    properties: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of epochs ``[start, end)`` trained with one optimizer."""

    name: str
    start: int
    end: int
    freeze_backbone: bool
    learning_rate_scale: float


# -- tasks: what differs between classification and detection -------------------------------


def _float32(tensor):
    return tf.cast(tensor, tf.float32)


@keras.saving.register_keras_serializable(package="edgeline")
class Float32CategoricalCrossentropy(keras.losses.CategoricalCrossentropy):
    """Cross-entropy computed in float32 even when the network computes in (b)float16:
    the softmax of low-precision logits loses the small probabilities that carry the loss."""

    def call(self, y_true, y_pred):
        return super().call(_float32(y_true), _float32(y_pred))


class ClassificationTask:
    monitor = "val_top1"
    monitor_mode = "max"

    def __init__(self, info: data.ExamplesInfo, options: TrainOptions):
        self.info = info
        self.options = options

    def build_model(self):
        return build_registry_model(self.options, self.info.num_classes)

    def loss(self):
        return Float32CategoricalCrossentropy(
            from_logits=not _ends_in_softmax(self._model_for_loss),
            label_smoothing=self.options.label_smoothing,
        )

    def metrics(self):
        metrics = [keras.metrics.CategoricalAccuracy(name="top1")]
        if self.info.num_classes > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"))
        return metrics

    def compile_args(self, model) -> dict:
        self._model_for_loss = model
        return {"loss": self.loss(), "metrics": self.metrics()}

    def train_dataset(self, *, start_epoch, end_epoch, steps_per_epoch, seed):
        return data.classification_train_dataset(
            self.info.train_files, options=self.options.data, num_classes=self.info.num_classes,
            seed=seed, batch_size=self.options.batch_size, steps_per_epoch=steps_per_epoch,
            start_epoch=start_epoch, end_epoch=end_epoch,
            examples_per_epoch=self.info.train_count,
        )

    def validation_dataset(self):
        return data.classification_eval_dataset(
            self.info.validation_files, options=self.options.data,
            num_classes=self.info.num_classes, batch_size=self.options.batch_size,
            steps=self.options.validation_steps,
        )

    def preprocessing(self) -> model_io.Preprocessing:
        d = self.options.data
        return model_io.Preprocessing(
            task="classification", input_size=tuple(d.input_size), mean=tuple(d.mean),
            std=tuple(d.std), resize=d.resize, crop_fraction=d.crop_fraction,
        )

    def final_metrics(self, model, log: Log) -> dict[str, float]:
        return {}


class DetectionTask:
    """The single-stage detector of :mod:`edgeline.models.detector`: the pipeline feeds it
    padded ground truth ``(N, M, 5)``, its loss assigns targets and applies the focal loss,
    its decoder turns outputs into boxes for the COCO mAP."""

    monitor = "val_loss"
    monitor_mode = "min"

    def __init__(self, info: data.ExamplesInfo, options: TrainOptions):
        from edgeline.models import detector

        self.detector = detector
        self.info = info
        self.options = options

    def build_model(self):
        return build_registry_model(self.options, self.info.num_classes)

    def encode_targets(self, boxes, classes):
        """Boxes (n, 4) and class indices (n,) -> the loss's ``(M, 5)`` rows
        ``[ymin, xmin, ymax, xmax, class]``, padded with class -1 to M = max_boxes."""
        rows = tf.concat([boxes, tf.cast(classes, tf.float32)[:, None]], axis=1)  # (n, 5)
        padding = self.options.data.max_boxes - tf.shape(rows)[0]
        padded = tf.pad(rows, [[0, padding], [0, 0]])
        is_padding = tf.range(self.options.data.max_boxes) >= tf.shape(rows)[0]
        class_column = tf.where(is_padding, -1.0, padded[:, 4])
        padded = tf.concat([padded[:, :4], class_column[:, None]], axis=1)
        padded.set_shape([self.options.data.max_boxes, 5])
        return padded  # (M, 5)

    def compile_args(self, model) -> dict:
        try:
            loss = self.detector.DetectorLoss(input_size=tuple(self.options.data.input_size),
                                              **self.options.loss_options)
        except (TypeError, ValueError) as err:
            raise UserError(f"train.loss_options: {err}") from None
        return {"loss": loss}

    def train_dataset(self, *, start_epoch, end_epoch, steps_per_epoch, seed):
        return data.detection_train_dataset(
            self.info.train_files, options=self.options.data,
            category_ids=self.info.category_ids, encode_targets=self.encode_targets, seed=seed,
            batch_size=self.options.batch_size, steps_per_epoch=steps_per_epoch,
            start_epoch=start_epoch, end_epoch=end_epoch,
            examples_per_epoch=self.info.train_count,
        )

    def validation_dataset(self):
        return data.detection_eval_dataset(
            self.info.validation_files, options=self.options.data,
            category_ids=self.info.category_ids, encode_targets=self.encode_targets,
            batch_size=self.options.batch_size, steps=self.options.validation_steps,
        )

    def decoding_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``decode_detections`` for this model (JSON-able)."""
        settings = {"input_size": [int(s) for s in self.options.data.input_size],
                    "strides": [int(s) for s in self.detector.DETECTOR_STRIDES],
                    "max_detections": 100, "score_threshold": 0.05, "iou_threshold": 0.5,
                    "soft_nms_sigma": 0.0, "pre_nms_top_k": 1000, "class_agnostic": False}
        unknown = sorted(set(self.options.decoding) - set(settings) - {"input_size"})
        if unknown:
            raise UserError(
                f"train.decoding: unknown key {unknown[0]!r}; known keys: "
                f"{', '.join(k for k in settings if k != 'input_size')}"
            )
        settings.update(self.options.decoding)
        return settings

    def preprocessing(self) -> model_io.Preprocessing:
        d = self.options.data
        return model_io.Preprocessing(
            task="detection", input_size=tuple(d.input_size), mean=tuple(d.mean),
            std=tuple(d.std), resize=d.resize, crop_fraction=1.0,
            category_ids=tuple(self.info.category_ids), decoding=self.decoding_settings(),
        )

    def final_metrics(self, model, log: Log) -> dict[str, float]:
        """COCO box mAP of ``model`` on the validation split, against ingest's ground truth."""
        annotations = self.info.annotations_path()
        if not self.options.box_map or not annotations.is_file():
            return {}
        started = time.time()
        detections = self.predict_coco(model)
        stats = coco_box_map(annotations, detections)
        log(f"train: box mAP {stats['box_map']:.4f} (AP50 {stats['box_map_50']:.4f}), "
            f"{len(detections)} detections, in {time.time() - started:.1f}s")
        return stats

    def predict_coco(self, model) -> list[dict]:
        """Detections on the validation split in COCO result format (pixel xywh boxes)."""
        dataset = data.detection_eval_dataset(
            self.info.validation_files, options=self.options.data,
            category_ids=self.info.category_ids, encode_targets=None,
            batch_size=self.options.batch_size,
        )
        settings = self.decoding_settings()
        settings["input_size"] = tuple(settings["input_size"])
        settings["strides"] = tuple(settings["strides"])
        detect = tf.function(
            lambda images: self.detector.decode_detections(model(images, training=False),
                                                           **settings),
            autograph=False, reduce_retracing=True,
        )
        category_ids = np.asarray(self.info.category_ids)
        results = []
        for images, meta in dataset:
            found = {k: v.numpy() for k, v in detect(images).items()}
            for i in range(images.shape[0]):
                height, width = float(meta["height"][i]), float(meta["width"][i])
                source_id = meta["source_id"][i].numpy().decode()
                image_id = int(source_id) if source_id.isdigit() else source_id
                for k in range(int(found["num_detections"][i])):
                    ymin, xmin, ymax, xmax = (float(v) for v in found["boxes"][i, k])
                    results.append({
                        "image_id": image_id,
                        "category_id": int(category_ids[int(found["classes"][i, k])]),
                        "bbox": [xmin * width, ymin * height, (xmax - xmin) * width,
                                 (ymax - ymin) * height],
                        "score": float(found["scores"][i, k]),
                    })
        return results


def coco_box_map(annotations: Path, detections: list[dict]) -> dict[str, float]:
    """COCO box AP@[.5:.95] and AP@.5 (faster_coco_eval, the pipeline's COCO engine) of
    ``detections`` on the images of ``annotations``; 0 when nothing was detected."""
    from faster_coco_eval import COCO, COCOeval_faster

    ground_truth = COCO(str(annotations))
    if not detections:
        return {"box_map": 0.0, "box_map_50": 0.0}
    evaluation = COCOeval_faster(ground_truth, ground_truth.loadRes(detections), iouType="bbox",
                                 print_function=lambda *args: None)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return {"box_map": float(evaluation.stats[0]), "box_map_50": float(evaluation.stats[1])}


def _ends_in_softmax(model) -> bool:
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def build_registry_model(options: TrainOptions, num_classes: int):
    from edgeline.models import registry

    height, width = options.data.input_size
    try:
        return registry.build(options.model, num_classes=num_classes,
                              input_shape=(height, width, 3), **options.model_options)
    except (ValueError, TypeError) as err:
        raise UserError(f"train.model: {err}") from None


def make_task(info: data.ExamplesInfo, options: TrainOptions):
    return DetectionTask(info, options) if info.task == "detection" else ClassificationTask(
        info, options)


# -- transfer learning ----------------------------------------------------------------------


def leaf_layers(model, prefix: str = ""):
    """(path, layer) of every layer, descending into nested models ("backbone/conv1")."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer, prefix=f"{path}/")
        else:
            yield path, layer


def _ancestors(layers) -> list:
    """Every layer that feeds ``layers`` in the functional graph (not the layers themselves)."""
    found: dict[int, Any] = {}
    stack = list(layers)
    while stack:
        layer = stack.pop()
        for node in layer._inbound_nodes:
            parents = node.inbound_layers
            for parent in parents if isinstance(parents, list | tuple) else [parents]:
                if id(parent) not in found:
                    found[id(parent)] = parent
                    stack.append(parent)
    return list(found.values())


def backbone_layers(model) -> list:
    """The layers frozen in a frozen-backbone phase: everything that feeds the head.

    For a detector with a feature pyramid, the layers feeding its lateral projections
    (``fpn_lateral*``); for a classifier, those feeding its global pooling (``global_pool``);
    a model whose layers are named ``backbone...`` says which they are.
    """
    named = [layer for layer in model.layers if layer.name.startswith("backbone")]
    if named:
        return named
    heads = [layer for layer in model.layers if layer.name.startswith("fpn_lateral")]
    heads = heads or [layer for layer in model.layers if layer.name == "global_pool"]
    if not heads:
        raise UserError(
            f"transfer.freeze_backbone_epochs: cannot tell the backbone of {model.name!r} (no "
            "'global_pool', 'fpn_lateral*' or 'backbone*' layer)"
        )
    return [layer for layer in _ancestors(heads) if layer.weights]


def load_source_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Variable name -> value of a Model artifact (its Keras model) or of any SavedModel with
    a ``serving_default`` signature (the variables that signature reads)."""
    path = Path(path)
    if model_io.is_model_dir(path):
        try:
            source = model_io.load_model_dir(path).load_keras()
        except model_io.ModelDirError as err:
            raise UserError(f"transfer.initial_model: {err}") from None
        weights = {v.name: v.numpy() for v in source.variables}
        del source
        return weights
    if (path / "saved_model.pb").is_file():
        try:
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["serving_default"]
        except (KeyError, OSError, ValueError) as err:
            raise UserError(
                f"transfer.initial_model: cannot read the serving_default signature of the "
                f"SavedModel {str(path)!r} ({type(err).__name__})"
            ) from None
        return {v.name: v.numpy() for v in signature.variables}
    raise UserError(
        f"transfer.initial_model: {str(path)!r} is neither a Model artifact (model.keras) "
        "nor a SavedModel (saved_model.pb)"
    )


def transfer_weights(model, source: dict[str, np.ndarray]) -> tuple[int, int]:
    """Copies every variable whose name and shape match (a classifier head with another
    number of classes keeps its fresh initialization); returns (copied, total)."""
    copied = 0
    for variable in model.variables:
        value = source.get(variable.name)
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            copied += 1
    return copied, len(model.variables)


# -- callbacks ------------------------------------------------------------------------------


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

    Written with core TensorFlow ops (``tf.summary.write`` and the scalars plugin's
    metadata), because the ``tensorboard`` package, which ``tf.summary.scalar`` and Keras'
    callback need, is not a dependency; TensorBoard reads these files all the same.
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


# -- resume ---------------------------------------------------------------------------------


def resume_epoch(backup_dir: Path, default: int) -> int:
    """The epoch ``BackupAndRestore`` will resume at: one past the epoch it saved last.

    Read here, before ``fit``, so the input stream can start at the same epoch.
    """
    checkpoint = tf.train.latest_checkpoint(str(backup_dir / "chief"))
    if checkpoint is None:
        return default
    reader = tf.train.load_checkpoint(checkpoint)
    saved = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    return saved + 1 if saved >= 0 else default


# -- the run --------------------------------------------------------------------------------


def plan_phases(options: TrainOptions, has_initial_weights: bool) -> list[Phase]:
    frozen = options.transfer.freeze_backbone_epochs
    if frozen and not has_initial_weights:
        raise UserError(
            f"train.transfer.freeze_backbone_epochs={frozen} needs starting weights: set "
            "transfer.initial_model or give the step a Model input"
        )
    if not frozen:
        return [Phase("train", 0, options.epochs, False, 1.0)]
    phases = [Phase("frozen", 0, frozen, True, 1.0)]
    if frozen < options.epochs:
        phases.append(Phase("fine_tune", frozen, options.epochs, False,
                            options.transfer.fine_tune_learning_rate_scale))
    return phases


def _verbosity(progress: str) -> int:
    if progress == "off":
        return 0
    if progress == "bar" or (progress == "auto" and sys.stdout.isatty()):
        return 1
    return 2


def run(
    *,
    options: TrainOptions,
    examples_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    seed: int = 0,
    deterministic: bool = False,
    initial_model: str | os.PathLike | None = None,
    log: Log | None = None,
) -> TrainResult:
    """Trains ``options.model`` on ``examples_dir`` and writes a Model artifact to
    ``output_dir``; resumable state lives in ``work_dir``. ``initial_model`` (a Model
    artifact or SavedModel) overrides ``options.transfer.initial_model``."""
    log = log or _stderr
    strategy = distribute.select_strategy(options.distribution)
    # Tests and pipelines train several models in one process: the policy and op determinism
    # the run sets are undone after it.
    with determinism(seed=seed, deterministic=deterministic):
        return _run(options=options, examples_dir=Path(examples_dir), output_dir=Path(output_dir),
                    work_dir=Path(work_dir), seed=seed, deterministic=deterministic,
                    initial_model=initial_model or options.transfer.initial_model,
                    strategy=strategy, log=log)


def _run(*, options, examples_dir, output_dir, work_dir, seed, deterministic, initial_model,
         strategy, log) -> TrainResult:
    started = time.time()
    info = data.read_examples(examples_dir, options.task)
    if not info.validation_files:
        raise UserError(f"examples: no 'validation' shards in {str(examples_dir)!r}")
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise UserError(
            f"train.batch_size={options.batch_size} must be a multiple of the {replicas} "
            "replicas (it is the global batch)"
        )
    steps_per_epoch = options.steps_per_epoch or info.train_count // options.batch_size
    if steps_per_epoch < 1:
        raise UserError(
            f"train.batch_size={options.batch_size} is larger than the {info.train_count} "
            "training examples; lower it or set steps_per_epoch"
        )
    task = make_task(info, options)
    monitor = task.monitor if options.monitor == "auto" else options.monitor
    policy = distribute.precision_policy(options.mixed_precision)
    source_weights = load_source_weights(initial_model) if initial_model else None
    distribute.set_precision_policy(policy)
    is_chief = distribute.is_chief(strategy)
    work_dir.mkdir(parents=True, exist_ok=True)
    log(f"train: {options.model} on {info.task} ({info.num_classes} classes, "
        f"{info.train_count} train / {info.validation_count} validation examples), "
        f"{replicas} replica(s) with {type(strategy).__name__}, policy {policy}, "
        f"batch {options.batch_size}, {steps_per_epoch} steps x {options.epochs} epochs")

    with strategy.scope():
        model = task.build_model()
        if source_weights is not None:
            copied, total = transfer_weights(model, source_weights)
            if copied == 0:
                raise UserError(
                    f"transfer.initial_model: no layer of {str(initial_model)!r} matches "
                    f"{options.model} by name and shape"
                )
            log(f"train: copied {copied} of {total} variables from {initial_model}")
    phases = plan_phases(options, source_weights is not None)
    history = HistoryLog(work_dir / "history.json", phase=phases[0].name, writer=is_chief)
    best = (KeepBest(work_dir, monitor, task.monitor_mode if options.monitor == "auto" else
                     _mode_of(monitor), writer=is_chief) if options.keep_best else None)
    resumed_from = None
    for phase in phases:
        done = work_dir / f"phase-{phase.name}.weights.h5"
        if done.is_file():
            model.load_weights(str(done))
            log(f"train: phase {phase.name} already finished; loaded its weights")
            resumed_from = phase.end
            continue
        start = _fit_phase(
            model=model, task=task, phase=phase, options=options, strategy=strategy,
            steps_per_epoch=steps_per_epoch, seed=seed, work_dir=work_dir, history=history,
            best=best, is_chief=is_chief, log=log,
        )
        if start > phase.start:
            resumed_from = start
        save_weights(model, done, writer=is_chief)
        shutil.rmtree(work_dir / f"backup-{phase.name}", ignore_errors=True)

    best_epoch = None
    if best is not None and best.weights_path.is_file():
        model.load_weights(str(best.weights_path))
        best_epoch = best.state["epoch"]
        log(f"train: kept epoch {best_epoch + 1} ({monitor} {best.state['value']:.4f})")

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
    seconds = time.time() - started
    properties = {
        "task": info.task,
        "model": options.model,
        "num_classes": info.num_classes,
        "input_size": list(options.data.input_size),
        "epochs": options.epochs,
        "steps_per_epoch": steps_per_epoch,
        "global_batch_size": options.batch_size,
        "replicas": replicas,
        "strategy": type(strategy).__name__,
        "precision_policy": policy,
        "phases": [dataclasses.asdict(p) for p in phases],
        "best_epoch": best_epoch,
        "resumed_from_epoch": resumed_from,
        "train_examples": info.train_count,
        "validation_examples": info.validation_count,
        "seconds": round(seconds, 2),
    }
    log(f"train: done in {seconds:.1f}s; " + ", ".join(f"{k} {v:.4f}" for k, v in
                                                      metrics.items()))
    return TrainResult(model_dir=model_dir, history=columns, metrics=metrics,
                       properties=properties)


def _mode_of(monitor: str) -> str:
    return "min" if "loss" in monitor or "error" in monitor else "max"


def _compile(model, task, options: TrainOptions, phase: Phase, steps_per_epoch: int):
    schedule = optim.build_schedule(
        options.schedule,
        peak_learning_rate=options.optimizer.learning_rate * phase.learning_rate_scale,
        steps_per_epoch=steps_per_epoch,
        epochs=phase.end - phase.start,
    )
    optimizer = optim.build_optimizer(options.optimizer, learning_rate=schedule,
                                      ema_decay=options.ema_decay,
                                      jit_compile=options.jit_compile)
    model.compile(optimizer=optimizer, jit_compile=options.jit_compile,
                  **task.compile_args(model))
    optim.exclude_from_weight_decay(model.optimizer, model)


def _fit_phase(*, model, task, phase: Phase, options: TrainOptions, strategy, steps_per_epoch,
               seed, work_dir: Path, history: HistoryLog, best, is_chief, log) -> int:
    """Runs (or resumes) one phase; returns the epoch it started at."""
    for layer in backbone_layers(model):
        layer.trainable = not phase.freeze_backbone
    with strategy.scope():
        _compile(model, task, options, phase, steps_per_epoch)
    backup_dir = work_dir / f"backup-{phase.name}"
    start = resume_epoch(backup_dir, phase.start)
    if start >= phase.end:
        # Every epoch finished but the phase was not marked done: restore, no fit.
        _restore_finished_phase(model, backup_dir)
        log(f"train: phase {phase.name} had finished; restored it from {backup_dir}")
        return phase.end
    if start > phase.start:
        log(f"train: resuming phase {phase.name} at epoch {start + 1} from {backup_dir}")
    history.phase = phase.name
    history.drop_from(start)
    callbacks = [StopOnNaN(options.optimizer.learning_rate * phase.learning_rate_scale)]
    if options.ema_decay is not None:
        callbacks.append(optim.EvaluateWithAverage())
    # Order matters: the history and the best weights are on disk before BackupAndRestore
    # marks the epoch finished, so a crash between them repeats the epoch instead of losing it.
    callbacks.append(history)
    if best is not None:
        callbacks.append(best)
    callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False))
    if options.tensorboard and is_chief:
        callbacks.append(TensorBoardScalars(work_dir / "tensorboard"))
    train_ds = task.train_dataset(start_epoch=start, end_epoch=phase.end,
                                  steps_per_epoch=steps_per_epoch, seed=seed)
    model.fit(
        train_ds,
        epochs=phase.end,
        initial_epoch=phase.start,
        steps_per_epoch=steps_per_epoch,
        validation_data=task.validation_dataset(),
        validation_steps=options.validation_steps,
        callbacks=callbacks,
        verbose=_verbosity(options.progress),
    )
    return start


def _restore_finished_phase(model, backup_dir: Path) -> None:
    """What ``fit`` would have ended with: the backed-up weights, then the weight average
    swapped in (``finalize_variable_values``) when the optimizer keeps one."""
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model)
    checkpoint.restore(tf.train.latest_checkpoint(str(backup_dir / "chief"))).expect_partial()
    optimizer.finalize_variable_values(model.trainable_variables)


def _final_metrics(final_model, task, history: dict[int, dict], kept_epoch: int,
                   log) -> dict:
    """The validation metrics of the epoch whose weights the artifact holds (measured by
    ``fit`` with exactly those weights, the average's when there is one), plus the task's own
    (box mAP, measured here on the float32 network)."""
    logs = history.get(kept_epoch, {})
    metrics = {k: float(v) for k, v in logs.items() if k.startswith("val_")}
    metrics.update(task.final_metrics(final_model, log))
    return metrics
