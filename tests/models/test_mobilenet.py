"""MobileNet v1 and v2: width multipliers against keras.applications, block structure, the
detector's feature maps, config round trips."""

from __future__ import annotations

import pytest
import tf_keras as keras

from edgeline import models
from edgeline.models.mobilenet import mobilenet_v2_features


@pytest.mark.parametrize(
    "name, reference, width_multiplier",
    [
        ("mobilenet_v1", keras.applications.MobileNet, 0.5),
        ("mobilenet_v2", keras.applications.MobileNetV2, 0.35),
    ],
)
def test_width_multiplier_matches_keras_applications(
    name, reference, width_multiplier, trainable_parameters
):
    """keras.applications builds the same architectures (random weights, nothing downloaded);
    its trainable counts are the reference for other widths."""
    ours = models.build(name, num_classes=10, input_shape=(32, 32, 3),
                        width_multiplier=width_multiplier)
    theirs = reference(input_shape=(32, 32, 3), alpha=width_multiplier, weights=None, classes=10)
    assert trainable_parameters(ours) == trainable_parameters(theirs)


def test_mobilenet_v1_is_depthwise_separable(build_cached):
    model = build_cached("mobilenet_v1", num_classes=7, input_shape=(64, 64, 3))
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    pointwise = [layer for layer in model.layers if layer.name.endswith("_pointwise")]
    assert len(depthwise) == len(pointwise) == 13
    assert all(layer.kernel_size == (1, 1) for layer in pointwise)
    assert model.get_layer("separable13_pointwise").output_shape == (None, 2, 2, 1024)


def test_mobilenet_v2_inverted_residuals_and_linear_bottlenecks(build_cached):
    model = build_cached("mobilenet_v2", num_classes=7, input_shape=(64, 64, 3))
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    # Table 2: a residual in every repeat after the first of a group: 0+1+2+3+2+2+0.
    assert len(adds) == 10
    projections = [layer for layer in model.layers if layer.name.endswith("_project_bn")]
    assert len(projections) == 17
    for layer in projections:  # linear: nothing but an Add or the next block reads them
        for node in layer._outbound_nodes:
            assert not isinstance(node.outbound_layer, keras.layers.ReLU)
    # Expansion by 6: block 1 expands 16 channels to 96.
    assert model.get_layer("block1_expand").filters == 96
    assert model.get_layer("conv_last").filters == 1280


def test_mobilenet_v2_features_by_stride():
    inputs = keras.Input((64, 64, 3))
    features = mobilenet_v2_features(inputs, width_multiplier=0.5)
    assert {stride: tuple(tensor.shape) for stride, tensor in features.items()} == {
        8: (None, 8, 8, 16),
        16: (None, 4, 4, 48),
        32: (None, 2, 2, 160),
    }


def test_bad_width_multiplier():
    with pytest.raises(ValueError, match="width_multiplier=0"):
        models.build("mobilenet_v2", width_multiplier=0)


def test_config_round_trip(assert_config_round_trip):
    # MobileNet v2's body round-trips inside the detector (test_detector.py).
    model = models.build("mobilenet_v1", num_classes=4, input_shape=(32, 32, 3),
                         width_multiplier=0.25, depth_multiplier=2,
                         classifier_activation="softmax")
    assert_config_round_trip(model, (2, 32, 32, 3))
