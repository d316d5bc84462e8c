"""Images for the export stage: the calibration set and the held-out parity set.

Both come from an Examples artifact's TFRecords (keys of :mod:`edgeline.pipeline.records`)
and are prepared as the Model artifact's ``preprocessing.json`` says, up to uint8 RGB pixels at
the model's input size (:func:`edgeline.common.preprocessing.evaluation_pixels`, the shared
evaluation preprocessing). The normalization ``(pixels / 255 - mean) / std`` is left to the caller,
because an export with the preprocessing inside takes exactly these pixels, and the source model
takes them normalized: both see the same image.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from edgeline.common.preprocessing import decode, evaluation_pixels
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Prepared images and what the metrics need about them.

    Attributes:
      pixels: uint8 RGB at the model's input size, ``(N, H, W, 3)``.
      labels: classification: the 0-based class of each image, ``(N,)``.
      source_ids: detection: the ``image/source_id`` (the COCO image id) of each image.
      original_sizes: detection: ``(height, width)`` of each image before resizing, ``(N, 2)``.
    """

    pixels: np.ndarray
    labels: np.ndarray | None = None
    source_ids: tuple[str, ...] = ()
    original_sizes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.pixels.shape[0])


def _shards(examples_dir: str | os.PathLike, split: str) -> list[str]:
    paths = records.shard_paths(examples_dir, split)
    if not paths:
        raise UserError(
            f"no '{split}' shards in {os.fspath(examples_dir)!r} (expected "
            f"{records.shard_name(split, 0, 1).replace('00000-of-00001', '?????-of-?????')})"
        )
    return paths


def _dataset(paths: list[str], *, count: int, shuffle_seed: int | None):
    """The first ``count`` serialized examples, or a seeded random ``count`` of them."""
    import tensorflow as tf

    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle_seed is None:
        return tf.data.TFRecordDataset(files).take(count)
    # Shard order, interleaving and a shuffle buffer all follow the seed, so the same seed
    # gives the same calibration set without reading a whole (ImageNet-sized) split.
    files = files.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=False)
    examples = files.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(paths)))
    return examples.shuffle(max(1024, 4 * count), seed=shuffle_seed,
                            reshuffle_each_iteration=False).take(count)


def classification_images(examples_dir, *, split: str, preprocessing, count: int,
                          shuffle_seed: int | None = None) -> ImageSet:
    """Up to ``count`` images of ``split`` with their labels (see :func:`_dataset`)."""
    import tensorflow as tf

    def prepare(serialized):
        parsed = records.parse_classification(serialized)
        encoded = parsed[records.ENCODED]
        return evaluation_pixels(decode(encoded), preprocessing), parsed[records.LABEL]

    dataset = _dataset(_shards(examples_dir, split), count=count, shuffle_seed=shuffle_seed)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pixels, labels = [], []
    for image, label in dataset.batch(64).as_numpy_iterator():
        pixels.append(image)
        labels.append(label)
    return ImageSet(pixels=np.concatenate(pixels), labels=np.concatenate(labels).astype(np.int64))


def detection_images(examples_dir, *, split: str, preprocessing, count: int,
                     shuffle_seed: int | None = None) -> ImageSet:
    """Up to ``count`` images of ``split`` with their source ids and original sizes."""
    import tensorflow as tf

    def prepare(serialized):
        parsed = records.parse_detection(serialized)
        image = decode(parsed[records.ENCODED])
        size = tf.shape(image)[:2]
        return evaluation_pixels(image, preprocessing), parsed[records.SOURCE_ID], size

    dataset = _dataset(_shards(examples_dir, split), count=count, shuffle_seed=shuffle_seed)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pixels, ids, sizes = [], [], []
    for image, source_id, size in dataset.batch(64).as_numpy_iterator():
        pixels.append(image)
        ids.extend(s.decode() for s in source_id)
        sizes.append(size)
    return ImageSet(pixels=np.concatenate(pixels), source_ids=tuple(ids),
                    original_sizes=np.concatenate(sizes).astype(np.int64))


def load_images(examples_dir, *, task: str, split: str, preprocessing, count: int,
                shuffle_seed: int | None = None) -> ImageSet:
    loader = classification_images if task == "classification" else detection_images
    return loader(examples_dir, split=split, preprocessing=preprocessing, count=count,
                  shuffle_seed=shuffle_seed)
