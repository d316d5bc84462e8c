"""SqueezeNet 1.0 and 1.1: fire modules.

Paper: Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer, "SqueezeNet: AlexNet-level accuracy
with 50x fewer parameters and <0.5MB model size", 2016 (arXiv:1602.07360).

A fire module (Sec. 3.2) squeezes its input with ``s`` 1x1 filters, then expands it with
``e1`` 1x1 and ``e3`` 3x3 filters whose outputs are concatenated. Its widths follow the
metaparameters of Sec. 5 (fire module i = 0, 1, ...):

    e_i = base_expand + expand_increment * floor(i / fire_frequency)   expand filters
    e3_i = e_i * expand_3x3_fraction,  e1_i = e_i - e3_i                ("pct_3x3")
    s_i = e_i * squeeze_ratio                                          ("SR")

with base_expand = 128, expand_increment = 128, fire_frequency = 2, expand_3x3_fraction = 0.5
and squeeze_ratio = 0.125, which gives the eight fire modules of Table 1. The simple bypass
of Sec. 6 adds a module's input to its output where their widths match (fire3, fire5, fire7,
fire9).

Version 1.0 is Table 1 (7x7/2 convolution with 96 filters, max pools after conv1, fire4 and
fire8); version 1.1, from the authors' repository (forresti/SqueezeNet, v1.1), has a 3x3/2
convolution with 64 filters and pools after conv1, fire3 and fire5: the same accuracy for 2.4x
less computation. The classifier is dropout (0.5), a 1x1 convolution to the classes, ReLU and
global average pooling (Sec. 3.3). Convolutions keep their biases (there is no batch norm), so
SqueezeNet 1.1 has 1,235,496 trainable parameters with 1000 classes, the reference count.

Max pools round their output size up, as Caffe (where SqueezeNet was defined) does; so the
input shape must be static. The Caffe reference feeds 227x227 crops (Table 1's sizes, conv1
111x111, are for 227); the registry's default is torchvision's 224x224. Outputs are the pooled class scores ("logits") unless
``classifier_activation`` says otherwise.
"""

from __future__ import annotations

from typing import Literal

import tf_keras as keras

from edgeline.models.layers import ceil_mode_padding, check_choice, check_rate

# (first convolution filters, kernel size; the fire modules, 0-based, after which to pool)
_VERSIONS = {
    "1.0": (96, 7, (2, 6)),
    "1.1": (64, 3, (1, 3)),
}
NUM_FIRE_MODULES = 8


def _relu_conv(x, filters: int, kernel_size: int, name: str, strides: int = 1, padding="same"):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, name=name,
        kernel_initializer="he_uniform",
    )(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _max_pool_ceil(x, name: str):
    """3x3/2 max pooling with Caffe's rounding up of the output size."""
    pad_rows = ceil_mode_padding(x.shape[1], 3, 2)
    pad_cols = ceil_mode_padding(x.shape[2], 3, 2)
    if pad_rows or pad_cols:
        x = keras.layers.ZeroPadding2D(((0, pad_rows), (0, pad_cols)), name=f"{name}_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name=name)(x)


def fire_module(x, *, squeeze_filters: int, expand_1x1_filters: int, expand_3x3_filters: int,
                bypass: bool, name: str):
    """Iandola et al. (2016), Fig. 1: squeeze 1x1, then expand 1x1 || 3x3, concatenated."""
    squeezed = _relu_conv(x, squeeze_filters, 1, name=f"{name}_squeeze")
    expanded = keras.layers.Concatenate(name=f"{name}_concat")([
        _relu_conv(squeezed, expand_1x1_filters, 1, name=f"{name}_expand1x1"),
        _relu_conv(squeezed, expand_3x3_filters, 3, name=f"{name}_expand3x3"),
    ])  # (N, H, W, e1 + e3)
    if bypass and x.shape[-1] == expanded.shape[-1]:
        expanded = keras.layers.Add(name=f"{name}_bypass")([x, expanded])
    return expanded


def squeezenet(*, num_classes: int, input_shape: tuple[int, int, int], name: str = "squeezenet",
               version: Literal["1.0", "1.1"] = "1.1", squeeze_ratio: float = 0.125,
               expand_3x3_fraction: float = 0.5, base_expand_filters: int = 128,
               expand_increment: int = 128, fire_frequency: int = 2, simple_bypass: bool = False,
               classifier_dropout_rate: float = 0.5, classifier_activation: str | None = None,
               seed: int | None = None) -> keras.Model:
    """Builds SqueezeNet.

    Args:
      num_classes: outputs of the final 1x1 convolution.
      input_shape: ``(height, width, channels)``, static.
      name: the model's name.
      version: ``"1.0"`` (Table 1) or ``"1.1"`` (the authors' v1.1).
      squeeze_ratio: SR, squeeze filters per expand filter.
      expand_3x3_fraction: pct_3x3, the share of 3x3 filters among the expand filters.
      base_expand_filters: base_e, expand filters of the first fire module.
      expand_increment: incr_e, added every ``fire_frequency`` modules.
      fire_frequency: freq.
      simple_bypass: add the input of each fire module whose widths match to its output.
      classifier_dropout_rate: dropout before the final convolution.
      classifier_activation: ``None`` for the pooled scores, or e.g. ``"softmax"``.
      seed: seeds the dropout.
    """
    check_choice("version", version, tuple(_VERSIONS))
    check_rate("classifier_dropout_rate", classifier_dropout_rate)
    if not 0.0 < squeeze_ratio <= 1.0:
        raise ValueError(f"Received: squeeze_ratio={squeeze_ratio}; it must be in (0, 1]")
    if not 0.0 < expand_3x3_fraction < 1.0:
        raise ValueError(
            f"Received: expand_3x3_fraction={expand_3x3_fraction}; it must be in (0, 1)"
        )
    if min(base_expand_filters, fire_frequency) < 1 or expand_increment < 0:
        raise ValueError(
            f"Received: base_expand_filters={base_expand_filters}, expand_increment="
            f"{expand_increment}, fire_frequency={fire_frequency}; they must be >= 1, >= 0, >= 1"
        )
    first_filters, first_kernel, pool_after = _VERSIONS[version]

    inputs = keras.Input(shape=input_shape, name="images")
    x = _relu_conv(inputs, first_filters, first_kernel, name="conv1", strides=2, padding="valid")
    x = _max_pool_ceil(x, name="pool1")
    for index in range(NUM_FIRE_MODULES):
        expand = base_expand_filters + expand_increment * (index // fire_frequency)
        expand_3x3 = int(expand * expand_3x3_fraction)
        x = fire_module(
            x,
            squeeze_filters=max(1, int(expand * squeeze_ratio)),
            expand_1x1_filters=expand - expand_3x3,
            expand_3x3_filters=expand_3x3,
            bypass=simple_bypass,
            name=f"fire{index + 2}",  # the paper numbers them fire2..fire9
        )
        if index in pool_after:
            x = _max_pool_ceil(x, name=f"pool_fire{index + 2}")
    if classifier_dropout_rate > 0.0:
        x = keras.layers.Dropout(classifier_dropout_rate, seed=seed, name="classifier_dropout")(x)
    x = _relu_conv(x, num_classes, 1, name="conv10")  # (N, h, w, num_classes)
    outputs = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    if classifier_activation is not None:
        outputs = keras.layers.Activation(classifier_activation, name="classifier_activation")(
            outputs
        )
    return keras.Model(inputs, outputs, name=name)
