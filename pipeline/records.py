"""The TFRecord contract between ingest and the stages that read its output.

Keys are those that TF Model Garden and the TF Object Detection API read, so their readers
work on edgeline's shards and ours on theirs. Boxes are normalized corners in [0, 1].
Shard names follow ``{split}-{i:05d}-of-{n:05d}.tfrecord``.

Building examples needs only the protobuf classes; parsing needs TensorFlow, which is
imported inside the functions that use it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"
SOURCE_ID = "image/source_id"
SHA256 = "image/key/sha256"
LABEL = "image/class/label"  # 0-based
SYNSET = "image/class/synset"
TEXT = "image/class/text"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMAX = "image/object/bbox/ymax"
OBJECT_LABEL = "image/object/class/label"  # the dataset's category id (COCO ids for COCO)
OBJECT_TEXT = "image/object/class/text"
OBJECT_IS_CROWD = "image/object/is_crowd"
OBJECT_AREA = "image/object/area"  # in pixels, as COCO gives it


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def shard_paths(directory: str | os.PathLike, split: str) -> list[str]:
    """The shards of ``split`` in ``directory``, in shard order."""
    return sorted(glob.glob(os.path.join(os.fspath(directory), f"{split}-?????-of-?????.tfrecord")))


def _feature_module():
    # tf.train.Example lives in tensorflow.core; importing it alone avoids loading all of TF
    # in Beam workers that only build examples.
    from tensorflow.core.example import example_pb2, feature_pb2

    return example_pb2, feature_pb2


def _bytes(values: Sequence[bytes]):
    _, f = _feature_module()
    return f.Feature(bytes_list=f.BytesList(value=list(values)))


def _ints(values: Sequence[int]):
    _, f = _feature_module()
    return f.Feature(int64_list=f.Int64List(value=[int(v) for v in values]))


def _floats(values: Sequence[float]):
    _, f = _feature_module()
    return f.Feature(float_list=f.FloatList(value=[float(v) for v in values]))


def _image_features(encoded: bytes, height: int, width: int, filename: str, source_id: str,
                    sha256: str, image_format: str) -> dict:
    """The features every example has, classification or detection: the image and its
    identity (the keys, in the order the Example's map holds them)."""
    return {
        ENCODED: _bytes([encoded]),
        FORMAT: _bytes([image_format.encode()]),
        HEIGHT: _ints([height]),
        WIDTH: _ints([width]),
        FILENAME: _bytes([filename.encode()]),
        SOURCE_ID: _bytes([source_id.encode()]),
        SHA256: _bytes([sha256.encode()]),
    }


def classification_example(*, encoded: bytes, height: int, width: int, filename: str,
                           source_id: str, sha256: str, label: int, synset: str, text: str,
                           image_format: str = "jpeg"):
    example_pb2, f = _feature_module()
    features = {
        **_image_features(encoded, height, width, filename, source_id, sha256, image_format),
        LABEL: _ints([label]),
        SYNSET: _bytes([synset.encode()]),
        TEXT: _bytes([text.encode()]),
    }
    return example_pb2.Example(features=f.Features(feature=features))


def detection_example(*, encoded: bytes, height: int, width: int, filename: str,
                      source_id: str, sha256: str, xmin: Sequence[float], ymin: Sequence[float],
                      xmax: Sequence[float], ymax: Sequence[float], labels: Sequence[int],
                      texts: Sequence[str], is_crowd: Sequence[int], areas: Sequence[float],
                      image_format: str = "jpeg"):
    example_pb2, f = _feature_module()
    features = {
        **_image_features(encoded, height, width, filename, source_id, sha256, image_format),
        BBOX_XMIN: _floats(xmin),
        BBOX_YMIN: _floats(ymin),
        BBOX_XMAX: _floats(xmax),
        BBOX_YMAX: _floats(ymax),
        OBJECT_LABEL: _ints(labels),
        OBJECT_TEXT: _bytes([t.encode() for t in texts]),
        OBJECT_IS_CROWD: _ints(is_crowd),
        OBJECT_AREA: _floats(areas),
    }
    return example_pb2.Example(features=f.Features(feature=features))


def _image_feature_spec():
    """How to parse the features of :func:`_image_features` (the image and its identity)."""
    import tensorflow as tf

    return {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        SHA256: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def classification_feature_spec():
    import tensorflow as tf

    return {
        **_image_feature_spec(),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        SYNSET: tf.io.FixedLenFeature([], tf.string, default_value=""),
        TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def detection_feature_spec():
    import tensorflow as tf

    return {
        **_image_feature_spec(),
        BBOX_XMIN: tf.io.VarLenFeature(tf.float32),
        BBOX_YMIN: tf.io.VarLenFeature(tf.float32),
        BBOX_XMAX: tf.io.VarLenFeature(tf.float32),
        BBOX_YMAX: tf.io.VarLenFeature(tf.float32),
        OBJECT_LABEL: tf.io.VarLenFeature(tf.int64),
        OBJECT_TEXT: tf.io.VarLenFeature(tf.string),
        OBJECT_IS_CROWD: tf.io.VarLenFeature(tf.int64),
        OBJECT_AREA: tf.io.VarLenFeature(tf.float32),
    }


def parse_classification(serialized):
    """One serialized example -> dict of dense tensors (keys as above)."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, classification_feature_spec())


def parse_detection(serialized):
    """One serialized example -> dict; per-object features become dense 1-D tensors."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, detection_feature_spec())
    for key, value in list(parsed.items()):
        if isinstance(value, tf.sparse.SparseTensor):
            parsed[key] = tf.sparse.to_dense(value)
    return parsed
