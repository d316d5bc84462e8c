"""Stochastic depth (acceptance 2) and the other shared layers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from edgeline import models
from edgeline.models.layers import (
    ChannelZeroPad,
    StochasticDepth,
    ceil_mode_padding,
    make_divisible,
    survival_probabilities,
)


def _pair(shape=(4, 3, 3, 2), seed=0):
    rng = np.random.default_rng(seed)
    shortcut = tf.constant(rng.standard_normal(shape).astype(np.float32))
    # Bounded away from zero, so that a kept branch is always told apart from a dropped one.
    residual = tf.constant(rng.uniform(1.0, 2.0, shape).astype(np.float32))
    return shortcut, residual


def _dropped(layers, shortcut, residual, calls: int) -> np.ndarray:
    """``(calls, len(layers))``: whether each training-mode call of each layer dropped its
    branch (for the whole batch). One traced loop for all layers keeps this quick."""

    @tf.function
    def run():
        outcomes = tf.TensorArray(tf.bool, size=calls)
        for call in tf.range(calls):
            dropped = [
                tf.reduce_all(tf.equal(layer([shortcut, residual], training=True), shortcut))
                for layer in layers
            ]
            outcomes = outcomes.write(call, tf.stack(dropped))
        return outcomes.stack()

    return run().numpy()


def _stochastic_depth_layers(model) -> list[StochasticDepth]:
    return [layer for layer in model.layers if isinstance(layer, StochasticDepth)]


def test_survival_one_is_a_plain_residual_block():
    shortcut, residual = _pair()
    layer = StochasticDepth(1.0, seed=1)
    for training in (True, False):
        for _ in range(20):
            outputs = layer([shortcut, residual], training=training)
            np.testing.assert_array_equal(outputs.numpy(), (shortcut + residual).numpy())
    # In a network, p_L = 1 joins every block with a stock Add: the plain ResNet.
    plain = models.build("resnet20_cifar", final_survival_probability=1.0)
    assert not _stochastic_depth_layers(plain)
    assert sum(isinstance(layer, keras.layers.Add) for layer in plain.layers) == 9


def test_inference_scales_the_branch_by_its_survival_probability():
    shortcut, residual = _pair()
    layer = StochasticDepth(0.7, seed=1)
    expected = shortcut.numpy() + 0.7 * residual.numpy()
    np.testing.assert_allclose(layer([shortcut, residual], training=False), expected, rtol=1e-6)
    # Outside training (no training argument, learning phase 0) it is inference too.
    np.testing.assert_allclose(layer([shortcut, residual]), expected, rtol=1e-6)


def test_inference_of_a_network_block_is_shortcut_plus_scaled_branch():
    """In ResNet-20 with stochastic depth, each join's output at inference equals its shortcut
    plus p_l times its residual branch, both taken from the network itself."""
    model = models.build("resnet20_cifar", final_survival_probability=0.5, seed=3)
    joins = _stochastic_depth_layers(model)
    probe = keras.Model(
        model.inputs,
        [tensor for layer in joins for tensor in (*layer.input, layer.output)],
    )
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    values = probe(images, training=False)
    for index, layer in enumerate(joins):
        shortcut, residual, joined = (v.numpy() for v in values[3 * index: 3 * index + 3])
        np.testing.assert_allclose(
            joined, shortcut + layer.survival_probability * residual, rtol=1e-5, atol=1e-5
        )


def test_training_drop_rate_matches_one_minus_survival_per_block():
    """ResNet-20, p_L = 0.5, linear decay: every block's measured drop rate over 2000 training
    calls is within 4 standard errors of 1 - p_l."""
    model = models.build("resnet20_cifar", final_survival_probability=0.5, seed=11)
    joins = _stochastic_depth_layers(model)
    expected = survival_probabilities(9, 0.5, "linear")
    assert [layer.survival_probability for layer in joins] == pytest.approx(expected)
    shortcut, residual = _pair(shape=(1, 2, 2, 1))
    calls = 2000
    drop_rates = _dropped(joins, shortcut, residual, calls).mean(axis=0)
    for layer, survival, drop_rate in zip(joins, expected, drop_rates):
        standard_error = np.sqrt(survival * (1 - survival) / calls)
        assert abs(drop_rate - (1 - survival)) <= 4 * standard_error + 1e-3, (layer.name, drop_rate)


def test_sample_granularity_drops_whole_examples_at_the_same_rate():
    shortcut, residual = _pair(shape=(20000, 2, 2, 1))
    layer = StochasticDepth(0.8, granularity="sample", seed=5)
    outputs = layer([shortcut, residual], training=True).numpy()
    kept = np.isclose(outputs, (shortcut + residual).numpy()).all(axis=(1, 2, 3))
    dropped = (outputs == shortcut.numpy()).all(axis=(1, 2, 3))
    assert (kept ^ dropped).all()  # each example is either whole or dropped whole
    assert abs(dropped.mean() - 0.2) <= 4 * np.sqrt(0.16 / 20000)


def test_linear_decay_rule():
    """Huang et al., Eq. 4: p_l = 1 - (l / L)(1 - p_L)."""
    for num_blocks, final in ((54, 0.5), (9, 0.8), (1, 0.3)):
        survival = survival_probabilities(num_blocks, final, "linear")
        assert len(survival) == num_blocks
        assert survival[0] == pytest.approx(1 - (1 - final) / num_blocks)
        assert survival[-1] == pytest.approx(final)
        assert np.allclose(np.diff(survival), -(1 - final) / num_blocks)
    assert survival_probabilities(5, 0.6, "uniform") == [0.6] * 5


def test_resnet110_preset_follows_the_paper():
    """The stochastic-depth paper's CIFAR ResNet-110: 54 blocks, linear decay to p_L = 0.5."""
    spec = models.get("resnet110_cifar")
    assert spec.preset["final_survival_probability"] == 0.5
    assert spec.preset["survival_rule"] == "linear"
    assert sum(spec.preset["blocks_per_stage"]) == 54
    # The block-to-probability mapping resnet() applies (checked on a 9-block network above).
    survival = survival_probabilities(54, 0.5)
    assert survival[0] == pytest.approx(1 - 0.5 / 54) and survival[-1] == 0.5


