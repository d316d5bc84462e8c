"""The evaluate stage's core: a model and an Examples split in, metrics and plots out.

1. Find the model's form (a TFLiteModel's ``.tflite``, a Model's Keras model or SavedModel, a
   bare file) and what it expects of pixels (``preprocessing.json``, or ``export.json``'s copy).
2. Read the split's TFRecords with the evaluation preprocessing every stage shares
   (:mod:`edgeline.common.preprocessing`): classification takes the central ``crop_fraction``
   of the shorter side, detection the whole image; both resize to the input size and apply
   ``(pixels / 255 - mean) / std`` (unless the model does it inside).
3. Run the model batch by batch (:mod:`.predictors`), timing inference for images/second.
4. Score: top-1/top-5/per-class accuracy and the confusion matrix (:mod:`.classification`), or
   the COCO metrics against the ``<split>_annotations.json`` ingest stored (the shared
   :mod:`edgeline.common.coco_detections` and :mod:`edgeline.common.coco`, which the train
   stage's box mAP and the export gate use too). Write ``metrics.json`` and the PNGs into the
   output directory.

The same code runs for every form, so a compressed or exported model is judged exactly as the
original was.

A Policy artifact (rl output) is scored by :func:`.returns.evaluate_policy` instead: the mean
and spread of its greedy return over seeded episodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.common import preprocessing as common_preprocessing
from edgeline.common.artifact_types.metrics import (
    CONFUSION_MATRIX_FILE,
    DETECTIONS_FILE,
    METRICS_FILE,
    PLOTS_DIR,
)
from edgeline.common.artifact_types.policy import DESCRIPTION_FILE as POLICY_DESCRIPTION_FILE
from edgeline.common.artifact_types.policy import SAVED_POLICY_DIR
from edgeline.components.evaluate import predictors
from edgeline.components.evaluate.options import EvaluateOptions
from edgeline.pipeline import console, records
from edgeline.pipeline.errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelUnderEvaluation:
    """A model to evaluate: its runnable form and what its input must look like."""

    predictor: predictors.Predictor
    form: str
    preprocessing: Any  # edgeline.models.io.Preprocessing
    labels: tuple[str, ...]
    preprocessing_inside: bool  # the network normalizes pixels itself


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    properties: dict[str, Any]
    metrics: dict[str, Any]
    report: dict[str, Any]  # everything metrics.json holds


def _read_labels(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise UserError(f"Received: model={os.fspath(path.parent)!r}; labels.txt is missing")
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line.strip())


def _preprocessing_beside(path: Path):
    """(Preprocessing, preprocessing_inside) from export.json or preprocessing.json in ``path``."""
    from edgeline.models.io import ModelDirError, Preprocessing

    try:
        if (path / "export.json").is_file():
            report = json.loads((path / "export.json").read_text(encoding="utf-8"))
            return (Preprocessing.from_json(report["preprocessing"]),
                    bool(report.get("preprocessing_inside", False)))
        if (path / "preprocessing.json").is_file():
            data = json.loads((path / "preprocessing.json").read_text(encoding="utf-8"))
            return Preprocessing.from_json(data), False
    except (ModelDirError, KeyError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable preprocessing ({err})") from None
    raise UserError(
        f"Received: model={os.fspath(path)!r}; no export.json or preprocessing.json beside the "
        "model says how to preprocess its input"
    )


def load_model_under_evaluation(model_path: str | os.PathLike, form: str = "auto", *,
                    num_threads: int = 1) -> ModelUnderEvaluation:
    """The model at ``model_path`` (an artifact directory or a bare ``.tflite``/``.keras``
    file with its ``preprocessing.json``/``export.json`` and ``labels.txt`` beside it)."""
    model_path = Path(model_path)
    if not model_path.exists():
        raise UserError(f"Received: model={os.fspath(model_path)!r}; no such file or directory")
    form = predictors.detect_form(model_path) if form == "auto" else form
    folder = model_path if model_path.is_dir() else model_path.parent
    if (folder / "preprocessing.json").is_file() and (folder / "model.keras").is_file():
        from edgeline.models.io import ModelDirError, load_model_dir

        try:
            model_dir = load_model_dir(folder)
        except ModelDirError as err:
            raise UserError(str(err)) from None
        preprocessing, labels, inside = model_dir.preprocessing, model_dir.labels, False
    else:
        preprocessing, inside = _preprocessing_beside(folder)
        labels = _read_labels(folder / "labels.txt")
    predictor = predictors.load_predictor(model_path, form, num_threads=num_threads)
    return ModelUnderEvaluation(predictor=predictor, form=form, preprocessing=preprocessing,
                     labels=labels, preprocessing_inside=inside)


# -- reading the evaluation split -------------------------------------------------------------


def evaluation_dataset(files: list[str], *, task: str, preprocessing, normalize: bool,
                       batch_size: int, max_images: int | None = None):
    """Batches of (images (B, H, W, 3) float32, metadata) in file order.

    Metadata: ``label`` for classification; ``source_id``, ``height``, ``width`` for detection.
    """
    import tensorflow as tf

    def per_example(serialized):
        if task == "classification":
            parsed = records.parse_classification(serialized)
            meta = {"label": parsed[records.LABEL]}
        else:
            parsed = records.parse_detection(serialized)
            meta = {"source_id": parsed[records.SOURCE_ID], "height": parsed[records.HEIGHT],
                    "width": parsed[records.WIDTH]}
        # Classification takes the center crop, detection the whole image.
        image = common_preprocessing.evaluation_image(
            parsed[records.ENCODED], preprocessing, crop=task == "classification")
        if normalize:
            image = common_preprocessing.normalize(image, preprocessing)
        image.set_shape([*preprocessing.input_size, 3])
        return tf.cast(image, tf.float32), meta

    # Plain graph ops and Python-time options only: autograph's source rewriting (seconds on a
    # busy CPU) has nothing to convert.
    per_example = tf.autograph.experimental.do_not_convert(per_example)
    dataset = tf.data.TFRecordDataset(files)
    if max_images is not None:
        dataset = dataset.take(max_images)
    return dataset.map(per_example, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True).batch(batch_size).prefetch(2)


def _split_files(examples_dir: Path, split: str) -> list[str]:
    files = records.shard_paths(examples_dir, split)
    if not files:
        raise UserError(
            f"Received: split={split!r}; no {split}-*-of-*.tfrecord shards in {examples_dir}"
        )
    return files


def _expected_count(examples_dir: Path, split: str) -> int | None:
    try:
        data = json.loads((examples_dir / "artifact.json").read_text(encoding="utf-8"))
        return int(data["properties"]["splits"][split]["written"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _progress(total: int | None):
    from edgeline.pipeline import console

    # A bar in a terminal, a line at every tenth of the images in a log.
    return console.progress(total, "evaluate", "image")


def _run_model(spec: ModelUnderEvaluation, dataset,
               total: int | None) -> tuple[dict, dict, float, int]:
    """Outputs and metadata of every image, concatenated, and the inference seconds."""
    outputs: list[dict] = []
    metadata: list[dict] = []
    seconds = 0.0
    count = 0
    with _progress(total) as bar:
        for images, meta in dataset.as_numpy_iterator():
            started = time.perf_counter()
            outputs.append(spec.predictor.predict(images))
            seconds += time.perf_counter() - started
            metadata.append(meta)
            count += len(images)
            bar.update(len(images))
    if not outputs:
        raise UserError("Received: an empty split; there are no images to evaluate")
    joined = {key: np.concatenate([o[key] for o in outputs]) for key in outputs[0]}
    joined_meta = {key: np.concatenate([m[key] for m in metadata]) for key in metadata[0]}
    return joined, joined_meta, seconds, count


# -- scoring ----------------------------------------------------------------------------------


def _score_classification(spec: ModelUnderEvaluation, outputs, meta, output_dir: Path,
                          options: EvaluateOptions) -> tuple[dict, dict]:
    from edgeline.components.evaluate import classification

    if len(outputs) != 1:
        raise UserError(f"Received: classifier outputs {sorted(outputs)}; expected one")
    (scores,) = outputs.values()
    names = [line.split("\t", 1)[-1] for line in spec.labels]
    report = classification.classification_metrics(scores, meta["label"], names)
    files = {}
    if options.plots:
        classification.write_confusion_matrix_png(
            report["confusion_matrix"], names, output_dir / CONFUSION_MATRIX_FILE)
        files["confusion_matrix"] = CONFUSION_MATRIX_FILE
    metrics = {"top1": report["top1"], "top5": report["top5"]}
    return report | {"files": files}, metrics


def _score_detection(spec: ModelUnderEvaluation, outputs, meta, output_dir: Path,
                     examples_dir: Path, options: EvaluateOptions) -> tuple[dict, dict]:
    from edgeline.common.coco import evaluate_detections
    from edgeline.common.coco_detections import (
        decoded_detections,
        image_id_of,
        to_coco_detections,
    )
    from edgeline.common.coco_inputs import load_ground_truth

    ground_truth_path = examples_dir / f"{options.split}_annotations.json"
    if not ground_truth_path.is_file():
        raise UserError(
            f"Received: examples={os.fspath(examples_dir)!r}; it has no "
            f"{ground_truth_path.name} (COCO ground truth of split {options.split!r})"
        )
    ground_truth = load_ground_truth(ground_truth_path)
    decoding = dict(spec.preprocessing.decoding or {})
    decoded = decoded_detections(
        outputs, input_size=spec.preprocessing.input_size,
        decode_settings=options.detection.decode_settings(), strides=decoding.get("strides"),
    )
    image_ids = [image_id_of(s) for s in meta["source_id"]]
    results = to_coco_detections(
        decoded, image_ids=image_ids, heights=meta["height"], widths=meta["width"],
        category_ids=spec.preprocessing.category_ids,
    )
    if options.max_images is not None:
        # Score only the images that were run, so unseen images do not count as misses.
        kept = set(image_ids)
        ground_truth = dict(ground_truth)
        ground_truth["images"] = [i for i in ground_truth["images"] if i["id"] in kept]
        ground_truth["annotations"] = [a for a in ground_truth["annotations"]
                                       if a["image_id"] in kept]
    coco = evaluate_detections(ground_truth, results, iou_type="bbox")
    (output_dir / DETECTIONS_FILE).write_text(json.dumps(results), encoding="utf-8")
    files = {"detections": DETECTIONS_FILE}
    if options.plots:
        from edgeline.components.evaluate.coco_plots import write_precision_recall_plots

        paths = write_precision_recall_plots(coco, output_dir / PLOTS_DIR)
        files["precision_recall"] = [p.relative_to(output_dir).as_posix() for p in paths]
    report = coco.to_dict() | {"files": files,
                               "decoding": options.detection.decode_settings()}
    return report, {**coco.summary}


def run(
    *,
    options: EvaluateOptions,
    examples_dir: str | os.PathLike,
    model_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    log: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Evaluate the model at ``model_path`` on ``options.split`` of ``examples_dir``; write
    ``metrics.json`` and the plots into ``output_dir``."""
    import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

    log = log or console.log
    examples_dir, output_dir = Path(examples_dir), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    spec = load_model_under_evaluation(model_path, options.model_form,
                                       num_threads=options.num_threads)
    task = spec.preprocessing.task
    files = _split_files(examples_dir, options.split)
    total = _expected_count(examples_dir, options.split)
    if options.max_images is not None:
        total = min(total, options.max_images) if total else options.max_images
    log(f"evaluate: {spec.form} {task} model on {options.split} ({total or '?'} images)")
    dataset = evaluation_dataset(
        files, task=task, preprocessing=spec.preprocessing,
        normalize=not spec.preprocessing_inside, batch_size=options.batch_size,
        max_images=options.max_images,
    )
    outputs, meta, seconds, count = _run_model(spec, dataset, total)
    if task == "classification":
        report, metrics = _score_classification(spec, outputs, meta, output_dir, options)
    else:
        report, metrics = _score_detection(spec, outputs, meta, output_dir, examples_dir,
                                           options)
    images_per_second = count / seconds if seconds > 0 else float("inf")
    metrics = {**metrics, "num_images": count, "images_per_second": images_per_second}
    report = {"task": task, "model_form": spec.form, "split": options.split,
              "num_images": count, "inference_seconds": seconds,
              "images_per_second": images_per_second, **report}
    (output_dir / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n",
                                           encoding="utf-8")
    properties = {"task": task, "model_form": spec.form, "split": options.split,
                  "files": {"metrics": METRICS_FILE, **report.get("files", {})}}
    summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    log(f"evaluate: {summary}")
    return EvaluationResult(properties=properties, metrics=metrics, report=report)


def is_policy_dir(path: str | os.PathLike) -> bool:
    """A Policy artifact (or the rl core's output directory): ``saved_policy/`` beside a
    ``policy.json`` or an ``artifact.json`` of type Policy. (No TensorFlow needed to tell.)"""
    path = Path(path)
    if not (path / SAVED_POLICY_DIR).is_dir():
        return False
    if (path / POLICY_DESCRIPTION_FILE).is_file():
        return True
    try:
        return json.loads((path / "artifact.json").read_text(encoding="utf-8"))["type"] == "Policy"
    except (OSError, KeyError, TypeError, ValueError):
        return False
