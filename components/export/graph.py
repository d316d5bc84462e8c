"""The graph that goes into the ``.tflite``: the trained network plus what an app needs around it.

Around the network, as the user asks:

* preprocessing: uint8 RGB pixels in, ``(pixels / 255 - mean) / std`` computed inside as one
  multiply and one add (``pixels * 1/(255 std) - mean/std``), so an app feeds camera pixels;
* classifiers: a softmax when the network returns logits, so the output is class
  probabilities, as the TFLite Task Library's image classifier expects;
* detectors: the network's decoding and non-max suppression
  (``edgeline.models.detector.decode_detections``, TFLite builtin ops only), with fixed-size
  outputs ``detection_boxes (1, K, 4)``, ``detection_classes (1, K)``,
  ``detection_scores (1, K)``, ``num_detections (1,)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.pipeline.errors import UserError

# The TF Object Detection API's names, in its order (which is also their sorted order, the
# order the converter gives a signature's outputs).
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores",
                     "num_detections")


def _keras():
    import tf_keras

    return tf_keras


def pixel_normalization_layer(mean: Sequence[float], std: Sequence[float]):
    """A layer computing ``(pixels / 255 - mean) / std`` from uint8 (or float) pixels."""
    import tensorflow as tf

    keras = _keras()
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).astype(np.float32)  # (3,)
    offset = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)

    class PixelNormalization(keras.layers.Layer):
        def call(self, pixels):
            return tf.cast(pixels, tf.float32) * scale + offset  # (N, H, W, 3)

    return PixelNormalization(name="pixel_normalization")


def is_probability(scores: np.ndarray) -> bool:
    """Whether a classifier's outputs on real inputs are already probabilities (non-negative
    rows summing to one): read from what it computes rather than from its layer classes, so
    QAT-wrapped, SavedModel and custom heads are judged alike."""
    scores = np.asarray(scores, np.float64)
    return bool(np.all(scores >= -1e-6) and np.allclose(scores.sum(axis=-1), 1.0, atol=1e-3))


def classifier_export_model(model, *, preprocessing, include_preprocessing: bool,
                            append_softmax: bool):
    """The classifier as exported: optional uint8 pixel input, optional softmax."""
    import tensorflow as tf

    keras = _keras()
    height, width = (int(s) for s in preprocessing.input_size)
    if include_preprocessing:
        pixels = keras.Input((height, width, 3), dtype=tf.uint8, name="pixels")
        images = pixel_normalization_layer(preprocessing.mean, preprocessing.std)(pixels)
        inputs = pixels
    else:
        inputs = images = keras.Input((height, width, 3), dtype=tf.float32, name="images")
    outputs = model(images, training=False)
    if append_softmax:
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    if not include_preprocessing and not append_softmax:
        return model
    return keras.Model(inputs, outputs, name=f"{model.name}_export")


def saved_model_classifier_function(loaded, *, preprocessing, include_preprocessing: bool,
                                     append_softmax: bool):
    """The classifier as exported from a SavedModel's ``serving_default`` (which takes
    normalized float32 ``images``): a concrete function with the same options as
    :func:`classifier_export_model`."""
    import tensorflow as tf

    serve = loaded.signatures["serving_default"]
    height, width = (int(s) for s in preprocessing.input_size)
    normalize = pixel_normalization_layer(preprocessing.mean, preprocessing.std)
    dtype = tf.uint8 if include_preprocessing else tf.float32
    name = "pixels" if include_preprocessing else "images"

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], dtype, name=name)])
    def exported(inputs):
        images = normalize(inputs) if include_preprocessing else inputs
        outputs = serve(images=images)
        if len(outputs) != 1:
            raise UserError(f"a classifier's serving_default must return one tensor; it "
                            f"returns {sorted(outputs)}")
        scores = next(iter(outputs.values()))  # (N, classes)
        return {"probabilities": tf.nn.softmax(scores) if append_softmax else scores}

    return exported.get_concrete_function()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
