"""One predictor interface for a Keras model, a SavedModel and .tflite files run in LiteRT
(float, and int8 with quantized inputs and outputs)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.evaluate import predictors
from edgeline.pipeline.errors import UserError

# Builds, saves and converts (float and int8) a network: ~30 s on two cores.
pytestmark = pytest.mark.slow

INPUT_SIZE = (16, 16)
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small conv net, its SavedModel, and float and int8 TFLite conversions of it."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.layers.Input((*INPUT_SIZE, 3)),
        keras.layers.Conv2D(6, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(NUM_CLASSES),
    ])
    root = tmp_path_factory.mktemp("predictors")
    saved_model = root / "saved_model"
    spec = tf.TensorSpec([None, *INPUT_SIZE, 3], tf.float32, name="images")
    module = tf.Module()
    module.model = model
    module.serve = tf.function(lambda images: {"logits": model(images, training=False)},
                               input_signature=[spec])
    tf.saved_model.save(module, str(saved_model), signatures={"serving_default": module.serve})
    keras_path = root / "model.keras"
    model.save(str(keras_path), save_format="keras")

    float_path = root / "float.tflite"
    float_path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())

    rng = np.random.default_rng(0)
    calibration = rng.normal(size=(32, *INPUT_SIZE, 3)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None]] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8_path = root / "int8.tflite"
    int8_path.write_bytes(converter.convert())
    images = rng.normal(size=(10, *INPUT_SIZE, 3)).astype(np.float32)
    return {"model": model, "keras": keras_path, "saved_model": saved_model,
            "float": float_path, "int8": int8_path, "images": images}


def _single(outputs: dict) -> np.ndarray:
    assert len(outputs) == 1
    return next(iter(outputs.values()))


def test_forms_are_detected(small_model):
    assert predictors.detect_form(small_model["keras"]) == "keras"
    assert predictors.detect_form(small_model["saved_model"]) == "saved_model"
    assert predictors.detect_form(small_model["float"]) == "tflite"
    with pytest.raises(UserError, match="model="):
        predictors.detect_form(small_model["saved_model"] / "variables")


def test_every_form_gives_the_keras_outputs(small_model):
    images = small_model["images"]
    expected = small_model["model"](images, training=False).numpy()  # (10, C)
    for form in ("keras", "saved_model", "float"):
        predictor = predictors.load_predictor(small_model[form])
        outputs = _single(predictors.predict_batches(predictor, images, batch_size=4))
        assert outputs.shape == (10, NUM_CLASSES) and outputs.dtype == np.float32
        np.testing.assert_allclose(outputs, expected, atol=1e-5, err_msg=form)


def test_float_tflite_runs_batched_in_one_call(small_model):
    predictor = predictors.load_predictor(small_model["float"])
    assert isinstance(predictor, predictors.TFLitePredictor) and predictor.batchable
    seen = []
    predictors.predict_batches(predictor, small_model["images"], batch_size=4,
                               on_batch=seen.append)
    assert seen == [4, 4, 2]
    assert predictor.input_size == INPUT_SIZE


def test_int8_tflite_quantizes_inputs_and_dequantizes_outputs(small_model):
    predictor = predictors.load_predictor(small_model["int8"])
    assert predictor.input_dtype == np.int8
    images = small_model["images"]
    outputs = _single(predictor.predict(images))
    expected = small_model["model"](images, training=False).numpy()
    assert outputs.dtype == np.float32
    # Dequantized outputs are on the float model's scale: close to it, not raw int8 codes.
    spread = expected.max() - expected.min()
    assert np.abs(outputs - expected).max() < 0.15 * spread + 0.05
    assert (np.argmax(outputs, 1) == np.argmax(expected, 1)).mean() >= 0.7


def test_bad_inputs_are_user_errors(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="broken.tflite"):
        predictors.load_predictor(broken)
    with pytest.raises(UserError, match="form="):
        predictors.load_predictor(broken, form="onnx")
