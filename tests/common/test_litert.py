"""The shared LiteRT runner: quantization of inputs/outputs, batching, latency, a policy."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common import litert
from edgeline.components.export import convert


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


def test_quantize_then_dequantize_is_within_half_a_step():
    values = np.linspace(-3.0, 3.0, 101, dtype=np.float32)
    scale, zero_point = 0.05, 3
    quantized = litert.quantize(values, scale=scale, zero_point=zero_point, dtype=np.int8)
    assert quantized.dtype == np.int8
    restored = litert.dequantize(quantized, scale=scale, zero_point=zero_point)
    inside = (values > (-128 - zero_point) * scale) & (values < (127 - zero_point) * scale)
    assert np.max(np.abs(restored - values)[inside]) <= scale / 2 + 1e-6
    # Values past the int8 range saturate instead of wrapping around.
    assert litert.quantize(np.array([1e6, -1e6]), scale=scale, zero_point=0,
                           dtype=np.int8).tolist() == [127, -128]


def test_quantize_dequantize_follow_the_affine_spec():
    values = np.array([-1.0, 0.0, 0.5, 10.0], np.float32)
    quantized = litert.quantize(values, scale=0.01, zero_point=-3, dtype=np.int8)
    np.testing.assert_array_equal(quantized, [-103, -3, 47, 127])  # 10.0 saturates
    restored = litert.dequantize(quantized, scale=0.01, zero_point=-3)
    np.testing.assert_allclose(restored[:3], values[:3], atol=1e-6)


def test_int8_model_quantizes_inputs_and_dequantizes_outputs(images):
    model = small_model()
    content = convert.convert_keras(model, quantize="int8", representative=images,
                                    io_type="int8")
    runtime = litert.LiteRTModel(content)
    (input_spec,), (output_spec,) = runtime.input_details, runtime.output_details
    assert input_spec["dtype"] == "int8" and input_spec["quantization"]["scale"] > 0
    assert output_spec["dtype"] == "int8" and output_spec["signature_name"] == "head_a"
    (floats,) = runtime.predict(images)
    (raw,) = runtime.predict(images, raw=True)
    assert raw.dtype == np.int8 and floats.dtype == np.float32
    q = output_spec["quantization"]
    np.testing.assert_allclose(floats, q["scale"] * (raw.astype(np.float32) - q["zero_point"]))
    # An int8 model approximates the float one: within a few quantization steps.
    np.testing.assert_allclose(floats, model(images).numpy(), atol=8 * q["scale"])


def test_batched_predict_equals_one_image_at_a_time(images):
    runtime = litert.LiteRTModel(convert.convert_keras(small_model()))
    assert runtime.batchable
    (batched,) = runtime.predict(images, batch_size=4)
    single = np.concatenate([runtime.invoke(images[i:i + 1])[0] for i in range(len(images))])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)


def test_latency_is_a_positive_median_per_thread_count():
    content = convert.convert_keras(small_model())
    measured = litert.measure_latency(content, thread_counts=[1, litert.all_threads()],
                                      warmup=1, runs=5)
    assert set(measured) == {1, litert.all_threads()}
    assert all(0.0 < ms < 1000.0 for ms in measured.values())
    with pytest.raises(ValueError, match="runs"):
        litert.LiteRTModel(content).latency_ms(runs=0)


def _pixel_model():
    """uint8 pixels in (no quantization parameters), their float mean per channel out."""
    import tf_keras as keras

    pixels = keras.Input((4, 4, 3), dtype="uint8", name="pixels")
    floats = keras.layers.Lambda(lambda x: keras.backend.cast(x, "float32"))(pixels)
    return keras.Model(pixels, keras.layers.GlobalAveragePooling2D(name="mean")(floats))


def test_floats_for_an_unquantized_integer_input_are_rounded_into_its_range():
    runtime = litert.LiteRTModel(convert.convert_keras(_pixel_model()))
    (spec,) = runtime.input_details
    assert spec["dtype"] == "uint8" and spec["quantization"] is None
    values = np.full((1, 4, 4, 3), 2.6, np.float32)
    values[..., 1], values[..., 2] = -7.0, 300.0
    (means,) = runtime.invoke(values)
    np.testing.assert_array_equal(means, [[3.0, 0.0, 255.0]])
    pixels = np.full((1, 4, 4, 3), 9, np.uint8)
    np.testing.assert_array_equal(runtime.invoke(pixels)[0], [[9.0, 9.0, 9.0]])


def test_output_names_are_the_signature_names(images):
    runtime = litert.LiteRTModel(convert.convert_keras(small_model(outputs=2)))
    assert sorted(runtime.output_names) == ["head_a", "head_b"]
    assert runtime.output_names == [d["signature_name"] for d in runtime.output_details]


def test_a_policy_network_gives_the_argmax_of_its_action_values(tmp_path, images):
    path = tmp_path / "policy.tflite"
    path.write_bytes(convert.convert_keras(small_model()))
    policy = litert.TFLitePolicy(path)
    assert list(policy.input_details["shape"]) == [1, 12, 12, 3]
    values = policy.action_values(images[0])  # (3,)
    assert values.shape == (3,)
    np.testing.assert_array_equal(values, litert.LiteRTModel(path).invoke(images[:1])[0][0])
    assert policy.action(images[0]) == int(np.argmax(values))


def test_an_unreadable_model_is_a_user_error(tmp_path):
    from edgeline.pipeline.errors import UserError

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    with pytest.raises(UserError, match="broken.tflite"):
        litert.LiteRTModel(broken)
