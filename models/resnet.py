"""ResNet: basic and bottleneck blocks, v1 and pre-activation v2, with stochastic depth.

Papers:
- He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
  (arXiv:1512.03385): v1 blocks (conv-BN-ReLU, ReLU after the addition), the ImageNet stem
  (7x7/2 convolution and 3x3/2 max pooling, Table 1) and the CIFAR networks of depth 6n + 2
  (3x3 stem, three stages of widths 16/32/64, zero-padding "option A" shortcuts, Sec. 4.2).
- He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016
  (arXiv:1603.05027): v2 "full pre-activation" blocks (BN-ReLU-conv), a clean identity path, a
  projection shortcut fed by the pre-activated input, and BN-ReLU after the last block.
- Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016
  (arXiv:1603.09382): each residual branch survives with probability p_l in training and is
  scaled by p_l at inference (:class:`edgeline.models.layers.StochasticDepth`); p_l follows
  the linear decay ``p_l = 1 - (l / L)(1 - p_L)`` or is uniform. Their CIFAR ResNet-110 uses
  p_L = 0.5 (preset ``resnet110_cifar``).
- Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv:1605.07146): pre-activation
  basic blocks widened by a factor k, dropout between the two convolutions (presets
  ``wide_resnet16_4`` and ``wide_resnet28_10``).

The stride of a bottleneck block sits on its 3x3 convolution (as in torchvision and Model
Garden, "ResNet v1.5"); the parameter count is the same as with the stride on the first 1x1.
Convolutions followed by batch norm carry no bias, so ResNet-50 (1000 classes) has 25,557,032
trainable parameters, the count of the reference implementation.

Outputs are logits unless ``classifier_activation`` says otherwise.
"""

from __future__ import annotations

from typing import Literal

import tf_keras as keras

from edgeline.models.layers import (
    ChannelZeroPad,
    StochasticDepth,
    batch_norm,
    check_choice,
    check_rate,
    classifier_head,
    conv2d,
    survival_probabilities,
)

BOTTLENECK_EXPANSION = 4  # He et al. (2016), Fig. 5: 1x1 (w), 3x3 (w), 1x1 (4w)


def resnet(*, num_classes: int, input_shape: tuple[int | None, int | None, int],
           name: str = "resnet", block_type: Literal["basic", "bottleneck"] = "bottleneck",
           blocks_per_stage: tuple[int, ...] = (3, 4, 6, 3),
           stage_widths: tuple[int, ...] = (64, 128, 256, 512), width_factor: int = 1,
           version: Literal[1, 2] = 1, stem: Literal["imagenet", "cifar"] = "imagenet",
           stem_width: int | None = None,
           shortcut: Literal["projection", "zero_pad"] = "projection",
           final_survival_probability: float = 1.0,
           survival_rule: Literal["linear", "uniform"] = "linear",
           stochastic_depth_granularity: Literal["batch", "sample"] = "batch",
           block_dropout_rate: float = 0.0, classifier_dropout_rate: float = 0.0,
           classifier_activation: str | None = None, seed: int | None = None) -> keras.Model:
    """Builds a ResNet.

    Args:
      block_type: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1, 3x3, 1x1 with
        4x expansion).
      blocks_per_stage: residual blocks in each stage; every stage after the first halves the
        resolution in its first block.
      stage_widths: width of each stage (the 3x3 width of a bottleneck, whose output is 4x).
      width_factor: k of Wide ResNets: multiplies the widths of basic blocks, and the inner
        (3x3) width of bottleneck blocks (as in the WRN-50-2 of the WRN paper).
      version: 1 (conv-BN-ReLU, ReLU after the addition) or 2 (pre-activation BN-ReLU-conv).
      stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (one 3x3 conv).
      stem_width: channels of the stem; 64 for the ImageNet stem and 16 for the CIFAR stem by
        default.
      shortcut: ``"projection"`` (1x1 convolution where the shape changes, "option B") or
        ``"zero_pad"`` (subsample and pad with zero channels, "option A").
      final_survival_probability: p_L of stochastic depth; 1.0 turns it off.
      survival_rule: ``"linear"`` decay over the blocks, or ``"uniform"`` p_L everywhere.
      stochastic_depth_granularity: ``"batch"`` (one draw per mini-batch, as in the paper) or
        ``"sample"`` (one draw per example).
      block_dropout_rate: dropout between the two convolutions of a basic block (WRN).
      classifier_dropout_rate: dropout before the classifier.
      classifier_activation: ``None`` for logits, or e.g. ``"softmax"``.
      seed: seeds stochastic depth and dropout.
    """
    _check_options(
        block_type=block_type,
        blocks_per_stage=blocks_per_stage,
        stage_widths=stage_widths,
        width_factor=width_factor,
        version=version,
        stem=stem,
        shortcut=shortcut,
        block_dropout_rate=block_dropout_rate,
        classifier_dropout_rate=classifier_dropout_rate,
    )
    if stem_width is None:
        stem_width = 64 if stem == "imagenet" else 16
    survival = survival_probabilities(
        sum(blocks_per_stage), final_survival_probability, survival_rule
    )
    residual_branch = _RESIDUAL_BRANCHES[(block_type, version)]

    inputs = keras.Input(shape=input_shape, name="images")
    x = _stem(inputs, stem=stem, stem_width=stem_width, version=version)
    block_index = 0
    for stage, (num_blocks, width) in enumerate(zip(blocks_per_stage, stage_widths), start=1):
        for block_in_stage in range(num_blocks):
            first_stride = 1 if stage == 1 else 2
            x = _residual_block(
                x,
                residual_branch=residual_branch,
                version=version,
                width=width * width_factor,
                output_width=_output_width(block_type, width, width_factor),
                strides=first_stride if block_in_stage == 0 else 1,
                shortcut=shortcut,
                survival_probability=survival[block_index],
                granularity=stochastic_depth_granularity,
                dropout_rate=block_dropout_rate,
                seed=None if seed is None else seed + block_index,
                name=f"stage{stage}_block{block_in_stage + 1}",
            )
            block_index += 1
    if version == 2:
        # Identity Mappings, Sec. 4.1: the last block's output is not yet normalized.
        x = keras.layers.ReLU(name="post_relu")(batch_norm(x, name="post_bn"))
    outputs = classifier_head(
        x, num_classes, classifier_dropout_rate, classifier_activation, seed=seed
    )
    return keras.Model(inputs, outputs, name=name)


