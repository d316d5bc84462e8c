"""The tf.data input pipeline from ingest's TFRecords.

Training (one epoch; epochs are chained with ``flat_map`` so the stream is a function of the
epoch number, which is what lets a resumed run see exactly the batches an uninterrupted run
would have seen):

    shard files ─ shuffle(seed, epoch) ─ parallel interleave ─ block shuffle(seed, epoch)
      ─ enumerate (per-example random seed) ─ parse ─ decode+augment ─ batch ─ take(steps)

Every random choice is a stateless op keyed on ``(seed, epoch, example index)``, so the data
do not depend on thread scheduling, on a restart, or on how many replicas consume them.

Classification: the random-resized crop (Szegedy et al., 2015) is sampled on the JPEG header
alone and decoded with ``tf.image.decode_and_crop_jpeg``, which decodes only the crop's
blocks. Evaluation (the center crop, the resize, the normalization) is the preprocessing
every stage shares, :mod:`edgeline.common.preprocessing`. Detection: the image is resized to
the input size, flipped and scale-jittered with its boxes, and the detector's own encoder
turns the boxes into training targets.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import tensorflow as tf

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common import preprocessing
from edgeline.common.artifact_types.examples import LABELS_FILE
from edgeline.components.train.options import DataOptions
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
TRAIN_SPLIT = "train"
VALIDATION_SPLIT = "validation"


@dataclasses.dataclass(frozen=True)
class ExamplesInfo:
    """What the train stage needs to know about an Examples directory."""

    directory: Path
    task: str  # "classification" | "detection"
    labels: tuple[str, ...]  # the lines of labels.txt, in label order
    category_ids: tuple[int, ...] | None  # detection: the dataset id of each label
    train_files: tuple[str, ...]
    validation_files: tuple[str, ...]
    train_count: int
    validation_count: int

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def annotations_path(self, split: str = VALIDATION_SPLIT) -> Path:
        return self.directory / f"{split}_annotations.json"


def read_examples(directory: str | Path, task: str = "auto") -> ExamplesInfo:
    """Reads an Examples directory (ingest's output); bad or missing parts are user errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"examples: not a directory: {str(directory)!r}")
    properties = _artifact_properties(directory)
    train_files = tuple(records.shard_paths(directory, TRAIN_SPLIT))
    validation_files = tuple(records.shard_paths(directory, VALIDATION_SPLIT))
    if not train_files:
        raise UserError(
            f"examples: no '{TRAIN_SPLIT}-?????-of-?????.tfrecord' shards in {str(directory)!r}"
        )
    if task == "auto":
        task = properties.get("task") or (
            "detection" if (directory / f"{TRAIN_SPLIT}_annotations.json").exists()
            else "classification"
        )
    if task not in ("classification", "detection"):
        raise UserError(f"examples: task must be classification or detection, received {task!r}")
    labels_path = directory / LABELS_FILE
    if not labels_path.is_file():
        raise UserError(f"examples: {LABELS_FILE} is missing in {str(directory)!r}")
    labels = tuple(line for line in labels_path.read_text(encoding="utf-8").splitlines()
                   if line.strip())
    if not labels:
        raise UserError(f"examples: {labels_path} lists no classes")
    category_ids = None
    if task == "detection":
        try:
            category_ids = tuple(int(line.split("\t", 1)[0]) for line in labels)
        except ValueError:
            raise UserError(
                f"examples: {labels_path} must hold 'category_id<TAB>name' lines for "
                f"detection, received {labels[0]!r}"
            ) from None
    splits = properties.get("splits", {})
    return ExamplesInfo(
        directory=directory,
        task=task,
        labels=labels,
        category_ids=category_ids,
        train_files=train_files,
        validation_files=validation_files,
        train_count=_split_count(splits.get(TRAIN_SPLIT), train_files),
        validation_count=_split_count(splits.get(VALIDATION_SPLIT), validation_files),
    )


def _artifact_properties(directory: Path) -> dict:
    path = directory / "artifact.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("properties", {}) or {}
    except (json.JSONDecodeError, AttributeError):
        return {}


def _split_count(split_properties, files) -> int:
    """Examples in a split: ingest's count when it is there, else counted from the shards."""
    if isinstance(split_properties, dict) and isinstance(split_properties.get("written"), int):
        return split_properties["written"]
    if not files:
        return 0
    return int(tf.data.TFRecordDataset(list(files)).reduce(0, lambda count, _: count + 1))


# -- shared pieces -------------------------------------------------------------------------


def _graph_only(function: Callable) -> Callable:
    """The input functions use ``tf.cond`` and Python-time options only, so autograph's
    source rewriting (seconds per dataset on a busy CPU) has nothing to do: skip it."""
    return tf.autograph.experimental.do_not_convert(function)


def example_seeds(seed: int, epoch, index):
    """The stateless seed of example ``index`` of ``epoch``: shape (2,) int64."""
    return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                     tf.cast(index, tf.int64)])


