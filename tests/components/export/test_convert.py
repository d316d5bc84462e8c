"""Conversion: the four quantization modes, QAT models, and one clear line for a bad op."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common import litert
from edgeline.components.export import convert, flatbuffer
from edgeline.pipeline.errors import UserError


def conv_net(name: str = "conv_net"):
    """Big enough (a 16k-weight dense layer) that dynamic-range quantization applies."""
    import tf_keras as keras

    inputs = keras.Input((16, 16, 3), name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(512, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def calibration():
    return np.random.default_rng(1).standard_normal((32, 16, 16, 3)).astype(np.float32)


def test_each_mode_gives_its_weight_type_and_size(calibration):
    model = conv_net()
    expected = model(calibration).numpy()
    exports = {mode: convert.convert_keras(model, quantize=mode, representative=calibration)
               for mode in convert.QUANTIZE_MODES}
    types = {mode: flatbuffer.tensor_type_counts(content) for mode, content in exports.items()}
    assert "float16" in types["float16"] and "int8" not in types["float16"]
    assert "int8" in types["dynamic"]
    assert types["int8"]["int8"] > types["dynamic"]["int8"]  # activations too
    sizes = {mode: len(content) for mode, content in exports.items()}
    assert sizes["float16"] < 0.6 * sizes["none"]
    assert sizes["dynamic"] < 0.4 * sizes["none"] and sizes["int8"] < 0.4 * sizes["none"]
    for mode, content in exports.items():
        (outputs,) = litert.LiteRTModel(content).predict(calibration)
        tolerance = {"none": 1e-5, "float16": 2e-3, "dynamic": 3e-2, "int8": 3e-2}[mode]
        np.testing.assert_allclose(outputs, expected, atol=tolerance, err_msg=mode)
        assert flatbuffer.flex_operators(content) == []


def test_int8_inputs_and_outputs_when_asked(calibration):
    content = convert.convert_keras(conv_net(), quantize="int8", representative=calibration,
                                    io_type="int8")
    runtime = litert.LiteRTModel(content)
    assert [d["dtype"] for d in runtime.input_details + runtime.output_details] == ["int8"] * 2
    assert runtime.input_details[0]["signature_name"] == "images"


def test_full_integer_needs_calibration_data_or_qat():
    with pytest.raises(UserError, match="representative set"):
        convert.convert_keras(conv_net(), quantize="int8")
    with pytest.raises(UserError, match="io_type='int8' needs quantize='int8'"):
        convert.convert_keras(conv_net(), quantize="dynamic", io_type="int8")
    with pytest.raises(UserError, match="unknown quantization"):
        convert.convert_keras(conv_net(), quantize="int4")


def test_quantization_aware_model_is_integer_without_calibration(calibration):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    qat = tfmot.quantization.keras.quantize_model(conv_net())
    qat.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    targets = np.eye(5, dtype=np.float32)[np.arange(len(calibration)) % 5]
    qat.fit(calibration, targets, epochs=1, batch_size=8, verbose=0)  # ranges from data
    assert convert.is_quantization_aware(qat)
    content = convert.convert_keras(qat, quantize="int8", io_type="int8")
    assert flatbuffer.tensor_type_counts(content)["int8"] >= 8
    (outputs,) = litert.LiteRTModel(content).predict(calibration)
    np.testing.assert_allclose(outputs, qat(calibration).numpy(), atol=0.02)


def _model_with_matrix_inverse():
    import tensorflow as tf
    import tf_keras as keras

    class BoxWarp(keras.layers.Layer):
        """Inverts a 2x2 matrix per example: tf.linalg.inv has no TFLite builtin kernel."""

        def call(self, features):
            matrix = tf.reshape(features[:, :4], (-1, 2, 2)) + tf.eye(2)
            return tf.reshape(tf.linalg.inv(matrix), (-1, 4))  # (N, 4)

    inputs = keras.Input((8,), name="features")
    x = keras.layers.Dense(8, name="project")(inputs)
    x = keras.Sequential([BoxWarp(name="box_warp")], name="refiner")(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="warper")


def test_an_op_outside_the_builtin_set_is_one_line_naming_op_and_layer(capfd):
    with pytest.raises(convert.ConversionError) as caught:
        convert.convert_keras(_model_with_matrix_inverse())
    message = str(caught.value)
    assert "\n" not in message
    assert "tf.MatrixInverse" in message
    assert "layer 'refiner/box_warp' (BoxWarp)" in message
    assert "Select-TF/Flex" in message
    assert isinstance(caught.value, UserError)  # the CLI prints it as one line, exit code 2
    # The converter's pages of MLIR diagnostics stay out of the user's terminal.
    assert "loc(callsite" not in capfd.readouterr().err


def test_a_saved_model_signature_converts_with_its_names(calibration, tmp_path):
    import tensorflow as tf

    model = conv_net()
    spec = tf.TensorSpec([None, 16, 16, 3], tf.float32, name="images")
    serve = tf.function(lambda images: {"scores": model(images, training=False)},
                        input_signature=[spec])
    tf.saved_model.save(model, str(tmp_path / "saved_model"),
                        signatures={"serving_default": serve.get_concrete_function()})
    content = convert.convert_saved_model(tmp_path / "saved_model")
    runtime = litert.LiteRTModel(content)
    assert runtime.input_details[0]["signature_name"] == "images"
    assert runtime.output_details[0]["signature_name"] == "scores"
    (outputs,) = runtime.predict(calibration)
    np.testing.assert_allclose(outputs, model(calibration).numpy(), atol=1e-5)
    with pytest.raises(UserError, match="no signature 'predict'"):
        convert.convert_saved_model(tmp_path / "saved_model", signature_key="predict")


def test_selected_ops_stay_float_in_a_full_integer_model(calibration):
    """``float_nodes``: a detector's decoding stays float32 while its network is int8 (what
    components/export/detection.py asks for); the float part then computes in float."""
    import tf_keras as keras

    inputs = keras.Input((16, 16, 3), name="images")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(4, name="logits")(x)
    scores = keras.layers.Activation("sigmoid", name="decode_scores")(logits)
    # Not the last op: an op that makes an output is named by the signature, not its layer.
    model = keras.Model(inputs, keras.layers.Reshape((2, 2), name="decode_reshape")(scores))

    def types_of(content, op_name):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=content)
        tensors = interpreter.get_tensor_details()
        return {tensors[index]["dtype"].__name__
                for op in interpreter._get_ops_details() if op["op_name"] == op_name  # noqa: SLF001
                for index in op["outputs"]}

    everything = convert.convert_keras(model, quantize="int8", representative=calibration)
    selective = convert.convert_keras(model, quantize="int8", representative=calibration,
                                      float_nodes=lambda name: "decode_" in name)
    assert types_of(everything, "LOGISTIC") == {"int8"}
    assert types_of(selective, "LOGISTIC") == {"float32"}
    assert types_of(selective, "CONV_2D") == {"int8"}  # the network stays integer
    expected = model(calibration).numpy()
    (outputs,) = litert.LiteRTModel(selective).predict(calibration)
    np.testing.assert_allclose(outputs, expected, atol=3e-2)
    # An int8 sigmoid's outputs lie on a grid of 1/256; the float one's do not.
    (integer_outputs,) = litert.LiteRTModel(everything).predict(calibration)

    def off_grid(values):
        return np.abs(values * 256 - np.round(values * 256)) > 1e-3

    assert not off_grid(integer_outputs).any() and off_grid(outputs).mean() > 0.9
    with pytest.raises(UserError, match="selected no op"):
        convert.convert_keras(model, quantize="int8", representative=calibration,
                              float_nodes=lambda name: False)