def _check_options(**options) -> None:
    check_choice("block_type", options["block_type"], ("basic", "bottleneck"))
    check_choice("version", options["version"], (1, 2))
    check_choice("stem", options["stem"], ("imagenet", "cifar"))
    check_choice("shortcut", options["shortcut"], ("projection", "zero_pad"))
    check_rate("block_dropout_rate", options["block_dropout_rate"])
    check_rate("classifier_dropout_rate", options["classifier_dropout_rate"])
    blocks, widths = tuple(options["blocks_per_stage"]), tuple(options["stage_widths"])
    if not blocks or min(blocks) < 1:
        raise ValueError(
            f"Received: blocks_per_stage={blocks}; every stage needs at least one block"
        )
    if len(widths) != len(blocks):
        raise ValueError(
            f"Received: stage_widths={widths}; it needs one width per stage "
            f"({len(blocks)} stages in blocks_per_stage={blocks})"
        )
    if options["width_factor"] < 1:
        raise ValueError(
            f"Received: width_factor={options['width_factor']}; width_factor must be >= 1"
        )
    if options["shortcut"] == "zero_pad" and options["block_type"] == "bottleneck":
        raise ValueError(
            "Received: shortcut='zero_pad' with block_type='bottleneck'; zero-padding "
            "shortcuts are defined for basic blocks (He et al., 2016, Sec. 4.2)"
        )


def _output_width(block_type: str, width: int, width_factor: int) -> int:
    if block_type == "bottleneck":
        return width * BOTTLENECK_EXPANSION
    return width * width_factor


def _stem(inputs, *, stem: str, stem_width: int, version: int):
    if stem == "imagenet":
        x = conv2d(inputs, stem_width, 7, strides=2, name="stem_conv")  # (N, H/2, W/2, 64)
        if version == 1:
            x = keras.layers.ReLU(name="stem_relu")(batch_norm(x, name="stem_bn"))
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)  # (N, H/4, W/4, 64)
    x = conv2d(inputs, stem_width, 3, name="stem_conv")  # (N, H, W, 16)
    if version == 1:
        x = keras.layers.ReLU(name="stem_relu")(batch_norm(x, name="stem_bn"))
    return x


def _needs_projection(inputs, output_width: int, strides: int) -> bool:
    return strides != 1 or inputs.shape[-1] != output_width


def _shortcut(inputs, *, output_width: int, strides: int, shortcut: str, version: int, name: str):
    """The shortcut of a block whose shape changes (the caller passes the identity through)."""
    if shortcut == "zero_pad":
        x = inputs
        if strides != 1:
            x = keras.layers.AveragePooling2D(1, strides=strides, name=f"{name}_subsample")(x)
        extra = output_width - inputs.shape[-1]
        if extra < 0:
            raise ValueError(
                f"Received: a zero-padding shortcut from {inputs.shape[-1]} to {output_width} "
                "channels; zero padding can only widen"
            )
        return ChannelZeroPad(extra, name=f"{name}_zero_pad")(x) if extra else x
    x = conv2d(inputs, output_width, 1, strides=strides, name=f"{name}_proj_conv")
    # v2 keeps the shortcut path free of normalization (Identity Mappings, Fig. 4(e)).
    return batch_norm(x, name=f"{name}_proj_bn") if version == 1 else x