def _dataset_options(deterministic: bool = True) -> tf.data.Options:
    opts = tf.data.Options()
    opts.deterministic = deterministic
    # Each worker reads everything and keeps its share of the elements: the global batch
    # sequence is then the same as on one device, whatever the number of shards.
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return opts


def _stream_seed(seed: int, epoch, stream):
    """A stateless seed, shape (2,) int64, for one random stream of one epoch."""
    return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64),
                     -1 - tf.cast(stream, tf.int64)])


def _epoch_records(files, *, seed: int, epoch, options: DataOptions, repeat: bool):
    """(example seed, serialized example) pairs of one epoch, shuffled for that epoch.

    Both shuffles are stateless ops keyed on (seed, epoch): the shard order, and a
    permutation of each block of ``shuffle_buffer`` interleaved records. (``Dataset.shuffle``
    would need its seed as a Python int here, so it could not differ from epoch to epoch
    inside one stream.)
    """
    file_order = tf.random.experimental.stateless_shuffle(
        tf.range(len(files)), seed=_stream_seed(seed, epoch, 0))
    files_ds = tf.data.Dataset.from_tensor_slices(tf.gather(tf.constant(list(files)), file_order))
    serialized = files_ds.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(options.interleave_cycle_length, len(files)),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    blocks = serialized.batch(options.shuffle_buffer).enumerate()  # (i, (<=buffer,) strings)
    serialized = blocks.map(_graph_only(
        lambda index, block: tf.random.experimental.stateless_shuffle(
            block, seed=_stream_seed(seed, epoch, index + 1))
    )).unbatch()
    if repeat:
        serialized = serialized.repeat()
    return serialized.enumerate().map(
        _graph_only(lambda index, record: (example_seeds(seed, epoch, index), record))
    )


def _training_stream(
    files,
    *,
    per_example: Callable,
    options: DataOptions,
    seed: int,
    batch_size: int,
    steps_per_epoch: int,
    start_epoch: int,
    end_epoch: int,
    examples_per_epoch: int,
):
    """Batches of epochs ``start_epoch .. end_epoch - 1``, ``steps_per_epoch`` per epoch."""
    repeat = steps_per_epoch * batch_size > examples_per_epoch
    parallel = options.num_parallel_calls or AUTOTUNE

    def one_epoch(epoch):
        pairs = _epoch_records(files, seed=seed, epoch=epoch, options=options, repeat=repeat)
        examples = pairs.map(_graph_only(per_example), num_parallel_calls=parallel,
                             deterministic=True)
        return examples.batch(batch_size, drop_remainder=True).take(steps_per_epoch)

    stream = tf.data.Dataset.range(start_epoch, end_epoch).flat_map(_graph_only(one_epoch))
    return stream.prefetch(AUTOTUNE).with_options(_dataset_options())


def _evaluation_stream(files, *, per_example: Callable, options: DataOptions, batch_size: int,
                       steps: int | None = None):
    parallel = options.num_parallel_calls or AUTOTUNE
    dataset = tf.data.TFRecordDataset(list(files), num_parallel_reads=None)
    dataset = dataset.map(_graph_only(per_example), num_parallel_calls=parallel,
                          deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=False)
    if steps is not None:
        dataset = dataset.take(steps)
    return dataset.prefetch(AUTOTUNE).with_options(_dataset_options())


# -- classification -------------------------------------------------------------------------


def random_resized_crop(encoded, seed, options: DataOptions):
    """Decodes a random crop (area and aspect ratio from the options) of the image: (h, w, 3)."""
    augmentation = options.augmentation
    shape = preprocessing.image_shape(encoded)
    whole_image = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)  # (1, 1, 4)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=whole_image,
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=augmentation.crop_aspect_ratio_range,
        area_range=augmentation.crop_area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    return preprocessing.decode_window(encoded, window)