def test_uniform_rule_in_a_network():
    model = models.build("resnet20_cifar", final_survival_probability=0.7, survival_rule="uniform")
    assert [layer.survival_probability for layer in _stochastic_depth_layers(model)] == [0.7] * 9


def test_drops_are_reproducible_from_the_seed():
    shortcut, residual = _pair(shape=(1, 2, 2, 1))
    seeded = [StochasticDepth(0.5, seed=42), StochasticDepth(0.5, seed=42),
              StochasticDepth(0.5, seed=43)]
    first, second, other = _dropped(seeded, shortcut, residual, 64).T
    np.testing.assert_array_equal(first, second)
    assert (first != other).any()
    # Without a seed, keras.utils.set_random_seed (what a run's seed does) fixes the stream:
    # the layer draws its seed from Python's random module when it is built.
    keras.utils.set_random_seed(7)
    unseeded_first = _dropped([StochasticDepth(0.5)], shortcut, residual, 64)
    keras.utils.set_random_seed(7)
    unseeded_second = _dropped([StochasticDepth(0.5)], shortcut, residual, 64)
    np.testing.assert_array_equal(unseeded_first, unseeded_second)


def test_stochastic_depth_rejects_bad_options():
    with pytest.raises(ValueError, match="survival_probability=0.0"):
        StochasticDepth(0.0)
    with pytest.raises(ValueError, match="granularity='row'"):
        StochasticDepth(0.5, granularity="row")
    with pytest.raises(ValueError, match="final_survival_probability=1.5"):
        survival_probabilities(3, 1.5)
    with pytest.raises(ValueError, match="rule='exponential'"):
        survival_probabilities(3, 0.5, "exponential")


def test_layer_configs_round_trip():
    for layer in (StochasticDepth(0.6, granularity="sample", seed=9), ChannelZeroPad(5)):
        config = layer.get_config()
        clone = type(layer).from_config(config)
        assert clone.get_config() == config
        restored = keras.layers.deserialize(keras.layers.serialize(layer))
        assert type(restored) is type(layer) and restored.get_config() == config


def test_channel_zero_pad():
    inputs = tf.constant(np.random.default_rng(0).standard_normal((2, 3, 3, 4)), tf.float32)
    outputs = ChannelZeroPad(3)(inputs).numpy()
    assert outputs.shape == (2, 3, 3, 7)
    np.testing.assert_array_equal(outputs[..., :4], inputs.numpy())
    assert not outputs[..., 4:].any()


def test_make_divisible_matches_mobilenet_v2_reference_widths():
    # keras.applications MobileNetV2: first conv at alpha 0.35 has 16 filters; 1280 * 1.4.
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(32 * 0.5) == 16
    assert make_divisible(24 * 0.75) == 24
    assert make_divisible(1280 * 1.4) == 1792


def test_ceil_mode_padding_gives_caffe_output_sizes():
    for size in range(3, 80):
        pad = ceil_mode_padding(size, 3, 2)
        assert (size + pad - 3) // 2 + 1 == int(np.ceil((size - 3) / 2)) + 1
    with pytest.raises(ValueError, match="static input_shape"):
        ceil_mode_padding(None, 3, 2)


def test_saved_in_keras_format_and_reloaded_without_custom_objects(tmp_path):
    model = models.build(
        "resnet20_cifar", blocks_per_stage=(1, 1, 1), final_survival_probability=0.5, seed=1
    )
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert len(_stochastic_depth_layers(restored)) == 3
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        restored(images, training=False).numpy(), model(images, training=False).numpy()
    )


def test_stochastic_depth_and_zero_padding_convert_to_tflite_builtins():
    """At inference stochastic depth is a scale (MUL, ADD) and the option-A shortcut a PAD: a
    residual network holding both converts with TFLite's builtin ops alone and matches Keras."""
    from ai_edge_litert.interpreter import Interpreter

    inputs = keras.Input((8, 8, 3))
    shortcut = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    residual = keras.layers.Conv2D(4, 3, padding="same")(shortcut)
    joined = StochasticDepth(0.6, seed=1)([shortcut, residual])
    widened = ChannelZeroPad(2)(joined)  # (N, 8, 8, 6)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(widened))
    serve = tf.function(lambda images: model(images, training=False),
                        input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    variables = tf.Module()  # the converter's trackable: the variables, not every layer
    variables.model_variables = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], variables
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    images = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    tflite_outputs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(
        tflite_outputs, model(images, training=False).numpy(), rtol=1e-5, atol=1e-5
    )
