"""Exporting a detector: uint8 pixels in, fixed-size detections out, all in TFLite builtin ops.

The exported graph is ``pixels (1, H, W, 3) uint8`` -> normalization -> the network ->
``edgeline.models.detector.decode_detections`` (sigmoid scores, top-k, per-class hard or soft
NMS with NON_MAX_SUPPRESSION_V5) -> four float32 outputs, named and ordered as the TF Object
Detection API's SSD exports that the TFLite Task Library and MediaPipe read:

    detection_boxes   (1, K, 4)  normalized [ymin, xmin, ymax, xmax]
    detection_classes (1, K)     0-based class index (category_ids.txt maps it to the id)
    detection_scores  (1, K)
    num_detections    (1,)       how many of the K rows are detections

For int8 the network is integer and the decoding stays float (sigmoid, exponential, top-k,
NMS), as in the SSD exports: quantized, it ranked and placed the detections coarsely enough to
cost a fifth of the demo detector's mAP (:func:`is_decoding_node`). The parity gate compares COCO box mAP@[.5:.95] of the ``.tflite`` in LiteRT
with that of the same graph run by TensorFlow, on the held-out split's ground truth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.common import litert
from edgeline.components.export import convert, flatbuffer, graph
from edgeline.components.export.data import ImageSet
from edgeline.pipeline.errors import UserError

DETECTION_OUTPUTS = graph.DETECTION_OUTPUTS
BOXES, CLASSES, SCORES, COUNT = DETECTION_OUTPUTS


def decoding_settings(preprocessing, max_detections: int | None) -> dict[str, Any]:
    """``decode_detections`` keyword arguments from preprocessing.json, with the export's
    number of detection slots."""
    settings = dict(preprocessing.decoding or {})
    settings["input_size"] = tuple(int(s) for s in settings.get("input_size",
                                                                 preprocessing.input_size))
    if "strides" in settings:
        settings["strides"] = tuple(int(s) for s in settings["strides"])
    if max_detections is not None:
        settings["max_detections"] = int(max_detections)
    return settings


def _decode_layer(settings: dict[str, Any]):
    import tensorflow as tf
    import tf_keras as keras

    from edgeline.models import detector

    class DecodeDetections(keras.layers.Layer):
        """decode_detections as a layer, its four outputs float32 in the SSD order. It takes
        the raw ``(N, A, 5 + C)`` tensor, or its three parts (``detector.head_outputs``)."""

        # Plain graph code, no Python control flow on tensors: autograph would only rewrite it
        # (and mixes up the keyword dictionaries of the nested calls).
        @tf.autograph.experimental.do_not_convert
        def call(self, raw_outputs, training=None):
            if isinstance(raw_outputs, list | tuple):
                decoded = detector.decode_head_outputs(*raw_outputs, **settings)
            else:
                decoded = detector.decode_detections(raw_outputs, **settings)
            return [
                tf.cast(decoded["boxes"], tf.float32),  # (1, K, 4)
                tf.cast(decoded["classes"], tf.float32),  # (1, K)
                tf.cast(decoded["scores"], tf.float32),  # (1, K)
                tf.cast(decoded["num_detections"], tf.float32),  # (1,)
            ]

    return DecodeDetections(name="decode_detections")


def is_decoding_node(tensor_name: str) -> bool:
    """The ops of the decoding layer and those making the four outputs: they stay float32 in
    an int8 export (:func:`edgeline.components.export.convert.quantize_selectively`)."""
    return "decode_detections" in tensor_name or tensor_name in DETECTION_OUTPUTS


def detector_export_model(model, *, preprocessing, settings: dict[str, Any]):
    """The Keras graph that ships: uint8 pixels, batch 1 (NMS runs per image)."""
    import tensorflow as tf
    import tf_keras as keras

    from edgeline.models import detector

    height, width = (int(s) for s in preprocessing.input_size)
    pixels = keras.Input((height, width, 3), batch_size=1, dtype=tf.uint8, name="pixels")
    images = graph.pixel_normalization_layer(preprocessing.mean, preprocessing.std)(pixels)
    heads = detector.head_outputs(model)
    # The three predictions apart where the network has them (each then gets its own int8
    # scale), else the raw tensor.
    raw = heads(images, training=False) if heads is not None else model(images, training=False)
    outputs = _decode_layer(settings)(raw)
    named = {name: keras.layers.Identity(name=name)(tensor)
             for name, tensor in zip(DETECTION_OUTPUTS, outputs)}
    return keras.Model(pixels, named, name=f"{model.name}_export")


def saved_model_detector_function(loaded, *, preprocessing, settings: dict[str, Any]):
    """The same graph around a SavedModel's ``serving_default`` (raw outputs)."""
    import tensorflow as tf

    serve = loaded.signatures["serving_default"]
    height, width = (int(s) for s in preprocessing.input_size)
    normalize = graph.pixel_normalization_layer(preprocessing.mean, preprocessing.std)
    decode = _decode_layer(settings)

    @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8, name="pixels")])
    def exported(pixels):
        outputs = serve(images=normalize(pixels))
        if len(outputs) != 1:
            raise UserError(f"a detector's serving_default must return its one raw output; "
                            f"it returns {sorted(outputs)}")
        raw = next(iter(outputs.values()))  # (1, A, 5 + C)
        return dict(zip(DETECTION_OUTPUTS, decode(raw)))

    return exported.get_concrete_function()


