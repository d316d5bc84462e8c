"""Optimizers, learning-rate schedules and the weight average, built from the options.

- :class:`WarmupDecay`: a linear warmup (Goyal et al., "Accurate, Large Minibatch SGD:
  Training ImageNet in 1 Hour", 2017, Sec. 2.2) followed by a constant, cosine (Loshchilov &
  Hutter, "SGDR", ICLR 2017, Eq. 5 without restarts), step or exponential decay.
- :func:`build_optimizer`: SGD with momentum, RMSprop or Adam, with decoupled weight decay
  (Loshchilov & Hutter, ICLR 2019) that skips biases and normalization parameters (He et al.,
  "Bag of Tricks", CVPR 2019, Sec. 3.1 "no bias decay").
- The exponential moving average of the weights (Polyak & Juditsky, 1992) kept by the Keras
  optimizer, with the warmup of ``tf.train.ExponentialMovingAverage``'s ``num_updates``: the
  decay at step t is ``min(decay, (1 + t) / (10 + t))``, so that an average started from random
  weights forgets them in a few steps instead of thousands. :func:`swapped_ema_weights` puts
  the average into the model while the model is evaluated or saved.
"""

from __future__ import annotations

import contextlib
import math

import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.train.options import OptimizerOptions, ScheduleOptions


@keras.saving.register_keras_serializable(package="edgeline")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate at optimizer step ``step`` (0-based).

    Args:
      peak_learning_rate: the rate at the end of the warmup.
      total_steps: steps of the whole schedule (warmup included).
      warmup_steps: steps of the linear ramp ``peak * (step + 1) / warmup_steps``.
      decay: ``"constant"``, ``"cosine"``, ``"step"`` or ``"exponential"``.
      final_fraction: cosine: the rate at ``total_steps`` as a fraction of the peak.
      boundaries: step: optimizer steps at which the rate is multiplied by ``decay_rate``.
      decay_rate: step and exponential: the factor.
      decay_steps: exponential: the rate is ``peak * decay_rate ** (t / decay_steps)``.
    """

    def __init__(
        self,
        peak_learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        final_fraction: float = 0.0,
        boundaries: tuple[int, ...] = (),
        decay_rate: float = 0.1,
        decay_steps: int = 1,
    ):
        super().__init__()
        if decay not in ("constant", "cosine", "step", "exponential"):
            raise ValueError(f"Received: decay={decay!r}; expected constant, cosine, step or "
                             "exponential")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.decay = decay
        self.final_fraction = float(final_fraction)
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_rate = float(decay_rate)
        self.decay_steps = max(int(decay_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak_learning_rate, tf.float32)
        warmup = float(self.warmup_steps)
        # Steps since the warmup ended, and the length of the decay phase.
        after = tf.maximum(step - warmup, 0.0)
        decay_length = float(max(self.total_steps - self.warmup_steps, 1))
        if self.decay == "constant":
            decayed = peak
        elif self.decay == "cosine":
            progress = tf.minimum(after / decay_length, 1.0)
            cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
            decayed = peak * (self.final_fraction + (1.0 - self.final_fraction) * cosine)
        elif self.decay == "step":
            passed = tf.add_n(
                [tf.cast(step >= float(b), tf.float32) for b in self.boundaries]
                or [tf.constant(0.0)]
            )
            decayed = peak * tf.pow(self.decay_rate, passed)
        else:
            decayed = peak * tf.pow(self.decay_rate, after / float(self.decay_steps))
        if self.warmup_steps == 0:
            return decayed
        ramp = peak * (step + 1.0) / warmup
        return tf.where(step < warmup, ramp, decayed)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "final_fraction": self.final_fraction,
            "boundaries": list(self.boundaries),
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
        }


def build_schedule(
    options: ScheduleOptions,
    *,
    peak_learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
) -> WarmupDecay:
    """The options' schedule over ``epochs`` epochs of ``steps_per_epoch`` steps."""
    return WarmupDecay(
        peak_learning_rate=peak_learning_rate,
        total_steps=steps_per_epoch * epochs,
        warmup_steps=round(options.warmup_epochs * steps_per_epoch),
        decay=options.name,
        final_fraction=options.final_fraction,
        boundaries=tuple(round(b * steps_per_epoch) for b in options.boundaries),
        decay_rate=options.decay_rate,
        decay_steps=max(round(options.decay_epochs * steps_per_epoch), 1),
    )


