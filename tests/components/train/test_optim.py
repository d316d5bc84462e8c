"""Schedules, optimizers, decoupled weight decay and the weight average."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.components.train import optim
from edgeline.components.train.options import OptimizerOptions, ScheduleOptions


def _rates(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_warmup_is_linear_then_cosine_reaches_the_final_fraction():
    schedule = optim.build_schedule(
        ScheduleOptions(name="cosine", warmup_epochs=1, final_fraction=0.1),
        peak_learning_rate=0.4, steps_per_epoch=10, epochs=5,
    )
    np.testing.assert_allclose(_rates(schedule, range(10)), 0.4 * np.arange(1, 11) / 10,
                               rtol=1e-6)
    # SGDR Eq. 5: eta = eta_min + (eta_max - eta_min) (1 + cos(pi t / T)) / 2, T = 40 steps.
    for step in (10, 20, 35, 50):
        t = min(step - 10, 40) / 40
        expected = 0.4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_step_and_exponential_decay():
    step = optim.build_schedule(ScheduleOptions(name="step", boundaries=(2, 4), decay_rate=0.1),
                                peak_learning_rate=1.0, steps_per_epoch=5, epochs=6)
    np.testing.assert_allclose(_rates(step, [0, 9, 10, 19, 20, 29]),
                               [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)
    exponential = optim.build_schedule(
        ScheduleOptions(name="exponential", decay_rate=0.5, decay_epochs=2),
        peak_learning_rate=1.0, steps_per_epoch=5, epochs=6,
    )
    np.testing.assert_allclose(_rates(exponential, [0, 10, 20, 5]),
                               [1, 0.5, 0.25, 0.5 ** 0.5], rtol=1e-5)
    constant = optim.build_schedule(ScheduleOptions(name="constant"), peak_learning_rate=0.3,
                                    steps_per_epoch=5, epochs=2)
    np.testing.assert_allclose(_rates(constant, [0, 9]), [0.3, 0.3], rtol=1e-6)


def test_schedule_config_round_trips():
    schedule = optim.WarmupDecay(0.1, total_steps=100, warmup_steps=5, decay="step",
                                 boundaries=(50,))
    again = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert again.get_config() == schedule.get_config()


@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adam", "Adam")])
def test_optimizer_by_name(name, cls):
    optimizer = optim.build_optimizer(OptimizerOptions(name=name, learning_rate=0.1,
                                                       weight_decay=1e-4), learning_rate=0.1)
    assert type(optimizer).__name__ == cls
    assert optimizer.weight_decay == pytest.approx(1e-4)
    averaged = optim.build_optimizer(OptimizerOptions(name=name), learning_rate=0.1,
                                     ema_decay=0.9)
    assert averaged.use_ema and isinstance(averaged, getattr(keras.optimizers, cls))


def _dense_model():
    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1, name="dense")(inputs))


def test_weight_decay_is_decoupled_and_skips_biases():
    model = _dense_model()
    model.get_layer("dense").set_weights([np.ones((2, 1), np.float32), np.ones(1, np.float32)])
    optimizer = optim.build_optimizer(
        OptimizerOptions(name="sgd", momentum=0.0, weight_decay=0.5), learning_rate=0.1)
    optim.exclude_from_weight_decay(optimizer, model)  # before the optimizer is built
    optimizer.build(model.trainable_variables)
    zero_gradients = [tf.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zero_gradients, model.trainable_variables))
    kernel, bias = model.get_layer("dense").get_weights()
    # With a zero gradient only the decay acts: w <- w - lr * wd * w (Loshchilov & Hutter).
    np.testing.assert_allclose(kernel, np.full((2, 1), 1 - 0.1 * 0.5), rtol=1e-6)
    np.testing.assert_allclose(bias, [1.0])


def test_weight_average_warms_up_and_swaps_in_and_out():
    model = _dense_model()
    optimizer = optim.build_optimizer(OptimizerOptions(name="sgd", momentum=0.0),
                                      learning_rate=1.0, ema_decay=0.99)
    optimizer.build(model.trainable_variables)
    kernel = model.trainable_variables[0]
    start = kernel.numpy()
    average = start.copy()
    gradient = np.full(start.shape, 0.5, np.float32)
    for step in range(3):
        optimizer.apply_gradients([(tf.constant(gradient), kernel),
                                   (tf.zeros(1), model.trainable_variables[1])])
        # tf.train.ExponentialMovingAverage(num_updates): decay = min(d, (1 + t) / (10 + t)).
        decay = min(0.99, (1 + step) / (10 + step))
        average = decay * average + (1 - decay) * kernel.numpy()
    raw = kernel.numpy()
    with optim.swapped_ema_weights(optimizer, model):
        np.testing.assert_allclose(kernel.numpy(), average, rtol=1e-5)
    np.testing.assert_allclose(kernel.numpy(), raw)
    assert optim.has_weight_average(optimizer, model)