def classification_train_example(options: DataOptions, num_classes: int):
    def per_example(seed, serialized):
        parsed = records.parse_classification(serialized)
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        encoded = parsed[records.ENCODED]
        if options.augmentation.random_resized_crop:
            image = random_resized_crop(encoded, crop_seed, options)
        else:
            image = preprocessing.center_crop(encoded, options.crop_fraction)
        image = preprocessing.resize(image, options)  # (H, W, 3) float32 in [0, 255]
        if options.augmentation.horizontal_flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
        label = tf.one_hot(parsed[records.LABEL], num_classes)  # (C,)
        return preprocessing.normalize(image, options), label

    return per_example


def classification_eval_example(options: DataOptions, num_classes: int):
    def per_example(serialized):
        parsed = records.parse_classification(serialized)
        image = preprocessing.evaluation_image(parsed[records.ENCODED], options, crop=True)
        return (preprocessing.normalize(image, options),
                tf.one_hot(parsed[records.LABEL], num_classes))

    return per_example


def classification_train_dataset(files, *, options: DataOptions, num_classes: int, seed: int,
                                 batch_size: int, steps_per_epoch: int, start_epoch: int,
                                 end_epoch: int, examples_per_epoch: int):
    return _training_stream(
        files,
        per_example=classification_train_example(options, num_classes),
        options=options, seed=seed, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        start_epoch=start_epoch, end_epoch=end_epoch, examples_per_epoch=examples_per_epoch,
    )


def classification_eval_dataset(files, *, options: DataOptions, num_classes: int,
                                batch_size: int, steps: int | None = None):
    return _evaluation_stream(
        files, per_example=classification_eval_example(options, num_classes), options=options,
        batch_size=batch_size, steps=steps,
    )


# -- detection ------------------------------------------------------------------------------


def category_table(category_ids):
    """Dataset category id -> contiguous class index (-1 for an id not in labels.txt)."""
    keys = tf.constant([int(c) for c in category_ids], tf.int64)
    values = tf.range(len(category_ids), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), -1)


def parse_detection_objects(serialized, table):
    """The image bytes, boxes (N, 4) as normalized [ymin, xmin, ymax, xmax], class indices
    (N,), and the image's id and size. Crowd regions and unknown categories are dropped:
    crowd boxes are not training targets in COCO practice (they are "ignore" regions)."""
    parsed = records.parse_detection(serialized)
    boxes = tf.stack(
        [parsed[records.BBOX_YMIN], parsed[records.BBOX_XMIN],
         parsed[records.BBOX_YMAX], parsed[records.BBOX_XMAX]], axis=-1
    )  # (N, 4)
    classes = table.lookup(tf.cast(parsed[records.OBJECT_LABEL], tf.int64))  # (N,)
    crowd = parsed[records.OBJECT_IS_CROWD]
    crowd = tf.cond(tf.size(crowd) == tf.size(classes), lambda: crowd,
                    lambda: tf.zeros_like(classes))
    keep = tf.logical_and(classes >= 0, tf.equal(crowd, 0))
    return {
        "encoded": parsed[records.ENCODED],
        "boxes": tf.clip_by_value(tf.boolean_mask(boxes, keep), 0.0, 1.0),
        "classes": tf.cast(tf.boolean_mask(classes, keep), tf.int32),
        "source_id": parsed[records.SOURCE_ID],
        "height": parsed[records.HEIGHT],
        "width": parsed[records.WIDTH],
    }