class _WarmedUpAverage:
    """Mixin for a Keras optimizer: the weight average's decay warms up as in
    ``tf.train.ExponentialMovingAverage(num_updates=step)``."""

    def _update_model_variables_moving_average(self, var_list):
        if not self.use_ema:
            return
        step = tf.cast(self.iterations, tf.float32)
        momentum = tf.minimum(float(self.ema_momentum), (1.0 + step) / (10.0 + step))
        for var in var_list:
            average = self._model_variables_moving_average[self._index_dict[self._var_key(var)]]
            average.assign(momentum * average + (1.0 - momentum) * tf.cast(var, average.dtype))


_OPTIMIZERS = {
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
}


def _averaged_class(base: type) -> type:
    return type(f"Averaged{base.__name__}", (_WarmedUpAverage, base), {})


_AVERAGED = {name: _averaged_class(cls) for name, cls in _OPTIMIZERS.items()}


def build_optimizer(
    options: OptimizerOptions,
    *,
    learning_rate,
    ema_decay: float | None = None,
    jit_compile: bool = False,
):
    """A Keras optimizer from the options; ``learning_rate`` is a float or a schedule.

    Call :func:`exclude_from_weight_decay` before the first step.
    """
    common = dict(
        learning_rate=learning_rate,
        weight_decay=options.weight_decay or None,
        clipnorm=options.clipnorm,
        use_ema=ema_decay is not None,
        ema_momentum=ema_decay if ema_decay is not None else 0.99,
        jit_compile=jit_compile,
    )
    cls = (_AVERAGED if ema_decay is not None else _OPTIMIZERS)[options.name]
    if options.name == "sgd":
        return cls(momentum=options.momentum, nesterov=options.nesterov, **common)
    if options.name == "rmsprop":
        return cls(rho=options.rho, momentum=options.momentum, epsilon=options.epsilon, **common)
    return cls(beta_1=options.beta_1, beta_2=options.beta_2, epsilon=options.epsilon, **common)


def exclude_from_weight_decay(optimizer, model) -> None:
    """No decay on biases and normalization parameters: every variable of rank <= 1. Call it
    before the optimizer is built (Keras refuses afterwards), i.e. between compile and fit."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if getattr(inner, "weight_decay", None):
        inner.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if v.shape.rank <= 1]
        )


def _average_slots(optimizer, variables):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if not getattr(inner, "use_ema", False) or not getattr(inner, "_built", False):
        return None
    averages = inner._model_variables_moving_average
    return [averages[inner._index_dict[inner._var_key(v)]] for v in variables]


def has_weight_average(optimizer, model) -> bool:
    return optimizer is not None and _average_slots(optimizer, model.trainable_variables) is not None


def swap_ema_weights(optimizer, model) -> None:
    """Exchanges the model's trainable weights and their moving averages, in place."""
    variables = model.trainable_variables
    averages = _average_slots(optimizer, variables)
    if averages is None:
        return
    strategy = model.distribute_strategy
    # In cross-replica context so mirrored variables are updated on every replica.
    with strategy.scope():
        for variable, average in zip(variables, averages):
            current = tf.identity(variable)
            variable.assign(tf.cast(average, variable.dtype))
            average.assign(tf.cast(current, average.dtype))


@contextlib.contextmanager
def swapped_ema_weights(optimizer, model):
    """Inside the block the model holds the weight average (a no-op without one)."""
    swap_ema_weights(optimizer, model)
    try:
        yield
    finally:
        swap_ema_weights(optimizer, model)


class EvaluateWithAverage(keras.callbacks.Callback):
    """Validation during ``fit`` sees the averaged weights, training the raw ones."""

    def on_test_begin(self, logs=None):
        swap_ema_weights(self.model.optimizer, self.model)

    def on_test_end(self, logs=None):
        swap_ema_weights(self.model.optimizer, self.model)