def _join(shortcut, residual, *, survival_probability, granularity, seed, name):
    """shortcut + residual, through stochastic depth when the block may be dropped.

    With p_l = 1 the join is a plain ``Add`` layer, so a network without stochastic depth
    holds only stock Keras layers (which TF-MOT's pruning and quantization know).
    """
    if survival_probability == 1.0:
        return keras.layers.Add(name=f"{name}_add")([shortcut, residual])
    return StochasticDepth(
        survival_probability, granularity=granularity, seed=seed, name=f"{name}_stochastic_depth"
    )([shortcut, residual])


def _dropout(x, rate: float, seed: int | None, name: str):
    return keras.layers.Dropout(rate, seed=seed, name=name)(x) if rate > 0.0 else x


def _residual_block(inputs, *, residual_branch, version, width, output_width, strides, shortcut,
                    survival_probability, granularity, dropout_rate, seed, name):
    """One residual block: ``residual_branch`` (one of :data:`_RESIDUAL_BRANCHES`) plus the
    identity, projected when the shape changes, joined through stochastic depth. v1 ends in a
    ReLU after the sum (He et al., 2016, Fig. 2); v2 leaves the sum as it is (Identity
    Mappings, Fig. 4(e))."""
    residual, shortcut_from = residual_branch(inputs, width=width, output_width=output_width,
                                              strides=strides, dropout_rate=dropout_rate,
                                              seed=seed, name=name)
    identity = inputs
    if _needs_projection(inputs, output_width, strides):
        identity = _shortcut(shortcut_from, output_width=output_width, strides=strides,
                             shortcut=shortcut, version=version, name=name)
    x = _join(identity, residual, survival_probability=survival_probability,
              granularity=granularity, seed=seed, name=name)
    return keras.layers.ReLU(name=f"{name}_out")(x) if version == 1 else x


# The residual branches return (residual, what a projection shortcut reads): the block's
# input in v1, its pre-activation in v2 (Identity Mappings, Fig. 4(e)).


def _basic_v1(inputs, *, width, output_width, strides, dropout_rate, seed, name):
    """He et al. (2016), Fig. 2: conv3x3-BN-ReLU, conv3x3-BN (add, ReLU in the block)."""
    x = conv2d(inputs, width, 3, strides=strides, name=f"{name}_conv1")
    x = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(x, name=f"{name}_bn1"))
    x = _dropout(x, dropout_rate, seed, name=f"{name}_dropout")
    x = conv2d(x, output_width, 3, name=f"{name}_conv2")
    return batch_norm(x, name=f"{name}_bn2"), inputs


def _bottleneck_v1(inputs, *, width, output_width, strides, dropout_rate, seed, name):
    """He et al. (2016), Fig. 5 right: 1x1 (w), 3x3 (w, stride), 1x1 (4w) (add, ReLU in the
    block)."""
    x = conv2d(inputs, width, 1, name=f"{name}_conv1")
    x = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(x, name=f"{name}_bn1"))
    x = conv2d(x, width, 3, strides=strides, name=f"{name}_conv2")
    x = keras.layers.ReLU(name=f"{name}_relu2")(batch_norm(x, name=f"{name}_bn2"))
    x = _dropout(x, dropout_rate, seed, name=f"{name}_dropout")
    x = conv2d(x, output_width, 1, name=f"{name}_conv3")
    return batch_norm(x, name=f"{name}_bn3"), inputs


def _preactivation(inputs, name: str):
    return keras.layers.ReLU(name=f"{name}_preact_relu")(batch_norm(inputs, name=f"{name}_preact_bn"))


def _basic_v2(inputs, *, width, output_width, strides, dropout_rate, seed, name):
    """Identity Mappings, Fig. 4(e): BN-ReLU-conv3x3, BN-ReLU-(dropout)-conv3x3 (add in the
    block)."""
    preact = _preactivation(inputs, name)
    x = conv2d(preact, width, 3, strides=strides, name=f"{name}_conv1")
    x = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(x, name=f"{name}_bn1"))
    x = _dropout(x, dropout_rate, seed, name=f"{name}_dropout")
    return conv2d(x, output_width, 3, name=f"{name}_conv2"), preact


def _bottleneck_v2(inputs, *, width, output_width, strides, dropout_rate, seed, name):
    """Identity Mappings, Fig. 4(e) with a bottleneck: BN-ReLU before each of 1x1, 3x3, 1x1
    (add in the block)."""
    preact = _preactivation(inputs, name)
    x = conv2d(preact, width, 1, name=f"{name}_conv1")
    x = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(x, name=f"{name}_bn1"))
    x = conv2d(x, width, 3, strides=strides, name=f"{name}_conv2")
    x = keras.layers.ReLU(name=f"{name}_relu2")(batch_norm(x, name=f"{name}_bn2"))
    x = _dropout(x, dropout_rate, seed, name=f"{name}_dropout")
    return conv2d(x, output_width, 1, name=f"{name}_conv3"), preact


_RESIDUAL_BRANCHES = {
    ("basic", 1): _basic_v1,
    ("bottleneck", 1): _bottleneck_v1,
    ("basic", 2): _basic_v2,
    ("bottleneck", 2): _bottleneck_v2,
}
