"""MobileNet v1 and v2.

Papers:
- Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam, "MobileNets: Efficient
  Convolutional Neural Networks for Mobile Vision Applications", 2017 (arXiv:1704.04861):
  depthwise separable convolutions (a 3x3 depthwise convolution, then a 1x1 pointwise one,
  each followed by BN and ReLU), Table 1's 28-layer body, and the width multiplier alpha that
  thins every layer (Sec. 3.3).
- Sandler, Howard, Zhu, Zhmoginov, Chen, "MobileNetV2: Inverted Residuals and Linear
  Bottlenecks", CVPR 2018 (arXiv:1801.04381): blocks that expand a thin input by a factor t
  (1x1, ReLU6), filter it depthwise (3x3, ReLU6) and project it back linearly (1x1, no
  activation), with a residual connection between the thin ends when the shape allows
  (Table 2 gives the body).

Both use ReLU6, as the papers' reference code (TF-Slim) does, because its bounded range suits
low-precision inference. Padding is TensorFlow's ``"same"``, as in that code. Widths under a
multiplier are rounded to multiples of 8 (:func:`edgeline.models.layers.make_divisible`).
With 1000 classes and alpha = 1, MobileNet v1 has 4,231,976 trainable parameters and
MobileNet v2 3,504,872, the counts of the reference implementations.

:func:`mobilenet_v2_features` returns the backbone's feature maps at strides 8, 16 and 32 for
:mod:`edgeline.models.detector`. Outputs of the classifiers are logits unless
``classifier_activation`` says otherwise.
"""

from __future__ import annotations

import tf_keras as keras

from edgeline.models.layers import batch_norm, check_rate, classifier_head, make_divisible

# Howard et al. (2017), Table 1: (pointwise filters, depthwise stride) of the 13 separable layers.
MOBILENET_V1_LAYERS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)

# Sandler et al. (2018), Table 2: (expansion t, output channels c, repeats n, first stride s).
MOBILENET_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _check_width_multiplier(width_multiplier: float) -> None:
    if width_multiplier <= 0:
        raise ValueError(
            f"Received: width_multiplier={width_multiplier}; width_multiplier must be > 0"
        )


