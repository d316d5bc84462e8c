"""The tf.data input pipeline on real TFRecords written with the records contract."""

from __future__ import annotations

import io as bytes_io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import edgeline  # noqa: F401
from edgeline.components.train import data
from edgeline.components.train.options import AugmentationOptions, DataOptions
from edgeline.pipeline.errors import UserError

OPTIONS = DataOptions(input_size=(32, 32), shuffle_buffer=64)


def _stream(examples, options=OPTIONS, *, start_epoch=0, end_epoch=2, seed=7, steps=3):
    info = data.read_examples(examples)
    return data.classification_train_dataset(
        info.train_files, options=options, num_classes=info.num_classes, seed=seed,
        batch_size=8, steps_per_epoch=steps, start_epoch=start_epoch, end_epoch=end_epoch,
        examples_per_epoch=info.train_count,
    )


def _batches(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


def test_read_examples_counts_splits_and_labels(classification_examples, detection_examples):
    info = data.read_examples(classification_examples)
    assert (info.task, info.num_classes, info.train_count, info.validation_count) == (
        "classification", 3, 48, 24)
    assert [p.rsplit("/", 1)[1] for p in info.train_files] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    detection = data.read_examples(detection_examples)
    assert detection.task == "detection" and detection.category_ids == (3, 7)


def test_missing_shards_or_labels_are_user_errors(tmp_path, classification_examples):
    with pytest.raises(UserError, match="no 'train-"):
        data.read_examples(tmp_path)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(classification_examples, copy)
    (copy / "labels.txt").unlink()
    with pytest.raises(UserError, match="labels.txt is missing"):
        data.read_examples(copy)


def test_training_batches_are_normalized_crops_with_one_hot_labels(classification_examples):
    batches = _batches(_stream(classification_examples))
    assert len(batches) == 6  # 2 epochs x 3 steps
    images, labels = batches[0]
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (8, 3) and set(labels.sum(axis=1)) == {1.0}
    # (pixels / 255 - mean) / std with ImageNet statistics stays within these bounds.
    assert images.min() >= (0 - 0.485) / 0.229 - 1e-4 and images.max() <= (1 - 0.406) / 0.225
    # The label is the dominant colour channel (the fixture's rule): the crops keep it.
    means = images.mean(axis=(1, 2)) * np.array(OPTIONS.std) + np.array(OPTIONS.mean)
    assert (means.argmax(axis=1) == labels.argmax(axis=1)).all()


def test_same_seed_same_stream_and_epochs_differ(classification_examples):
    first = _batches(_stream(classification_examples))
    second = _batches(_stream(classification_examples))
    for (a, la), (b, lb) in zip(first, second):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    other_seed = _batches(_stream(classification_examples, seed=8))
    assert not np.array_equal(first[0][0], other_seed[0][0])
    assert not np.array_equal(first[0][0], first[3][0])  # epoch 2 reshuffles and re-augments


def test_a_stream_started_at_a_later_epoch_is_the_tail_of_the_whole(classification_examples):
    """What resuming after a crash relies on: epoch k's batches do not depend on earlier ones."""
    whole = _batches(_stream(classification_examples, end_epoch=3))
    resumed = _batches(_stream(classification_examples, start_epoch=2, end_epoch=3))
    assert len(resumed) == 3
    for (a, la), (b, lb) in zip(whole[6:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_steps_beyond_one_pass_repeat_the_split(classification_examples):
    # 48 examples, batch 8: 10 steps need more than one pass.
    assert len(_batches(_stream(classification_examples, end_epoch=1, steps=10))) == 10


def _jpeg(pixels, fmt="JPEG"):
    buffer = bytes_io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, quality=100)
    return buffer.getvalue()


def test_random_resized_crop_is_a_window_of_the_decoded_image():
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 255, (60, 90, 3)).astype(np.uint8)
    encoded = tf.constant(_jpeg(pixels, "PNG"))  # lossless: the window can be found exactly
    options = DataOptions(augmentation=AugmentationOptions(crop_area_range=(0.1, 0.3)))
    crop = data.random_resized_crop(encoded, tf.constant([1, 2], tf.int64), options).numpy()
    area = crop.shape[0] * crop.shape[1] / (60 * 90)
    assert 0.05 <= area <= 0.35
    matches = [(y, x) for y in range(61 - crop.shape[0]) for x in range(91 - crop.shape[1])
               if np.array_equal(pixels[y:y + crop.shape[0], x:x + crop.shape[1]], crop)]
    assert len(matches) == 1
    jpeg = tf.constant(_jpeg(pixels))
    fused = data.random_resized_crop(jpeg, tf.constant([1, 2], tf.int64), options).numpy()
    assert fused.shape == crop.shape  # the same window, sampled from the JPEG header alone


def test_evaluation_batches_are_deterministic_and_complete(classification_examples):
    info = data.read_examples(classification_examples)
    dataset = data.classification_eval_dataset(info.validation_files, options=OPTIONS,
                                               num_classes=3, batch_size=10)
    sizes = [int(images.shape[0]) for images, _ in dataset]
    assert sizes == [10, 10, 4]
    first, again = _batches(dataset), _batches(dataset)
    np.testing.assert_array_equal(first[0][0], again[0][0])


# -- detection ------------------------------------------------------------------------------


def test_flip_boxes_mirrors_x():
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.3]])
    np.testing.assert_allclose(data.flip_boxes_left_right(boxes).numpy(), [[0.1, 0.7, 0.5, 0.8]])


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.6])
def test_scale_jitter_keeps_boxes_on_their_objects(scale):
    """Draw a red rectangle, jitter: the moved box must still enclose red, and only red."""
    size = 64
    image = np.zeros((size, size, 3), np.float32)
    image[20:40, 10:30, 0] = 1.0
    boxes = tf.constant([[20 / size, 10 / size, 40 / size, 30 / size]])
    for seed in range(4):
        out, out_boxes, out_classes = data.scale_jitter(
            tf.constant(image), boxes, tf.constant([5]), seed=tf.constant([seed, 1], tf.int64),
            scale_range=(scale, scale), output_size=(size, size))
        out = out.numpy()
        assert out.shape == (size, size, 3)
        if out_boxes.shape[0] == 0:
            assert out[..., 0].max() < 0.5  # dropped only when the object left the image
            continue
        assert out_classes.numpy().tolist() == [5]
        ymin, xmin, ymax, xmax = (out_boxes.numpy()[0] * size).tolist()
        inside = out[int(np.ceil(ymin)) + 1:int(ymax) - 1, int(np.ceil(xmin)) + 1:int(xmax) - 1, 0]
        assert inside.size and inside.min() > 0.5
        red = np.argwhere(out[..., 0] > 0.5)
        assert red[:, 0].min() >= ymin - 1 and red[:, 0].max() <= ymax + 1
        assert red[:, 1].min() >= xmin - 1 and red[:, 1].max() <= xmax + 1


