"""The Q-network presets of edgeline.models.qnetworks, built through the model registry.

(They live with the rl tests because the rl stage is their only user; the module is
models/qnetworks.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from edgeline import models


def _conv_and_dense(network) -> tuple[list, list]:
    convs = [
        (layer.filters, layer.kernel_size[0], layer.strides[0])
        for layer in network.layers
        if layer.__class__.__name__ == "Conv2D"
    ]
    dense = [layer.units for layer in network.layers if layer.__class__.__name__ == "Dense"]
    return convs, dense


def test_the_registry_lists_the_q_network_presets():
    assert models.names(task="q_network") == [
        "dqn_mlp_100_50",
        "dqn_mlp_256_256",
        "dqn_nature_2015",
        "dqn_nips_2013",
    ]
    assert "Nature" in models.get("dqn_nature_2015").description


def test_nips_2013_network_has_the_papers_layers_and_takes_uint8_frames():
    network = models.build("dqn_nips_2013", num_classes=4, input_shape=(84, 84, 4))
    frames = tf.constant(np.full((2, 84, 84, 4), 255, dtype=np.uint8))
    q_values, state = network(frames)
    assert q_values.shape == (2, 4) and state == ()
    convs, dense = _conv_and_dense(network)
    assert convs == [(16, 8, 4), (32, 4, 2)]
    assert dense == [256, 4]
    # 84 -> 20 -> 9 pixels: 9 * 9 * 32 = 2592 features into the 256-unit layer.
    expected = (16 * 8 * 8 * 4 + 16) + (32 * 4 * 4 * 16 + 32) + (2592 * 256 + 256) + (256 * 4 + 4)
    assert network.count_params() == expected


def test_nature_2015_network_has_the_papers_layers():
    network = models.build("dqn_nature_2015", num_classes=18, input_shape=(84, 84, 4))
    network(tf.zeros((1, 84, 84, 4), tf.uint8))
    convs, dense = _conv_and_dense(network)
    assert convs == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    assert dense == [512, 18]
    # 84 -> 20 -> 9 -> 7 pixels: 7 * 7 * 64 = 3136 features; 1.69M parameters in all.
    expected = (
        (32 * 8 * 8 * 4 + 32)
        + (64 * 4 * 4 * 32 + 64)
        + (64 * 3 * 3 * 64 + 64)
        + (3136 * 512 + 512)
        + (512 * 18 + 18)
    )
    assert network.count_params() == expected


def test_frames_are_scaled_to_unit_range_inside_the_network():
    network = models.build("dqn_nips_2013", num_classes=3, input_shape=(84, 84, 4))
    frames = np.random.default_rng(0).integers(0, 256, size=(1, 84, 84, 4), dtype=np.uint8)
    from_uint8, _ = network(tf.constant(frames))
    # Bypass the scaling layer: feeding [0, 1] floats to the rest gives the same values.
    scaled = tf.constant(frames.astype(np.float32) / 255.0)
    for layer in network.layers[1:]:
        scaled = layer(scaled)
    np.testing.assert_allclose(from_uint8.numpy(), scaled.numpy(), rtol=1e-5, atol=1e-6)


def test_copy_gives_a_target_network_with_its_own_variables():
    network = models.build("dqn_mlp_100_50", num_classes=2, input_shape=(4,))
    spec = tf.TensorSpec((4,), tf.float32)
    network.create_variables(spec)
    target = network.copy(name="TargetQNetwork")
    target.create_variables(spec)
    assert len(target.variables) == len(network.variables) == 6
    assert {id(v) for v in target.variables}.isdisjoint({id(v) for v in network.variables})


def test_presets_refuse_observations_they_cannot_take():
    with pytest.raises(ValueError, match="takes inputs of rank 1"):
        models.build("dqn_mlp_100_50", num_classes=2, input_shape=(84, 84, 4))
    with pytest.raises(ValueError, match="at least 36"):
        models.build("dqn_nature_2015", num_classes=6, input_shape=(32, 32, 4))
    with pytest.raises(ValueError, match="num_classes=1"):
        models.build("dqn_nips_2013", num_classes=1, input_shape=(84, 84, 4))