def _conv_bn_relu6(x, filters: int, kernel_size: int, strides: int, name: str):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, name=name
    )(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(batch_norm(x, name=f"{name}_bn"))


def _depthwise_bn_relu6(x, strides: int, depth_multiplier: int, name: str):
    x = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", depth_multiplier=depth_multiplier, use_bias=False,
        name=name,
    )(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(batch_norm(x, name=f"{name}_bn"))


def mobilenet_v1(*, num_classes: int, input_shape: tuple[int | None, int | None, int],
                 name: str = "mobilenet_v1", width_multiplier: float = 1.0,
                 depth_multiplier: int = 1, classifier_dropout_rate: float = 0.001,
                 classifier_activation: str | None = None, seed: int | None = None) -> keras.Model:
    """Builds MobileNet v1 (Howard et al., 2017, Table 1). The resolution multiplier of the
    paper is simply a smaller ``input_shape``.

    Args:
      width_multiplier: alpha, Sec. 3.3: every layer has ``alpha`` times the channels.
      depth_multiplier: channels of each depthwise convolution per input channel.
      classifier_dropout_rate: dropout before the classifier (TF-Slim keeps 0.999).
      classifier_activation: ``None`` for logits, or e.g. ``"softmax"``.
      seed: seeds the dropout.
    """
    _check_width_multiplier(width_multiplier)
    check_rate("classifier_dropout_rate", classifier_dropout_rate)
    if depth_multiplier < 1:
        raise ValueError(
            f"Received: depth_multiplier={depth_multiplier}; depth_multiplier must be >= 1"
        )
    inputs = keras.Input(shape=input_shape, name="images")
    x = _conv_bn_relu6(inputs, int(32 * width_multiplier), 3, strides=2, name="conv1")
    for index, (filters, strides) in enumerate(MOBILENET_V1_LAYERS, start=1):
        x = _depthwise_bn_relu6(x, strides, depth_multiplier, name=f"separable{index}_depthwise")
        x = _conv_bn_relu6(
            x, int(filters * width_multiplier), 1, strides=1, name=f"separable{index}_pointwise"
        )  # (N, H/32, W/32, 1024 * alpha) after the last one
    outputs = classifier_head(
        x, num_classes, classifier_dropout_rate, classifier_activation, seed=seed
    )
    return keras.Model(inputs, outputs, name=name)


def _inverted_residual(x, *, expansion: int, filters: int, strides: int, name: str):
    """Sandler et al. (2018), Table 1: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 linear."""
    in_channels = x.shape[-1]
    inputs = x
    if expansion != 1:
        x = _conv_bn_relu6(x, in_channels * expansion, 1, strides=1, name=f"{name}_expand")
    x = _depthwise_bn_relu6(x, strides, 1, name=f"{name}_depthwise")
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_project")(x)
    # Linear bottleneck (Sec. 3.2): no activation after the projection, which would destroy
    # information in the low-dimensional space.
    x = batch_norm(x, name=f"{name}_project_bn")
    if strides == 1 and in_channels == filters:
        x = keras.layers.Add(name=f"{name}_add")([inputs, x])
    return x


def mobilenet_v2_features(inputs, width_multiplier: float = 1.0) -> dict[int, object]:
    """The MobileNet v2 body without its last 1x1 convolution: feature maps by stride.

    Returns ``{8: ..., 16: ..., 32: ...}``, the outputs of the last block at each of those
    strides: (N, H/8, W/8, 32a), (N, H/16, W/16, 96a) and (N, H/32, W/32, 320a) channels
    rounded to multiples of 8, where a is the width multiplier.
    """
    _check_width_multiplier(width_multiplier)
    first_filters = make_divisible(32 * width_multiplier, 8)
    x = _conv_bn_relu6(inputs, first_filters, 3, strides=2, name="conv1")  # (N, H/2, W/2, 32a)
    stride = 2
    features = {}
    block = 0
    for expansion, channels, repeats, first_stride in MOBILENET_V2_BLOCKS:
        filters = make_divisible(channels * width_multiplier, 8)
        for repeat in range(repeats):
            strides = first_stride if repeat == 0 else 1
            stride *= strides
            x = _inverted_residual(
                x, expansion=expansion, filters=filters, strides=strides, name=f"block{block}"
            )
            features[stride] = x  # the last block at each stride wins
            block += 1
    return {stride: features[stride] for stride in (8, 16, 32)}


def mobilenet_v2(*, num_classes: int, input_shape: tuple[int | None, int | None, int],
                 name: str = "mobilenet_v2", width_multiplier: float = 1.0,
                 classifier_dropout_rate: float = 0.2, classifier_activation: str | None = None,
                 seed: int | None = None) -> keras.Model:
    """Builds MobileNet v2 (Sandler et al., 2018, Table 2).

    Args:
      width_multiplier: alpha: scales every layer's channels (rounded to multiples of 8). The
        last 1x1 convolution keeps 1280 channels for alpha <= 1 (Sec. 6.1).
      classifier_dropout_rate: dropout before the classifier (TF-Slim keeps 0.8).
      classifier_activation: ``None`` for logits, or e.g. ``"softmax"``.
      seed: seeds the dropout.
    """
    check_rate("classifier_dropout_rate", classifier_dropout_rate)
    inputs = keras.Input(shape=input_shape, name="images")
    features = mobilenet_v2_features(inputs, width_multiplier)
    last_filters = 1280 if width_multiplier <= 1.0 else make_divisible(1280 * width_multiplier, 8)
    x = _conv_bn_relu6(features[32], last_filters, 1, strides=1, name="conv_last")
    outputs = classifier_head(
        x, num_classes, classifier_dropout_rate, classifier_activation, seed=seed
    )
    return keras.Model(inputs, outputs, name=name)