def test_detection_examples_map_category_ids_and_drop_crowds(detection_examples):
    info = data.read_examples(detection_examples)
    table = data.category_table(info.category_ids)
    serialized = next(iter(tf.data.TFRecordDataset(info.validation_files[:1])))
    objects = data.parse_detection_objects(serialized, table)
    assert set(objects["classes"].numpy().tolist()) <= {0, 1}
    boxes = objects["boxes"].numpy()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()

    from edgeline.pipeline import records

    crowd = records.detection_example(
        encoded=b"", height=8, width=8, filename="", source_id="1", sha256="",
        xmin=[0.1, 0.2], ymin=[0.1, 0.2], xmax=[0.5, 0.6], ymax=[0.5, 0.6], labels=[7, 99],
        texts=["a", "b"], is_crowd=[1, 0], areas=[1.0, 1.0]).SerializeToString()
    objects = data.parse_detection_objects(tf.constant(crowd), table)
    assert objects["classes"].shape[0] == 0  # the crowd box and the unknown id 99 are gone


def test_detection_training_batches_pad_targets(detection_examples):
    info = data.read_examples(detection_examples)

    def pad(boxes, classes):
        rows = tf.concat([boxes, tf.cast(classes, tf.float32)[:, None]], axis=1)
        return tf.pad(rows, [[0, 10 - tf.shape(rows)[0]], [0, 0]], constant_values=-1.0)

    dataset = data.detection_train_dataset(
        info.train_files, options=DataOptions(input_size=(64, 64), max_boxes=10),
        category_ids=info.category_ids, encode_targets=pad, seed=1, batch_size=4,
        steps_per_epoch=2, start_epoch=0, end_epoch=1, examples_per_epoch=info.train_count)
    batches = list(dataset)
    assert len(batches) == 2
    images, targets = batches[0]
    assert images.shape == (4, 64, 64, 3) and targets.shape == (4, 10, 5)
    real = targets.numpy()[..., 4] >= 0
    assert real.any(axis=1).all()  # every image keeps at least one object here
    assert set(np.unique(targets.numpy()[..., 4][real])) <= {0.0, 1.0}


def test_seed_zero_works_with_a_zero_global_seed(classification_examples):
    """A regression: tf.data's seed handling breaks on tensor seeds when the global seed is
    0, which `edgeline train` uses by default; the stream's shuffles are stateless ops."""
    tf.random.set_seed(0)
    assert len(_batches(_stream(classification_examples, seed=0, end_epoch=1))) == 3
