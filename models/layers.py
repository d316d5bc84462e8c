"""Layers shared by the networks of :mod:`edgeline.models`.

- :class:`StochasticDepth` joins a residual branch to its shortcut, dropping the branch at
  random during training: Huang, Sun, Liu, Sedra, Weinberger, "Deep Networks with Stochastic
  Depth", ECCV 2016 (arXiv:1603.09382).
- :func:`survival_probabilities` gives each residual block its survival probability p_l under
  the paper's linear-decay rule (its Eq. 4) or the uniform rule.
- :class:`ChannelZeroPad` is the parameter-free "option A" shortcut of He, Zhang, Ren, Sun,
  "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv:1512.03385), Sec. 4.2: the
  shortcut is subsampled and its extra channels are zeros.

Every layer is registered with ``keras.saving.register_keras_serializable(package="edgeline")``
so that a model holding it round-trips through ``get_config()`` / ``from_config()`` and the
``.keras`` format without ``custom_objects``. At inference each layer is plain arithmetic
(ADD, MUL, PAD), so models that hold them convert to TFLite's builtin op set.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf
import tf_keras as keras

SurvivalRule = Literal["linear", "uniform"]
DropGranularity = Literal["batch", "sample"]


def survival_probabilities(
    num_blocks: int, final_survival_probability: float, rule: SurvivalRule = "linear"
) -> list[float]:
    """Survival probability p_l of residual blocks l = 1..L (Huang et al., 2016, Sec. 3).

    The linear-decay rule is the paper's Eq. 4, ``p_l = 1 - (l / L) * (1 - p_L)``: the input
    (p_0 = 1) always survives and the last block survives with ``p_L``, because early blocks
    extract low-level features that later blocks use. The uniform rule gives every block
    ``p_L``.
    """
    if num_blocks < 1:
        raise ValueError(f"Received: num_blocks={num_blocks}; num_blocks must be >= 1")
    if not 0.0 < final_survival_probability <= 1.0:
        raise ValueError(
            f"Received: final_survival_probability={final_survival_probability}; "
            "it must be in (0, 1]"
        )
    if rule == "linear":
        return [
            1.0 - (block / num_blocks) * (1.0 - final_survival_probability)
            for block in range(1, num_blocks + 1)
        ]
    if rule == "uniform":
        return [float(final_survival_probability)] * num_blocks
    raise ValueError(f"Received: rule={rule!r}; rule must be 'linear' or 'uniform'")


@keras.saving.register_keras_serializable(package="edgeline")
class StochasticDepth(keras.__internal__.layers.BaseRandomLayer):
    """``shortcut + b * residual`` with ``b ~ Bernoulli(p_l)`` in training, ``p_l`` at inference.

    Huang et al. (2016), Eq. 2 and Sec. 3: during training the residual branch ``f_l`` of
    block ``l`` survives with probability ``p_l`` and is replaced by the identity otherwise;
    at test time every branch is active and is scaled by its expected survival, so that
    ``H_l = shortcut + p_l * f_l(H_{l-1})``. (The post-addition ReLU of a v1 block is applied
    by the caller.) The branch is not rescaled by ``1 / p_l`` in training: that is the paper's
    formulation, and the one whose inference rule is "scale by p_l".

    Args:
      survival_probability: p_l in (0, 1]. With 1.0 the layer is a plain addition.
      granularity: ``"batch"`` draws one Bernoulli per call, so the whole mini-batch drops the
        block together, as in the paper ("for each mini-batch, randomly drop a subset of
        layers"); ``"sample"`` draws one per example (the "drop path" of later work, e.g.
        Larsson et al., 2017; Tan & Le, 2019).
      seed: optional integer seed. With a seed the sequence of drops is the same on every
        run; without one the seed is drawn from Python's ``random`` module, which
        ``keras.utils.set_random_seed`` seeds.

    Call arguments:
      inputs: a list ``[shortcut, residual]`` of tensors of the same shape.
      training: whether to drop at random (training) or scale (inference).
    """

    def __init__(
        self,
        survival_probability: float,
        granularity: DropGranularity = "batch",
        seed: int | None = None,
        **kwargs,
    ):
        # A tf.random.Generator per layer ("stateful"): seeded, its stream advances on every
        # call, eagerly and inside tf.function, independently of other layers.
        kwargs.setdefault("rng_type", "stateful")
        super().__init__(seed=seed, **kwargs)
        if not 0.0 < float(survival_probability) <= 1.0:
            raise ValueError(
                f"Received: survival_probability={survival_probability}; "
                "it must be in (0, 1]"
            )
        if granularity not in ("batch", "sample"):
            raise ValueError(
                f"Received: granularity={granularity!r}; granularity must be 'batch' or 'sample'"
            )
        self.survival_probability = float(survival_probability)
        self.granularity = granularity
        self.seed = seed

    def call(self, inputs, training=None):
        shortcut, residual = inputs
        if self.survival_probability == 1.0:
            return shortcut + residual
        if training is None:
            training = keras.backend.learning_phase()

        def dropped():
            return shortcut + self._drop(residual)

        def scaled():
            return shortcut + self.survival_probability * residual

        if isinstance(training, bool | int):  # known when traced: no cond in the graph
            return dropped() if training else scaled()
        return tf.cond(tf.cast(training, tf.bool), dropped, scaled)

    def _drop(self, residual):
        if self.granularity == "batch":
            mask_shape = [1] * residual.shape.rank
        else:
            mask_shape = [tf.shape(residual)[0]] + [1] * (residual.shape.rank - 1)
        uniform = self._random_generator.random_uniform(mask_shape, dtype=residual.dtype)
        survives = tf.cast(uniform < self.survival_probability, residual.dtype)
        return survives * residual

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(
            survival_probability=self.survival_probability,
            granularity=self.granularity,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="edgeline")
class ChannelZeroPad(keras.layers.Layer):
    """Appends ``extra_channels`` zero channels (NHWC): the "option A" shortcut of He et al.

    He et al. (2016), Sec. 3.3 and 4.2: when a stage doubles the width, the identity shortcut
    "performs identity mapping, with extra zero entries padded for increasing dimensions",
    so the shortcut has no parameters. ResNet-110 on CIFAR (He et al.; Huang et al.) uses it.
    """

    def __init__(self, extra_channels: int, **kwargs):
        super().__init__(**kwargs)
        if extra_channels < 0:
            raise ValueError(
                f"Received: extra_channels={extra_channels}; extra_channels must be >= 0"
            )
        self.extra_channels = int(extra_channels)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], [0, 0], [0, 0], [0, self.extra_channels]])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        if shape[-1] is not None:
            shape[-1] += self.extra_channels
        return tf.TensorShape(shape)

    def get_config(self):
        config = super().get_config()
        config.update(extra_channels=self.extra_channels)
        return config


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to a multiple of ``divisor`` without losing more than 10%.

    The rule of the MobileNet v2 reference code (and keras.applications), which keeps every
    width a multiple of 8 for the width multipliers of Sandler et al. (2018).
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def ceil_mode_padding(size: int | None, pool_size: int, strides: int) -> int:
    """Bottom/right padding that makes a VALID pooling round its output size up.

    Caffe (where SqueezeNet was defined) and PyTorch's ``ceil_mode=True`` give
    ``ceil((size - pool_size) / strides) + 1`` outputs; a VALID pooling gives the floor. Padding
    by the remainder reproduces the ceiling. The padded zeros never win a max: the pooled
    activations come out of a ReLU and every window still holds at least one real value.
    """
    if size is None:
        raise ValueError(
            "Received: an input with an unknown spatial size; ceil-mode pooling needs a static "
            "input_shape such as (224, 224, 3)"
        )
    remainder = (size - pool_size) % strides
    return 0 if remainder == 0 else strides - remainder


# Functional building blocks shared by the network modules. Batch norm uses PyTorch's and the
# papers' reference settings (momentum 0.9, epsilon 1e-5) rather than Keras' 0.99 / 1e-3.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def conv2d(
    inputs,
    filters: int,
    kernel_size: int,
    strides: int = 1,
    use_bias: bool = False,
    name: str | None = None,
):
    """A convolution that keeps ``ceil(size / strides)`` outputs with symmetric padding.

    TensorFlow's ``padding="same"`` pads a strided convolution more at the bottom/right than
    at the top/left; the reference ResNet and DenseNet (Torch, Caffe) pad ``kernel_size // 2``
    on every side. For a stride above 1 the padding is explicit, so the features line up with
    the papers' (as keras.applications does with ``ZeroPadding2D``). Convolutions followed by
    batch norm have no bias: the norm's beta replaces it.
    """
    if strides == 1 or kernel_size == 1:
        padding = "same" if strides == 1 else "valid"
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
            kernel_initializer="he_normal", name=name,
        )(inputs)
    padded = keras.layers.ZeroPadding2D(
        kernel_size // 2, name=None if name is None else f"{name}_pad"
    )(inputs)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="valid", use_bias=use_bias,
        kernel_initializer="he_normal", name=name,
    )(padded)


def batch_norm(inputs, name: str | None = None):
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name
    )(inputs)


def classifier_head(
    features,
    num_classes: int,
    dropout_rate: float = 0.0,
    activation: str | None = None,
    seed: int | None = None,
):
    """Global average pooling, optional dropout, and a dense layer with ``num_classes`` outputs.

    With ``activation=None`` the outputs are logits (train with ``from_logits=True``);
    ``"softmax"`` gives probabilities.
    """
    pooled = keras.layers.GlobalAveragePooling2D(name="global_pool")(features)
    if dropout_rate > 0.0:
        pooled = keras.layers.Dropout(dropout_rate, seed=seed, name="classifier_dropout")(pooled)
    return keras.layers.Dense(num_classes, activation=activation, name="classifier")(pooled)


def check_rate(name: str, value: float) -> None:
    """Raises for a dropout-style rate outside [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Received: {name}={value}; {name} must be in [0, 1)")


def check_choice(name: str, value, choices) -> None:
    """Raises for a value that is not one of ``choices``."""
    if value not in choices:
        raise ValueError(
            f"Received: {name}={value!r}; {name} must be one of {', '.join(map(repr, choices))}"
        )
