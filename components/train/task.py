"""What differs between training a classifier and a detector: the network, its loss and
metrics, its input streams, its preprocessing record and its final metrics.

:func:`make_task` picks the task for an Examples artifact; the train core (and compress,
which fine-tunes with the same data and loss) talk to the task only through its methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.coco import evaluate_detections
from edgeline.common.coco_detections import image_id_of, to_coco_detections
from edgeline.common.coco_inputs import load_ground_truth
from edgeline.components.train import data
from edgeline.components.train.options import TrainOptions
from edgeline.models import io as model_io
from edgeline.pipeline.errors import UserError

Log = Callable[[str], None]


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
        results = []
        for images, meta in dataset:
            results += to_coco_detections(
                {k: v.numpy() for k, v in detect(images).items()},
                image_ids=[image_id_of(s) for s in meta["source_id"].numpy()],
                heights=meta["height"].numpy(), widths=meta["width"].numpy(),
                category_ids=self.info.category_ids)
        return results


def coco_box_map(annotations: Path, detections: list[dict]) -> dict[str, float]:
    """COCO box AP@[.5:.95] and AP@.5 of ``detections`` on the images of ``annotations``, scored
    as the evaluate stage scores them; 0 when nothing was detected."""
    if not detections:
        return {"box_map": 0.0, "box_map_50": 0.0}
    summary = evaluate_detections(load_ground_truth(annotations), detections).summary
    return {"box_map": summary["AP"], "box_map_50": summary["AP50"]}


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