def flip_boxes_left_right(boxes):
    """Mirror normalized [ymin, xmin, ymax, xmax] boxes: x -> 1 - x (xmin and xmax swap)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def scale_jitter(image, boxes, classes, *, seed, scale_range, output_size, min_side=2.0):
    """Resize ``image`` (already ``output_size``, normalized) by a random factor, then crop
    (factor > 1) or zero-pad (factor < 1, zero being the mean pixel after normalization) at a
    random offset back to ``output_size``; boxes follow, are clipped, and those left thinner
    than ``min_side`` pixels are dropped.

    A box coordinate y in [0, 1] lands at ``(y * scaled_h - crop_top + pad_top) / height``.
    """
    height, width = output_size
    scale_seed, y_seed, x_seed, pad_y_seed, pad_x_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5)
    )
    scale = tf.random.stateless_uniform([], scale_seed, scale_range[0], scale_range[1])
    scaled_h = tf.maximum(tf.cast(tf.round(scale * height), tf.int32), 1)
    scaled_w = tf.maximum(tf.cast(tf.round(scale * width), tf.int32), 1)
    image = tf.image.resize(image, tf.stack([scaled_h, scaled_w]))  # (sh, sw, 3)
    crop_h, crop_w = tf.minimum(scaled_h, height), tf.minimum(scaled_w, width)

    def offset(limit, op_seed):
        return tf.random.stateless_uniform([], op_seed, 0, limit + 1, dtype=tf.int32)

    crop_top, crop_left = offset(scaled_h - crop_h, y_seed), offset(scaled_w - crop_w, x_seed)
    pad_top, pad_left = offset(height - crop_h, pad_y_seed), offset(width - crop_w, pad_x_seed)
    image = image[crop_top:crop_top + crop_h, crop_left:crop_left + crop_w]  # (ch, cw, 3)
    image = tf.image.pad_to_bounding_box(image, pad_top, pad_left, height, width)  # (H, W, 3)

    f = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    ys = [(y * f(scaled_h) - f(crop_top) + f(pad_top)) / height for y in (ymin, ymax)]
    xs = [(x * f(scaled_w) - f(crop_left) + f(pad_left)) / width for x in (xmin, xmax)]
    # Clip to the visible part of the resized image, not just to [0, 1]: padding is not image.
    y_low, y_high = f(pad_top) / height, f(pad_top + crop_h) / height
    x_low, x_high = f(pad_left) / width, f(pad_left + crop_w) / width
    boxes = tf.stack(
        [tf.clip_by_value(ys[0], y_low, y_high), tf.clip_by_value(xs[0], x_low, x_high),
         tf.clip_by_value(ys[1], y_low, y_high), tf.clip_by_value(xs[1], x_low, x_high)],
        axis=-1,
    )  # (N, 4)
    keep = tf.logical_and((boxes[:, 2] - boxes[:, 0]) * height >= min_side,
                          (boxes[:, 3] - boxes[:, 1]) * width >= min_side)
    image.set_shape([height, width, 3])
    return image, tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)


def detection_train_example(options: DataOptions, table, encode_targets: Callable):
    augmentation = options.augmentation

    def per_example(seed, serialized):
        objects = parse_detection_objects(serialized, table)
        flip_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = preprocessing.resize(preprocessing.decode(objects["encoded"]), options)
        image = preprocessing.normalize(image, options)  # (H, W, 3)
        boxes, classes = objects["boxes"], objects["classes"]
        if augmentation.horizontal_flip:
            flip = tf.random.stateless_uniform([], flip_seed) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            boxes = tf.cond(flip, lambda: flip_boxes_left_right(boxes), lambda: boxes)
        if augmentation.scale_jitter_range != (1.0, 1.0):
            image, boxes, classes = scale_jitter(
                image, boxes, classes, seed=jitter_seed,
                scale_range=augmentation.scale_jitter_range, output_size=options.input_size,
            )
        boxes, classes = boxes[: options.max_boxes], classes[: options.max_boxes]
        return image, encode_targets(boxes, classes)

    return per_example


def detection_eval_example(options: DataOptions, table, encode_targets: Callable | None):
    """Images with targets (for the validation loss), or with the image's id and size (for
    predictions to score against the COCO ground truth) when ``encode_targets`` is None."""

    def per_example(serialized):
        objects = parse_detection_objects(serialized, table)
        image = preprocessing.evaluation_image(objects["encoded"], options, crop=False)
        image = preprocessing.normalize(image, options)
        image.set_shape([*options.input_size, 3])
        if encode_targets is None:
            return image, {"source_id": objects["source_id"], "height": objects["height"],
                           "width": objects["width"]}
        boxes = objects["boxes"][: options.max_boxes]
        return image, encode_targets(boxes, objects["classes"][: options.max_boxes])

    return per_example


def detection_train_dataset(files, *, options: DataOptions, category_ids, encode_targets,
                            seed: int, batch_size: int, steps_per_epoch: int, start_epoch: int,
                            end_epoch: int, examples_per_epoch: int):
    table = category_table(category_ids)
    return _training_stream(
        files, per_example=detection_train_example(options, table, encode_targets),
        options=options, seed=seed, batch_size=batch_size, steps_per_epoch=steps_per_epoch,
        start_epoch=start_epoch, end_epoch=end_epoch, examples_per_epoch=examples_per_epoch,
    )


def detection_eval_dataset(files, *, options: DataOptions, category_ids, encode_targets,
                           batch_size: int, steps: int | None = None):
    table = category_table(category_ids)
    return _evaluation_stream(
        files, per_example=detection_eval_example(options, table, encode_targets),
        options=options, batch_size=batch_size, steps=steps,
    )
