"""ResNet v1/v2, CIFAR stems and shortcuts, Wide ResNets; config round trips (acceptance 1)."""

from __future__ import annotations

import pytest
import tf_keras as keras

from edgeline import models
from edgeline.models.layers import ChannelZeroPad, StochasticDepth


def _inbound(model, layer_name: str) -> list[str]:
    """Names of the layers feeding ``layer_name``."""
    layers = model.get_layer(layer_name)._inbound_nodes[0].inbound_layers
    return [layer.name for layer in (layers if isinstance(layers, list) else [layers])]


def test_v1_basic_block_adds_after_batch_norm_and_activates_after_the_addition(build_cached):
    model = build_cached("resnet18", num_classes=7, input_shape=(32, 32, 3))
    assert _inbound(model, "stage2_block1_add") == ["stage2_block1_proj_bn", "stage2_block1_bn2"]
    assert _inbound(model, "stage2_block1_out") == ["stage2_block1_add"]
    assert isinstance(model.get_layer("stage2_block1_out"), keras.layers.ReLU)
    assert _inbound(model, "stage1_block2_add") == ["stage1_block1_out", "stage1_block2_bn2"]
    # ImageNet stem: 7x7/2 convolution and 3x3/2 max pooling, a quarter of the resolution.
    assert model.get_layer("stem_conv").kernel_size == (7, 7)
    assert model.get_layer("stem_pool").output_shape == (None, 8, 8, 64)
    # No convolution that feeds a batch norm carries a bias.
    assert not any(
        layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )


def test_v2_pre_activation_ordering():
    model = models.build(
        "resnet50_v2", num_classes=10, input_shape=(32, 32, 3), blocks_per_stage=(2, 1, 1, 1)
    )
    # The branch starts with BN-ReLU; the projection shortcut reads the pre-activated input.
    assert _inbound(model, "stage1_block1_preact_bn") == ["stem_pool"]
    assert _inbound(model, "stage1_block1_conv1") == ["stage1_block1_preact_relu"]
    assert _inbound(model, "stage1_block1_proj_conv") == ["stage1_block1_preact_relu"]
    # Identity shortcuts take the raw block input, and nothing follows the addition.
    assert _inbound(model, "stage1_block2_add") == ["stage1_block1_add", "stage1_block2_conv3"]
    assert _inbound(model, "stage2_block1_preact_bn") == ["stage1_block2_add"]
    # After the last block: BN-ReLU, then the classifier.
    assert _inbound(model, "post_bn") == ["stage4_block1_add"]
    assert _inbound(model, "global_pool") == ["post_relu"]


def test_bottleneck_stride_sits_on_the_3x3_convolution():
    model = models.build(
        "resnet50", num_classes=10, input_shape=(64, 64, 3), blocks_per_stage=(1, 1, 1, 1)
    )
    assert model.get_layer("stage2_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)
    assert model.get_layer("stage2_block1_conv3").filters == 512  # 4 x 128


def test_cifar_resnet_zero_padding_shortcuts(trainable_parameters, build_cached):
    """He et al. (2016), Sec. 4.2: 3x3 stem of 16, widths 16/32/64, parameter-free shortcuts;
    ResNet-20 has 0.27M parameters (Table 6)."""
    model = build_cached("resnet20_cifar")
    assert model.get_layer("stem_conv").output_shape == (None, 32, 32, 16)
    assert not [layer for layer in model.layers if "proj" in layer.name]
    pads = [layer for layer in model.layers if isinstance(layer, ChannelZeroPad)]
    assert [layer.extra_channels for layer in pads] == [16, 32]
    assert model.get_layer("stage3_block3_out").output_shape == (None, 8, 8, 64)
    assert round(trainable_parameters(model) / 1e6, 2) == 0.27


def test_wide_resnet_widths(trainable_parameters, build_cached):
    """WRN-16-4: widths 64/128/256, 2.7M parameters (Zagoruyko & Komodakis, Table 1 and 4)."""
    model = build_cached("wide_resnet16_4")
    assert model.get_layer("stage1_block1_conv1").filters == 64
    assert model.get_layer("stage3_block2_conv2").filters == 256
    assert round(trainable_parameters(model) / 1e6, 1) == 2.7


def test_width_factor_widens_the_bottleneck():
    """As in WRN-50-2 (Zagoruyko & Komodakis, Sec. 4; torchvision's wide_resnet50_2): the 1x1
    and 3x3 widths double, the block outputs stay 4 x 64 k."""
    model = models.build("resnet50", width_factor=2, input_shape=(32, 32, 3),
                         blocks_per_stage=(1, 1, 1, 1))
    assert model.get_layer("stage1_block1_conv1").filters == 128
    assert model.get_layer("stage1_block1_conv2").filters == 128
    assert model.get_layer("stage1_block1_conv3").filters == 256
    assert model.get_layer("stage4_block1_conv3").filters == 2048


@pytest.mark.parametrize(
    "options, message",
    [
        ({"stage_widths": (16, 32)}, r"stage_widths=\(16, 32\)"),
        ({"version": 3}, "version=3"),
        ({"stem": "coco"}, "stem='coco'"),
        ({"blocks_per_stage": (3, 0, 3)}, r"blocks_per_stage=\(3, 0, 3\)"),
        ({"final_survival_probability": 0.0}, "final_survival_probability=0.0"),
        ({"block_dropout_rate": 1.0}, "block_dropout_rate=1.0"),
    ],
)
def test_bad_options_name_the_value(options, message):
    with pytest.raises(ValueError, match=message):
        models.build("resnet20_cifar", **options)


def test_zero_pad_needs_basic_blocks():
    with pytest.raises(ValueError, match="shortcut='zero_pad'"):
        models.build("resnet50", shortcut="zero_pad", input_shape=(32, 32, 3))


@pytest.mark.parametrize(
    "name, options, input_shape",
    [
        ("resnet20_cifar", {"final_survival_probability": 0.8, "seed": 3}, (32, 32, 3)),
        ("wide_resnet16_4", {"block_dropout_rate": 0.3, "final_survival_probability": 0.9},
         (32, 32, 3)),
        ("resnet50_v2", {"blocks_per_stage": (1, 1, 1, 1)}, (32, 32, 3)),
        ("resnet18", {"classifier_activation": "softmax", "classifier_dropout_rate": 0.2,
                      "blocks_per_stage": (1, 1, 1, 1)}, (64, 64, 3)),
    ],
)
def test_config_round_trip(name, options, input_shape, assert_config_round_trip):
    model = models.build(name, num_classes=5, input_shape=input_shape, **options)
    clone = assert_config_round_trip(model, (2, *input_shape))
    assert sum(isinstance(layer, StochasticDepth) for layer in clone.layers) == sum(
        isinstance(layer, StochasticDepth) for layer in model.layers
    )