def _as_outputs(values) -> dict[str, np.ndarray]:
    if isinstance(values, dict):
        return {name: np.asarray(values[name]) for name in DETECTION_OUTPUTS}
    return {name: np.asarray(v) for name, v in zip(DETECTION_OUTPUTS, values)}


def run_tensorflow(function, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The export graph run by TensorFlow (the source side of the gate), image by image."""
    import tensorflow as tf

    if not isinstance(function, tf.types.experimental.ConcreteFunction):
        function = tf.function(function)  # traced once: eager per-image calls are slow
    per_image = [_as_outputs(function(tf.constant(pixels[i:i + 1])))
                 for i in range(len(pixels))]
    return {name: np.concatenate([p[name] for p in per_image]) for name in DETECTION_OUTPUTS}


def run_litert(model_content: bytes, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The ``.tflite`` in LiteRT, image by image; outputs matched by their signature names."""
    runtime = litert.LiteRTModel(model_content)
    names = runtime.output_names
    if sorted(names) != sorted(DETECTION_OUTPUTS):
        raise UserError(f"the exported detector's outputs are {names}; expected "
                        f"{list(DETECTION_OUTPUTS)}")
    per_image = [dict(zip(names, runtime.invoke(pixels[i:i + 1]))) for i in range(len(pixels))]
    return {name: np.concatenate([p[name] for p in per_image]) for name in DETECTION_OUTPUTS}


def output_order(model_content: bytes) -> list[str]:
    """The serving signature's output names in the order of the model's output tensors."""
    return litert.LiteRTModel(model_content).output_names


def to_coco(detections: dict[str, np.ndarray], images: ImageSet,
            category_ids: tuple[int, ...]) -> list[dict]:
    """COCO result rows through the shared conversion, the evaluate stage's: the whole image was
    resized, so a normalized box times the original width and height is the pixel box; class
    index ``c`` is ``category_ids[c]``."""
    from edgeline.common.coco_detections import image_id_of, to_coco_detections

    decoded = {
        "boxes": np.asarray(detections[BOXES], np.float32),
        "scores": np.asarray(detections[SCORES], np.float32),
        "classes": np.rint(detections[CLASSES]).astype(np.int64),
        "num_detections": np.rint(detections[COUNT]).reshape(-1).astype(np.int64),
    }
    return to_coco_detections(
        decoded, image_ids=[image_id_of(s) for s in images.source_ids],
        heights=[int(h) for h, _ in images.original_sizes],
        widths=[int(w) for _, w in images.original_sizes], category_ids=category_ids,
    )


def box_map(ground_truth: dict, detections: list[dict]) -> float:
    """COCO box AP@[.5:.95], the evaluate stage's metric (pycocotools' numbers)."""
    from edgeline.common.coco import evaluate_detections

    return float(evaluate_detections(ground_truth, detections, iou_type="bbox").summary["AP"])


def held_out_ground_truth(path: Path, image_ids) -> dict:
    """The split's COCO ground truth restricted to the images the gate ran on (an image left
    out would otherwise count all its objects as missed)."""
    ground_truth = json.loads(path.read_text(encoding="utf-8"))
    keep = set(image_ids)
    missing = keep - {image["id"] for image in ground_truth.get("images", ())}
    if missing:
        raise UserError(f"{path} has no image with id {sorted(missing)[0]}, which the held-out "
                        "TFRecords name; the ground truth and the shards do not match")
    return {
        **ground_truth,
        "images": [image for image in ground_truth["images"] if image["id"] in keep],
        "annotations": [a for a in ground_truth.get("annotations", ())
                        if a["image_id"] in keep],
    }


def annotations_path(examples_dir, split: str) -> Path:
    path = Path(os.fspath(examples_dir)) / f"{split}_annotations.json"
    if not path.is_file():
        raise UserError(f"the detector's parity gate needs the COCO ground truth {path}; "
                        "the Examples artifact has none")
    return path


def detection_parity(*, map_source: float, map_export: float, images: int,
                     quantize: str, options) -> dict[str, Any]:
    """Float32: |mAP_export - mAP_source| <= float_map_tolerance. Quantized: the drop
    mAP_source - mAP_export <= the metric budget."""
    if quantize == "none":
        gate = {"figure": "map_difference", "value": abs(map_export - map_source),
                "limit": options.float_map_tolerance}
    else:
        gate = {"figure": "map_drop", "value": map_source - map_export,
                "limit": options.metric_budget("detection", map_source)}
    return {
        "checked": True,
        "images": images,
        "map_source": map_source,
        "map_export": map_export,
        "map_drop": map_source - map_export,
        "map_ratio": map_export / map_source if map_source > 0 else None,
        "gate": gate,
        "passed": bool(gate["value"] <= gate["limit"] + 1e-9),
    }


def export_detector(source, *, model_dir, options, heldout: ImageSet | None,
                    representative: np.ndarray | None, examples_dir, log):
    """Convert a detector with its decoding and (with held-out images) gate it on mAP."""
    preprocessing = model_dir.preprocessing
    settings = decoding_settings(preprocessing, options.max_detections)
    if source.kind == "keras":
        export_model = detector_export_model(source.keras_model, preprocessing=preprocessing,
                                             settings=settings)
        function = export_model
        log(f"export: converting detector ({options.quantize}) from keras")
        model_content = convert.convert_keras(
            export_model, quantize=options.quantize, representative=representative,
            allow_float_ops=True, float_nodes=is_decoding_node,
            per_channel_weights=options.per_channel_weights,
        )
    else:
        function = saved_model_detector_function(source.saved_model,
                                                 preprocessing=preprocessing, settings=settings)
        log(f"export: converting detector ({options.quantize}) from saved_model")
        model_content = convert.convert_concrete_function(
            function, source.saved_model, quantize=options.quantize,
            representative=representative, allow_float_ops=True,
            quantization_aware=source.quantization_aware, float_nodes=is_decoding_node,
            per_channel_weights=options.per_channel_weights,
        )
    # Apps that read outputs by position expect the SSD order.
    model_content = flatbuffer.reorder_outputs(model_content, DETECTION_OUTPUTS)
    extra = {
        "detection": {
            "outputs": list(DETECTION_OUTPUTS),
            "max_detections": int(settings.get("max_detections", 100)),
            "decoding": json.loads(json.dumps(settings)),
            "category_ids": [int(c) for c in preprocessing.category_ids],
            "box_format": "ymin, xmin, ymax, xmax (normalized)",
        }
    }
    if heldout is None:
        return model_content, {"checked": False, "passed": True}, extra
    from edgeline.common.coco_detections import image_id_of

    ground_truth = held_out_ground_truth(
        annotations_path(examples_dir, options.parity_split),
        [image_id_of(s) for s in heldout.source_ids],
    )
    category_ids = tuple(preprocessing.category_ids)
    map_source = box_map(ground_truth, to_coco(run_tensorflow(function, heldout.pixels), heldout,
                                               category_ids))
    map_export = box_map(ground_truth, to_coco(run_litert(model_content, heldout.pixels),
                                               heldout, category_ids))
    parity = detection_parity(map_source=map_source, map_export=map_export,
                              images=len(heldout), quantize=options.quantize, options=options)
    return model_content, parity, extra
