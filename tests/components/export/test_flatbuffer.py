"""Reading and editing a .tflite flatbuffer: its ops, tensor types, output order."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common import litert
from edgeline.components.export import convert, flatbuffer


def small_model(outputs: int = 1):
    import tf_keras as keras

    inputs = keras.Input((12, 12, 3), name="images")
    features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    heads = [keras.layers.Dense(3 + i, name=f"head_{chr(ord('a') + i)}")(features)
             for i in range(outputs)]
    return keras.Model(inputs, heads if outputs > 1 else heads[0], name="small")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).standard_normal((10, 12, 12, 3)).astype(np.float32)


def test_operator_names_come_from_the_flatbuffer(images):
    content = convert.convert_keras(small_model(), quantize="int8", representative=images)
    operators = flatbuffer.operator_names(content)
    assert operators["CONV_2D"] == 1 and operators["FULLY_CONNECTED"] == 1
    assert operators["QUANTIZE"] >= 1  # float input quantized inside
    assert flatbuffer.flex_operators(content) == []
    assert flatbuffer.tensor_type_counts(content)["int8"] >= 4


def test_reorder_outputs_moves_tensors_not_values(images):
    content = convert.convert_keras(small_model(outputs=2))
    before = litert.LiteRTModel(content)
    names = [d["signature_name"] for d in before.output_details]
    values = dict(zip(names, before.predict(images)))
    reordered = flatbuffer.reorder_outputs(content, list(reversed(names)))
    after = litert.LiteRTModel(reordered)
    assert [d["signature_name"] for d in after.output_details] == list(reversed(names))
    for name, value in zip(reversed(names), after.predict(images)):
        np.testing.assert_array_equal(value, values[name])
    with pytest.raises(ValueError, match="received order"):
        flatbuffer.reorder_outputs(content, ["head_a"])
