"""The determinism context manager: seeds, op determinism for the block only, and the
precision policy put back as it was."""

from __future__ import annotations

import random

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.determinism import determinism, op_determinism_enabled


@pytest.fixture
def clean_state():
    import tf_keras as keras
    from tensorflow.python.framework import config as tf_config

    policy = keras.mixed_precision.global_policy().name
    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
    yield
    keras.mixed_precision.set_global_policy(policy)
    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def test_op_determinism_is_on_inside_and_off_after(clean_state):
    assert not op_determinism_enabled()
    with determinism(seed=0, deterministic=True):
        assert op_determinism_enabled()
    assert not op_determinism_enabled()


def test_it_is_restored_when_the_block_raises(clean_state):
    import tf_keras as keras

    with pytest.raises(RuntimeError, match="boom"):
        with determinism(seed=0, deterministic=True):
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            raise RuntimeError("boom")
    assert not op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_policy_set_inside_is_undone(clean_state):
    import tf_keras as keras

    with determinism(deterministic=False):
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        assert not op_determinism_enabled()
    assert keras.mixed_precision.global_policy().name == "float32"


def test_determinism_already_on_stays_on(clean_state):
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    with determinism(deterministic=False):
        pass
    with determinism(deterministic=True):
        pass
    assert op_determinism_enabled()


def test_the_same_seed_gives_the_same_numbers(clean_state):
    import tensorflow as tf

    def draw(seed):
        with determinism(seed=seed, deterministic=False):
            return (random.random(), float(np.random.random()),
                    float(tf.random.uniform([])))

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
