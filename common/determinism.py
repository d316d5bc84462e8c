"""Determinism for one run, and nothing after it: seeds, op determinism, the precision policy.

TensorFlow's op determinism and Keras' global dtype policy are process-wide. A stage turns them
on or changes them for its own run, but other work in the same process (the next pipeline step,
the next test) may use ops that have no deterministic kernel, or build a model that must not
inherit a training's mixed precision. So every stage sets them inside :func:`determinism`, which
puts back on exit what it found on entry:

    with determinism(seed=seed, deterministic=deterministic):
        ...   # train, compress or rl: may also set a precision policy; restored on exit

Seeding (``keras.utils.set_random_seed``: Python's ``random``, NumPy and TensorFlow) cannot be
undone, and need not be: it makes what follows reproducible without making anything fail.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def op_determinism_enabled() -> bool:
    from tensorflow.python.framework import config as tf_config  # is/disable_op_determinism

    return bool(tf_config.is_op_determinism_enabled())


@contextlib.contextmanager
def determinism(*, deterministic: bool, seed: int | None = None) -> Iterator[None]:
    """Seeds Python, NumPy and TensorFlow with ``seed`` (unless None); with ``deterministic``
    also makes every op deterministic (TensorFlow then refuses ops without a deterministic
    kernel). On exit, op determinism and Keras' global precision policy are what they were on
    entry, whatever the block changed."""
    import tensorflow as tf
    import tf_keras as keras
    from tensorflow.python.framework import config as tf_config

    previous_policy = keras.mixed_precision.global_policy().name
    was_deterministic = op_determinism_enabled()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if deterministic and not was_deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if keras.mixed_precision.global_policy().name != previous_policy:
            keras.mixed_precision.set_global_policy(previous_policy)
        if not was_deterministic and op_determinism_enabled():
            tf_config.disable_op_determinism()
