"""The export stage's core: a Model artifact in, a checked ``.tflite`` out.

``run(...)`` reads top to bottom:

1. read the Model artifact (``edgeline.models.io``) and load the source network, Keras or
   SavedModel;
2. build the graph that ships (:mod:`.graph`): preprocessing inside when asked (always for
   detectors), a softmax on a logits classifier, decoding and NMS for detectors;
3. draw the calibration set from the training TFRecords for ``int8`` and convert
   (:mod:`.convert`; an op outside the TFLite builtin set stops here, named with its layer);
4. the parity gate: run the ``.tflite`` in LiteRT and the source model on held-out images;
   float32 must match to a tolerance, quantized exports may lose at most the metric budget;
5. write ``model.tflite``, ``labels.txt`` (and ``category_ids.txt`` for detectors) and
   ``export.json`` (inputs/outputs with their quantization, op counts, size, parity figures
   and LiteRT latency at 1 thread and all threads).

A failed gate still writes everything (export.json records the figures) and then raises
:class:`ParityGateFailed`, which the CLI turns into exit code 1.
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

import edgeline
from edgeline.common import litert
from edgeline.common.artifact_types.tflite_model import (
    CATEGORY_IDS_FILE,
    LABELS_FILE,
    REPORT_FILE,
    TFLITE_FILE,
)
from edgeline.common.preprocessing import normalize
from edgeline.components.export import convert, flatbuffer, graph
from edgeline.components.export.data import ImageSet, load_images
from edgeline.components.export.options import ExportOptions
from edgeline.pipeline.config import to_plain
from edgeline.pipeline.errors import UserError

Log = Callable[[str], None]


class ParityGateFailed(Exception):
    """The export converted but does not match its source well enough (exit code 1).

    The message holds the figures; ``result`` the written export and its report.
    """

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result


@dataclasses.dataclass
class ExportResult:
    """Where the export was written, and its report (``export.json``'s content)."""

    directory: Path
    report: dict[str, Any]
    tflite_path: Path = dataclasses.field(init=False)  # the TFLiteModel artifact's file

    def __post_init__(self) -> None:
        self.tflite_path = self.directory / TFLITE_FILE

    @property
    def passed(self) -> bool:
        return bool(self.report["parity"].get("passed", True))


# -- 1. the source ----------------------------------------------------------------------------


def read_model_dir(model_dir: str | os.PathLike):
    """The Model artifact, or one line saying why ``model_dir`` is not one."""
    from edgeline.models import io as model_io

    try:
        return model_io.load_model_dir(model_dir)
    except model_io.ModelDirError as err:
        raise UserError(str(err)) from None


def _holds_quantize_wrappers(keras_path: Path) -> bool:
    """Whether a ``.keras`` file's config names TF-MOT's quantize layers (read from the zip,
    so TF-MOT is imported only for the models that need it)."""
    import zipfile

    try:
        with zipfile.ZipFile(keras_path) as archive:
            config = archive.read("config.json").decode(errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    return "QuantizeWrapper" in config or "QuantizeLayer" in config


def load_keras_model(model_dir):
    """The artifact's Keras network; TF-MOT's quantize wrappers resolve in its scope."""
    import contextlib

    from edgeline.models import io as model_io

    scope = contextlib.nullcontext()
    if _holds_quantize_wrappers(model_dir.keras_path):
        import tensorflow_model_optimization as tfmot

        scope = tfmot.quantization.keras.quantize_scope()
    with scope:
        try:
            return model_dir.load_keras()
        except (model_io.ModelDirError, TypeError, ValueError) as err:
            raise UserError(
                f"{model_dir.keras_path}: cannot load the Keras model ({err}); "
                "the SavedModel may still convert (source: saved_model)"
            ) from None


@dataclasses.dataclass
class SourceNetwork:
    """The network being exported, as a callable on normalized float32 images."""

    kind: str  # "keras" | "saved_model"
    keras_model: Any  # the tf_keras model (None for a SavedModel source)
    saved_model: Any  # the loaded SavedModel (None for a Keras source)
    quantization_aware: bool

    def __call__(self, images):
        if self.keras_model is not None:
            return self.keras_model(images, training=False)
        outputs = self.saved_model.signatures["serving_default"](images=images)
        if len(outputs) == 1:
            return next(iter(outputs.values()))
        return outputs


def load_source(model_dir, kind: str, log: Log = lambda message: None) -> SourceNetwork:
    """The network to export: ``keras``, ``saved_model``, or ``auto`` (Keras, else the
    SavedModel when the Keras file does not load)."""
    if kind in ("keras", "auto"):
        try:
            model = load_keras_model(model_dir)
            return SourceNetwork("keras", model, None, convert.is_quantization_aware(model))
        except UserError as err:
            if kind == "keras":
                raise
            log(f"export: {err}; using the SavedModel instead")
    loaded = model_dir.load_saved_model()
    if "serving_default" not in loaded.signatures:
        raise UserError(f"{model_dir.saved_model_path}: no 'serving_default' signature")
    # A SavedModel's graph shows QAT only as FakeQuant nodes.
    graph_def = loaded.signatures["serving_default"].graph.as_graph_def()
    functions = [node for f in graph_def.library.function for node in f.node_def]
    qat = any(node.op.startswith("FakeQuant") for node in functions)
    return SourceNetwork("saved_model", None, loaded, qat)


def source_outputs(source: SourceNetwork, pixels: np.ndarray, preprocessing,
                   batch_size: int = 32) -> np.ndarray:
    """The source network on uint8 pixels (normalized here, as preprocessing.json says)."""
    import tensorflow as tf

    outputs = []
    for start in range(0, len(pixels), batch_size):
        images = normalize(tf.constant(pixels[start:start + batch_size]), preprocessing)
        outputs.append(np.asarray(source(images), np.float32))
    return np.concatenate(outputs)


# -- 2./3. the exported graph and its conversion ------------------------------------------------


def _model_input(pixels: np.ndarray, preprocessing, include_preprocessing: bool) -> np.ndarray:
    """What the exported graph takes: the pixels themselves, or normalized floats."""
    if include_preprocessing:
        return pixels
    return np.asarray(normalize(pixels, preprocessing), np.float32)


def convert_classifier(source: SourceNetwork, *, preprocessing, options: ExportOptions,
                       append_softmax: bool, representative: np.ndarray | None) -> bytes:
    settings = dict(quantize=options.quantize, representative=representative,
                    io_type=options.io_type, per_channel_weights=options.per_channel_weights)
    if source.kind == "keras":
        export_model = graph.classifier_export_model(
            source.keras_model, preprocessing=preprocessing,
            include_preprocessing=options.include_preprocessing, append_softmax=append_softmax,
        )
        return convert.convert_keras(export_model, **settings)
    function = graph.saved_model_classifier_function(
        source.saved_model, preprocessing=preprocessing,
        include_preprocessing=options.include_preprocessing, append_softmax=append_softmax,
    )
    return convert.convert_concrete_function(
        function, source.saved_model, quantization_aware=source.quantization_aware, **settings
    )


# -- 4. the parity gate ---------------------------------------------------------------------


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """The evaluate stage's top-1 (ties broken by class index), so the gate judges an export
    exactly as ``edgeline evaluate`` would."""
    from edgeline.components.evaluate import top_k_correct

    return float(np.mean(top_k_correct(np.asarray(scores, np.float32), labels, 1)))


def classification_parity(*, source_probabilities: np.ndarray, export_probabilities: np.ndarray,
                          labels: np.ndarray, options: ExportOptions) -> dict[str, Any]:
    """Float32: max |p_export - p_source| <= float_tolerance. Quantized: top-1 drop <= budget.

    Both sets of figures are reported either way.
    """
    difference = float(np.max(np.abs(export_probabilities - source_probabilities)))
    top1_source = top1_accuracy(source_probabilities, labels)
    top1_export = top1_accuracy(export_probabilities, labels)
    agreement = float(np.mean(np.argmax(source_probabilities, -1)
                              == np.argmax(export_probabilities, -1)))
    figures = {
        "images": int(len(labels)),
        "max_abs_difference": difference,
        "top1_source": top1_source,
        "top1_export": top1_export,
        "top1_drop": top1_source - top1_export,
        "top1_agreement": agreement,
    }
    if options.quantize == "none":
        gate = {"figure": "max_abs_difference", "value": difference,
                "limit": options.float_tolerance}
    else:
        gate = {"figure": "top1_drop", "value": top1_source - top1_export,
                "limit": options.metric_budget("classification", top1_source)}
    # A tiny slack so that a drop of exactly the budget (one image of 50 is 0.02) passes.
    passed = gate["value"] <= gate["limit"] + 1e-9
    return {**figures, "gate": gate, "passed": bool(passed)}


def describe_gate(parity: dict[str, Any], quantize: str) -> str:
    gate = parity["gate"]
    verdict = "within" if parity["passed"] else "exceeds"
    line = (f"parity ({quantize}): {gate['figure']} = {gate['value']:.6g} {verdict} the limit "
            f"{gate['limit']:.6g}")
    extra = [f"{key} = {parity[key]:.4f}" for key in
             ("top1_source", "top1_export", "map_source", "map_export") if key in parity]
    return line + (f" ({', '.join(extra)}, {parity.get('images', 0)} held-out images)"
                   if extra else "")


# -- 5. the files that ship -----------------------------------------------------------------


def label_names(model_dir) -> list[str]:
    """Display names, one per output class, for apps (the text after a wnid or a category id)."""
    return list(model_dir.label_names)


def write_labels(output_dir: Path, model_dir) -> dict[str, Any]:
    names = label_names(model_dir)
    (output_dir / LABELS_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
    files = {"labels": LABELS_FILE}
    category_ids = model_dir.preprocessing.category_ids
    if category_ids is not None:
        (output_dir / CATEGORY_IDS_FILE).write_text(
            "\n".join(str(int(c)) for c in category_ids) + "\n", encoding="utf-8"
        )
        files["category_ids"] = CATEGORY_IDS_FILE
    return files


def latency_figures(model_content: bytes, options: ExportOptions) -> dict[str, Any]:
    """Median LiteRT latency (ms, batch 1) with one thread and with every core we may use."""
    threads_all = litert.all_threads()
    counts = sorted({1, threads_all})
    measured = litert.measure_latency(model_content, thread_counts=counts,
                                      warmup=options.latency_warmup, runs=options.latency_runs)
    return {
        "runtime": "ai_edge_litert",
        "threads_1_ms": measured[1],
        "threads_all_ms": measured[threads_all],
        "threads_all": threads_all,
        "warmup": options.latency_warmup,
        "runs": options.latency_runs,
        "statistic": "median",
    }


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


# -- the whole stage ------------------------------------------------------------------------


def _check_inputs(options: ExportOptions, task: str, examples_dir, quantization_aware: bool):
    if options.check_parity and examples_dir is None:
        raise UserError("the parity gate needs held-out images: give an Examples artifact "
                        "(--examples DIR), or turn the gate off (--no-parity-check)")
    if (options.quantize == "int8" and examples_dir is None and not quantization_aware):
        raise UserError("quantize='int8' calibrates on training images: give an Examples "
                        "artifact (--examples DIR); received none")
    if task == "detection" and options.io_type == "int8":
        raise UserError("io_type='int8' is for classifiers; a detector takes uint8 pixels and "
                        "returns float32 boxes and scores, as mobile detection APIs expect")


def run(*, model_dir: str | os.PathLike, output_dir: str | os.PathLike, options: ExportOptions,
        examples_dir: str | os.PathLike | None = None, seed: int = 0,
        log: Log | None = None) -> ExportResult:
    """Export ``model_dir`` (a Model artifact) to ``output_dir`` and check it.

    Args:
        model_dir: the Model artifact (train or compress output).
        output_dir: where ``model.tflite``, the label files and ``export.json`` go.
        options: see :class:`ExportOptions`.
        examples_dir: the Examples artifact: its ``representative_split`` calibrates int8,
            its ``parity_split`` feeds the parity gate.
        seed: picks the calibration images.
        log: progress lines (default: none).

    Raises:
        UserError: bad input, or a model with an op outside the TFLite builtin set.
        ParityGateFailed: the export does not match its source within the configured limits
            (after every file is written).
    """
    log = log or (lambda message: None)
    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = read_model_dir(model_dir)
    task = model.preprocessing.task
    source = load_source(model, options.source, log)  # 1.
    _check_inputs(options, task, examples_dir, source.quantization_aware)
    options = dataclasses.replace(
        options, include_preprocessing=options.include_preprocessing or task == "detection")
    heldout, representative = _gate_and_calibration_images(
        examples_dir, model.preprocessing, options, seed, log)
    if task == "classification":  # 2.-4.
        model_content, parity, extra = export_classifier(
            source, preprocessing=model.preprocessing, options=options, heldout=heldout,
            representative=representative, log=log,
        )
    else:
        from edgeline.components.export import detection

        model_content, parity, extra = detection.export_detector(
            source, model_dir=model, options=options, heldout=heldout,
            representative=representative, examples_dir=examples_dir, log=log,
        )
    report = _write_export(output_dir, model_content, model=model, model_dir=model_dir,
                           source=source, options=options, parity=parity, extra=extra,
                           started=started, log=log)  # 5.
    result = ExportResult(directory=output_dir, report=report)
    if options.check_parity:
        line = describe_gate(parity, options.quantize)
        log(f"export: {line}")
        if not parity["passed"]:
            raise ParityGateFailed(f"export refused: {line}", result)
    return result


def _gate_and_calibration_images(examples_dir, preprocessing, options: ExportOptions,
                                 seed: int, log: Log) -> tuple[ImageSet | None, Any]:
    """The held-out images of the parity gate (None without the gate) and the int8
    calibration set as the exported graph takes it (None unless int8 from Examples)."""
    task = preprocessing.task
    heldout = None
    if options.check_parity:
        heldout = load_images(examples_dir, task=task, split=options.parity_split,
                              preprocessing=preprocessing, count=options.parity_size)
        log(f"export: {len(heldout)} held-out images from '{options.parity_split}'")
    representative = None
    if options.quantize == "int8" and examples_dir is not None:
        import tensorflow as tf

        # tf.data combines a seeded shuffle's op seed with TF's global seed, which the train
        # stage sets and a fresh process does not: pin it, or the calibration images (and the
        # int8 file) depend on whether train ran earlier in this process.
        tf.random.set_seed(seed)
        calibration = load_images(examples_dir, task=task, split=options.representative_split,
                                  preprocessing=preprocessing, count=options.representative_size,
                                  shuffle_seed=seed)
        representative = _model_input(calibration.pixels, preprocessing,
                                      options.include_preprocessing)
        log(f"export: calibrating int8 on {len(calibration)} images from "
            f"'{options.representative_split}'")
    return heldout, representative


def _write_export(output_dir: Path, model_content: bytes, *, model, model_dir,
                  source: SourceNetwork, options: ExportOptions, parity: dict[str, Any],
                  extra: dict[str, Any], started: float, log: Log) -> dict[str, Any]:
    """Write ``model.tflite``, the label files and ``export.json``; return the report."""
    flex = flatbuffer.flex_operators(model_content)
    if flex:  # the converter runs with builtins only; this guards against a future default
        raise UserError(f"the export holds Select-TF (Flex) ops: {', '.join(flex)}")
    files = {"model": TFLITE_FILE, **write_labels(output_dir, model)}
    metadata_record = None
    if options.metadata:
        log("export: writing TFLite Model Metadata")
        model_content, metadata_record = _with_metadata(model_content, output_dir, model=model,
                                                        source=source, options=options)
    (output_dir / TFLITE_FILE).write_bytes(model_content)
    runtime = litert.LiteRTModel(model_content)
    report = {
        "format": "tflite",
        "edgeline_version": edgeline.__version__,
        "task": model.preprocessing.task,
        "files": files,
        "size_bytes": len(model_content),
        "quantize": options.quantize,
        "io_type": options.io_type,
        "preprocessing_inside": options.include_preprocessing,
        "preprocessing": model.preprocessing.to_json(),
        "source": {"kind": source.kind, "model_dir": os.fspath(model_dir),
                   "quantization_aware": source.quantization_aware},
        "inputs": runtime.input_details,
        "outputs": runtime.output_details,
        "operators": dict(sorted(flatbuffer.operator_names(model_content).items())),
        "tensor_types": flatbuffer.tensor_type_counts(model_content),
        "parity": parity,
        "metadata": metadata_record,
        "options": to_plain(options),
        **extra,
    }
    if options.measure_latency:
        log("export: measuring LiteRT latency")
        report["latency"] = latency_figures(model_content, options)
    report["seconds"] = round(time.time() - started, 2)
    _write_json(output_dir / REPORT_FILE, report)
    return report


def _with_metadata(model_content: bytes, output_dir: Path, *, model, source: SourceNetwork,
                   options: ExportOptions) -> tuple[bytes, dict[str, Any]]:
    """The file with its TFLite Model Metadata (:mod:`.metadata`), and what was written."""
    from edgeline.components.export import metadata

    task = model.preprocessing.task
    network = source.keras_model.name if source.keras_model is not None else "saved_model"
    general = metadata.general_metadata(options, task=task, network=network,
                                        labels=label_names(model))
    return metadata.write_metadata(model_content, task=task,
                                   labels_path=output_dir / LABELS_FILE,
                                   preprocessing=model.preprocessing,
                                   pixels_in=options.include_preprocessing, general=general)


def export_classifier(source: SourceNetwork, *, preprocessing, options: ExportOptions,
                      heldout: ImageSet | None, representative, log: Log):
    """Convert a classifier and (with held-out images) run its parity gate: the ``.tflite``
    bytes, the parity figures, and the report's extra fields. :func:`run` calls it on a Model
    artifact; it also takes a network held in memory
    (``SourceNetwork("keras", model, None, False)``)."""
    probe = heldout.pixels if heldout is not None else _probe_pixels(preprocessing)
    source_scores = source_outputs(source, probe, preprocessing)
    append_softmax = not graph.is_probability(source_scores)
    log(f"export: converting ({options.quantize}) from {source.kind}")
    model_content = convert_classifier(source, preprocessing=preprocessing, options=options,
                                       append_softmax=append_softmax,
                                       representative=representative)
    extra = {"outputs_are": "probabilities", "softmax_appended": append_softmax}
    if heldout is None:
        return model_content, {"checked": False, "passed": True}, extra
    source_probabilities = graph.softmax(source_scores) if append_softmax else source_scores
    runtime = litert.LiteRTModel(model_content)
    (export_probabilities,) = runtime.predict(
        _model_input(heldout.pixels, preprocessing, options.include_preprocessing)
    )
    parity = classification_parity(
        source_probabilities=source_probabilities, export_probabilities=export_probabilities,
        labels=heldout.labels, options=options,
    )
    return model_content, {"checked": True, **parity}, extra


def _probe_pixels(preprocessing, count: int = 8) -> np.ndarray:
    """Random pixels, only to see whether a classifier returns logits or probabilities."""
    height, width = (int(s) for s in preprocessing.input_size)
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)
