"""SqueezeNet 1.0 and 1.1: fire module widths, output sizes, bypass, round trips."""

from __future__ import annotations

import pytest
import tf_keras as keras

from edgeline import models


def _fire_widths(model):
    return [
        (
            model.get_layer(f"fire{index}_squeeze").filters,
            model.get_layer(f"fire{index}_expand1x1").filters,
            model.get_layer(f"fire{index}_expand3x3").filters,
        )
        for index in range(2, 10)
    ]


def test_squeezenet_1_0_matches_table_1():
    """Iandola et al. (2016), Table 1: fire widths (s1x1, e1x1, e3x3) and output sizes. The
    sizes are those of the Caffe reference, whose crops are 227 pixels (Table 1 says 224)."""
    model = models.build("squeezenet1_0", num_classes=1000, input_shape=(227, 227, 3))
    assert _fire_widths(model) == [
        (16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
        (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256),
    ]
    sizes = {
        "conv1": 111, "pool1": 55, "fire4_concat": 55, "pool_fire4": 27, "fire8_concat": 27,
        "pool_fire8": 13, "fire9_concat": 13, "conv10": 13,
    }
    for name, size in sizes.items():
        assert model.get_layer(name).output_shape[1:3] == (size, size), name


def test_squeezenet_1_1_pools_earlier(build_cached):
    model = build_cached("squeezenet1_1")  # 224 x 224
    assert model.get_layer("conv1").kernel_size == (3, 3)
    assert model.get_layer("conv1").filters == 64
    assert model.get_layer("pool_fire3").output_shape[1:3] == (27, 27)
    assert model.get_layer("pool_fire5").output_shape[1:3] == (13, 13)


def test_metaparameters(trainable_parameters):
    model = models.build(
        "squeezenet1_1", num_classes=10, input_shape=(64, 64, 3),
        squeeze_ratio=0.25, expand_3x3_fraction=0.75,
    )
    # e_i = 128 + 128 * floor(i / 2); s_i = 0.25 e_i; e3 = 0.75 e_i.
    assert _fire_widths(model)[0] == (32, 32, 96)
    assert _fire_widths(model)[-1] == (128, 128, 384)


def test_simple_bypass_where_widths_match(trainable_parameters, build_cached):
    plain = build_cached("squeezenet1_0", num_classes=7, input_shape=(64, 64, 3))
    bypass = build_cached(
        "squeezenet1_0", num_classes=7, input_shape=(64, 64, 3), simple_bypass=True
    )
    adds = [layer.name for layer in bypass.layers if isinstance(layer, keras.layers.Add)]
    assert adds == ["fire3_bypass", "fire5_bypass", "fire7_bypass", "fire9_bypass"]
    assert trainable_parameters(bypass) == trainable_parameters(plain)  # parameter-free


def test_needs_a_static_input_shape():
    with pytest.raises(ValueError, match="static input_shape"):
        models.build("squeezenet1_1", input_shape=(None, None, 3))


def test_bad_options():
    with pytest.raises(ValueError, match="version='2.0'"):
        models.build("squeezenet1_1", version="2.0")
    with pytest.raises(ValueError, match="expand_3x3_fraction=1.0"):
        models.build("squeezenet1_1", expand_3x3_fraction=1.0)


def test_config_round_trip(assert_config_round_trip):
    model = models.build(
        "squeezenet1_0", num_classes=6, input_shape=(64, 64, 3), simple_bypass=True
    )
    assert_config_round_trip(model, (2, 64, 64, 3))
