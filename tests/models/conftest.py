"""Helpers shared by the model tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeline import models


def count_trainable(model) -> int:
    """Trainable parameters: what the published counts count (module docstring of
    test_build_all.py)."""
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


@pytest.fixture(scope="session")
def trainable_parameters():
    return count_trainable


@pytest.fixture(scope="session")
def assert_config_round_trip():
    """``from_config(get_config())`` rebuilds the same graph; with the weights copied over it
    computes the same outputs (inference mode) as the original."""

    def check(model, batch_shape: tuple[int, ...], seed: int = 0):
        config = model.get_config()
        serialized = json.dumps(config, sort_keys=True)  # JSON-able, as .keras files need
        clone = type(model).from_config(config)  # no custom_objects: layers are registered
        assert json.dumps(clone.get_config(), sort_keys=True) == serialized
        assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
        clone.set_weights(model.get_weights())
        images = np.random.default_rng(seed).standard_normal(batch_shape).astype(np.float32)
        expected = model(images, training=False)
        np.testing.assert_array_equal(clone(images, training=False).numpy(), expected.numpy())
        return clone

    return check


@pytest.fixture(scope="session")
def build_cached():
    """``models.build`` with a session-wide cache: building is the expensive part of these
    tests (ImageNet-size networks take seconds), so tests that only inspect a network share
    one build. Callers must not change the model they get."""
    cache = {}

    def build(name, num_classes=None, input_shape=None, **options):
        key = (name, num_classes, None if input_shape is None else tuple(input_shape),
               tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = models.build(name, num_classes=num_classes, input_shape=input_shape,
                                      **options)
        return cache[key]

    yield build
    cache.clear()
