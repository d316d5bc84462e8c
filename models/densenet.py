"""DenseNet-BC: dense blocks with bottleneck layers and compressing transitions.

Paper: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks",
CVPR 2017 (arXiv:1608.06993).

- A dense block (Sec. 3, "Dense connectivity") feeds each layer the concatenation of all
  earlier feature maps of the block; each layer adds ``growth_rate`` (k) channels.
- Each layer is BN-ReLU-Conv ("composite function"); with the bottleneck ("DenseNet-B") it is
  BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k).
- Between blocks a transition layer is BN-ReLU-Conv1x1-AvgPool2x2; with compression theta
  ("DenseNet-C") it keeps floor(theta * m) of its m channels. DenseNet-BC uses both, theta=0.5.
- ImageNet networks (Table 1) start with a 7x7/2 convolution of 2k channels and a 3x3/2 max
  pool and have four blocks (DenseNet-121: 6, 12, 24, 16 layers, k = 32); CIFAR networks start
  with a 3x3 convolution of 2k channels and have three blocks of (depth - 4) / 6 bottleneck
  layers (DenseNet-BC L=100 k=12: 16 each).
- After the last block: BN-ReLU, global average pooling and the classifier.

Convolutions carry no bias (each is preceded by BN, not followed: the paper's code has none),
so DenseNet-121 has 7,978,856 trainable parameters with 1000 classes, the reference count.
Outputs are logits unless ``classifier_activation`` says otherwise.
"""

from __future__ import annotations

from typing import Literal

import tf_keras as keras

from edgeline.models.layers import batch_norm, check_choice, check_rate, classifier_head, conv2d

BOTTLENECK_WIDTH = 4  # Sec. 3, "Bottleneck layers": the 1x1 convolution produces 4k maps


def _bn_relu(x, name: str):
    return keras.layers.ReLU(name=f"{name}_relu")(batch_norm(x, name=f"{name}_bn"))


def _dense_layer(x, *, growth_rate: int, bottleneck: bool, dropout_rate: float, seed, name: str):
    """One composite function H_l; returns its k new feature maps."""
    if bottleneck:
        x = conv2d(_bn_relu(x, name=f"{name}_1"), BOTTLENECK_WIDTH * growth_rate, 1,
                   name=f"{name}_1_conv")
        if dropout_rate > 0.0:
            x = keras.layers.Dropout(dropout_rate, seed=seed, name=f"{name}_1_dropout")(x)
    x = conv2d(_bn_relu(x, name=f"{name}_2"), growth_rate, 3, name=f"{name}_2_conv")
    if dropout_rate > 0.0:
        x = keras.layers.Dropout(dropout_rate, seed=seed, name=f"{name}_2_dropout")(x)
    return x  # (N, H, W, k)


def _dense_block(x, *, num_layers: int, growth_rate: int, bottleneck: bool, dropout_rate: float,
                 seed, name: str):
    for layer in range(1, num_layers + 1):
        new_features = _dense_layer(
            x, growth_rate=growth_rate, bottleneck=bottleneck, dropout_rate=dropout_rate,
            seed=seed, name=f"{name}_layer{layer}",
        )
        x = keras.layers.Concatenate(name=f"{name}_layer{layer}_concat")([x, new_features])
    return x  # (N, H, W, m0 + num_layers * k)


def _transition(x, *, compression: float, name: str):
    filters = int(x.shape[-1] * compression)
    x = conv2d(_bn_relu(x, name=name), filters, 1, name=f"{name}_conv")
    return keras.layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)  # (N, H/2, W/2)


def densenet(*, num_classes: int, input_shape: tuple[int | None, int | None, int],
             name: str = "densenet", blocks_per_stage: tuple[int, ...] = (6, 12, 24, 16),
             growth_rate: int = 32, stem: Literal["imagenet", "cifar"] = "imagenet",
             stem_width: int | None = None, bottleneck: bool = True, compression: float = 0.5,
             dropout_rate: float = 0.0, classifier_dropout_rate: float = 0.0,
             classifier_activation: str | None = None, seed: int | None = None) -> keras.Model:
    """Builds a DenseNet (DenseNet-BC with the defaults).

    Args:
      blocks_per_stage: layers in each dense block.
      growth_rate: k, feature maps added by each layer.
      stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (one 3x3 conv).
      stem_width: channels of the stem; 2k by default (DenseNet-BC).
      bottleneck: use the 1x1 bottleneck in each layer (DenseNet-B).
      compression: theta, the share of channels a transition keeps (1.0: no compression).
      dropout_rate: dropout after each convolution of a dense layer (the paper's 0.2 for
        CIFAR without augmentation).
      classifier_dropout_rate: dropout before the classifier.
      classifier_activation: ``None`` for logits, or e.g. ``"softmax"``.
      seed: seeds the dropout.
    """
    check_choice("stem", stem, ("imagenet", "cifar"))
    check_rate("dropout_rate", dropout_rate)
    check_rate("classifier_dropout_rate", classifier_dropout_rate)
    if growth_rate < 1:
        raise ValueError(f"Received: growth_rate={growth_rate}; growth_rate must be >= 1")
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"Received: compression={compression}; compression must be in (0, 1]")
    if not blocks_per_stage or min(blocks_per_stage) < 1:
        raise ValueError(
            f"Received: blocks_per_stage={tuple(blocks_per_stage)}; every block needs a layer"
        )
    stem_width = 2 * growth_rate if stem_width is None else stem_width

    inputs = keras.Input(shape=input_shape, name="images")
    if stem == "imagenet":
        x = _bn_relu(conv2d(inputs, stem_width, 7, strides=2, name="stem_conv"), name="stem")
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)  # (N, H/4, W/4, 2k)
    else:
        x = conv2d(inputs, stem_width, 3, name="stem_conv")  # (N, H, W, 2k)
    for stage, num_layers in enumerate(blocks_per_stage, start=1):
        x = _dense_block(
            x, num_layers=num_layers, growth_rate=growth_rate, bottleneck=bottleneck,
            dropout_rate=dropout_rate, seed=seed, name=f"block{stage}",
        )
        if stage < len(blocks_per_stage):
            x = _transition(x, compression=compression, name=f"transition{stage}")
    x = _bn_relu(x, name="final")
    outputs = classifier_head(
        x, num_classes, classifier_dropout_rate, classifier_activation, seed=seed
    )
    return keras.Model(inputs, outputs, name=name)
