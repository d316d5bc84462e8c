"""DenseNet-BC: growth, bottleneck, compression, BN-ReLU-Conv ordering, round trip."""

from __future__ import annotations

import pytest
import tf_keras as keras

from edgeline import models


def _small(**options):
    settings = {"blocks_per_stage": (2, 3), "growth_rate": 8, "stem": "cifar"}
    settings.update(options)
    return models.build("densenet121", num_classes=10, input_shape=(32, 32, 3), **settings)


def test_channels_grow_by_k_and_transitions_compress():
    model = _small()
    assert model.get_layer("stem_conv").filters == 16  # 2k
    assert model.get_layer("block1_layer2_concat").output_shape == (None, 32, 32, 16 + 2 * 8)
    assert model.get_layer("transition1_conv").filters == 16  # floor(0.5 * 32)
    assert model.get_layer("transition1_pool").output_shape == (None, 16, 16, 16)
    assert model.get_layer("block2_layer3_concat").output_shape == (None, 16, 16, 16 + 3 * 8)
    assert model.get_layer("block1_layer1_1_conv").filters == 32  # bottleneck: 4k


def test_without_bottleneck_and_compression():
    model = _small(bottleneck=False, compression=1.0)
    assert "block1_layer1_1_conv" not in [layer.name for layer in model.layers]
    assert model.get_layer("transition1_conv").filters == 32


def test_composite_function_is_bn_relu_conv():
    model = _small()
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.name != "stem_conv":
            feeding = layer._inbound_nodes[0].inbound_layers
            assert isinstance(feeding, keras.layers.ReLU), layer.name
            assert isinstance(feeding._inbound_nodes[0].inbound_layers,
                              keras.layers.BatchNormalization)


def test_imagenet_stem():
    model = models.build("densenet121", num_classes=10, input_shape=(64, 64, 3),
                         blocks_per_stage=(1, 1))
    assert model.get_layer("stem_conv").kernel_size == (7, 7)
    assert model.get_layer("stem_pool").output_shape == (None, 16, 16, 64)


def test_bad_options():
    with pytest.raises(ValueError, match="compression=0"):
        _small(compression=0)
    with pytest.raises(ValueError, match="growth_rate=0"):
        _small(growth_rate=0)


def test_config_round_trip(assert_config_round_trip):
    assert_config_round_trip(_small(dropout_rate=0.2, classifier_dropout_rate=0.1),
                             (2, 32, 32, 3))
