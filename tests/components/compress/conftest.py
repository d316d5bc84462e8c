"""Small tf_keras models and generated data for the compress tests.

The images are 16x16 RGB with the class drawn as a bright bar in one of four places (top,
bottom, left, right) over noise, so a small CNN learns them in a few epochs and the tests can
check that compression keeps the accuracy, not just that it runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401
from edgeline.components.compress.finetune import TrainingData

NUM_CLASSES = 4
IMAGE_SIZE = 16


def bar_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, NUM_CLASSES, count)
    images = rng.normal(0.0, 0.6, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    for image, label in zip(images, labels):
        offset = rng.randint(0, 4)
        if label == 0:
            image[offset:offset + 3, :, :] += 1.5
        elif label == 1:
            image[-offset - 3:IMAGE_SIZE - offset, :, :] += 1.5
        elif label == 2:
            image[:, offset:offset + 3, :] += 1.5
        else:
            image[:, -offset - 3:IMAGE_SIZE - offset, :] += 1.5
    return images, labels.astype(np.int64)


def training_data(images: np.ndarray, labels: np.ndarray, *, batch_size: int = 32,
                  seed: int = 0, validation=None) -> TrainingData:
    train = (tf.data.Dataset.from_tensor_slices((images, labels))
             .shuffle(len(images), seed=seed).repeat().batch(batch_size))
    return TrainingData(
        train=train,
        steps_per_epoch=len(images) // batch_size,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        validation=validation,
        num_classes=NUM_CLASSES,
    )


def small_cnn(seed: int = 0, width: int = 32, batch_norm: bool = True) -> keras.Model:
    """stem conv -> [conv -> BN -> ReLU] x 2 -> pool -> dense -> logits. The middle convs
    hold most of the weights, as in real networks."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    for index in range(2):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm,
                                name=f"conv{index}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{index}")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def accuracy(model, images: np.ndarray, labels: np.ndarray) -> float:
    predictions = model.predict(images, verbose=0, batch_size=256)
    return float(np.mean(np.argmax(predictions, -1) == labels))


@pytest.fixture(scope="session")
def bar_data():
    train = bar_images(640, seed=1)
    test = bar_images(256, seed=2)
    return train, test


@pytest.fixture(scope="session")
def trained_cnn(bar_data):
    """A small CNN trained to high accuracy on the bar images (the model to compress)."""
    (images, labels), _ = bar_data
    model = small_cnn()
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=4, batch_size=32, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="session")
def make_data():
    """``make_data(images, labels, batch_size=32)`` -> a :class:`TrainingData`."""
    return training_data


@pytest.fixture(scope="session")
def model_accuracy():
    """``model_accuracy(model, images, labels)`` -> top-1 accuracy of the Keras model."""
    return accuracy


@pytest.fixture(scope="session")
def make_cnn():
    """``make_cnn(seed=0, width=32, batch_norm=True)`` -> an untrained small CNN."""
    return small_cnn


@pytest.fixture(scope="session")
def pruned80(bar_data, trained_cnn):
    """The trained CNN pruned to 80% (the default exclusions), fine-tuned for 2 epochs."""
    from edgeline.components.compress.options import FineTuneOptions, PruneOptions
    from edgeline.components.compress.prune import prune

    (images, labels), _ = bar_data
    return prune(trained_cnn, training_data(images, labels), PruneOptions(target_sparsity=0.8),
                 FineTuneOptions(epochs=2, learning_rate=1e-3))
