"""The TF-free Example encoder and TFRecord framing against TensorFlow's own."""

from __future__ import annotations

import tensorflow as tf

import edgeline  # noqa: F401
from edgeline.components.ingest import tfrecord
from edgeline.pipeline import records


def _classification_kwargs():
    return dict(encoded=b"\xff\xd8\xff\xe0jpeg-bytes", height=375, width=500,
                filename="n01440764_1.JPEG", source_id="n01440764/n01440764_1.JPEG",
                sha256="ab" * 32, label=999, synset="n01440764", text="tench, Tinca tinca")


def test_classification_example_encodes_like_protobuf():
    kwargs = _classification_kwargs()
    features = {
        records.ENCODED: ("bytes", [kwargs["encoded"]]),
        records.FORMAT: ("bytes", [b"jpeg"]),
        records.HEIGHT: ("int64", [kwargs["height"]]),
        records.WIDTH: ("int64", [kwargs["width"]]),
        records.FILENAME: ("bytes", [kwargs["filename"].encode()]),
        records.SOURCE_ID: ("bytes", [kwargs["source_id"].encode()]),
        records.SHA256: ("bytes", [kwargs["sha256"].encode()]),
        records.LABEL: ("int64", [kwargs["label"]]),
        records.SYNSET: ("bytes", [kwargs["synset"].encode()]),
        records.TEXT: ("bytes", [kwargs["text"].encode()]),
    }
    expected = records.classification_example(**kwargs).SerializeToString(deterministic=True)
    assert tfrecord.encode_example(features) == expected


def test_detection_example_with_empty_and_negative_values_encodes_like_protobuf():
    boxes = dict(xmin=[0.1, 0.25], ymin=[0.0, 1.0 / 3.0], xmax=[0.5, 1.0000001],
                 ymax=[0.9, 0.7], labels=[1, -7], texts=["person", "cät"], is_crowd=[0, 1],
                 areas=[462.0, 1e6])
    common = dict(encoded=b"x", height=2, width=3, filename="a.jpg", source_id="17",
                  sha256="0" * 64)
    for values in (boxes, {k: [] for k in boxes}):
        example = records.detection_example(**common, **values)
        parsed = tf.train.Example.FromString(example.SerializeToString())
        features = {}
        for key, feature in parsed.features.feature.items():
            kind = feature.WhichOneof("kind")
            short = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}[kind]
            features[key] = (short, list(getattr(feature, kind).value))
        assert tfrecord.encode_example(features) == example.SerializeToString(deterministic=True)


def test_written_records_read_back_with_tf_data(tmp_path):
    path = tmp_path / "x.tfrecord"
    payloads = [b"", b"a", bytes(range(256)) * 300]
    with tfrecord.TFRecordWriter(path) as writer:
        for payload in payloads:
            writer.write(payload)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == payloads
    assert path.stat().st_size == writer.bytes_written
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away


def test_examples_written_in_parts_equal_protobuf_records(tmp_path):
    """The writer's path: an image large enough to stay a part of its own (never joined),
    checksummed part by part; TensorFlow reads back the protobuf's own bytes."""
    kwargs = _classification_kwargs() | {"encoded": b"\xff\xd8" + bytes(range(256)) * 400}
    features = {
        records.ENCODED: ("bytes", [kwargs["encoded"]]),
        records.FORMAT: ("bytes", [b"jpeg"]),
        records.HEIGHT: ("int64", [kwargs["height"]]),
        records.WIDTH: ("int64", [kwargs["width"]]),
        records.FILENAME: ("bytes", [kwargs["filename"].encode()]),
        records.SOURCE_ID: ("bytes", [kwargs["source_id"].encode()]),
        records.SHA256: ("bytes", [kwargs["sha256"].encode()]),
        records.LABEL: ("int64", [kwargs["label"]]),
        records.SYNSET: ("bytes", [kwargs["synset"].encode()]),
        records.TEXT: ("bytes", [kwargs["text"].encode()]),
    }
    expected = records.classification_example(**kwargs).SerializeToString(deterministic=True)
    parts = tfrecord.example_parts(features)
    assert any(part is kwargs["encoded"] for part in parts)  # the image itself, not a copy
    path = tmp_path / "x.tfrecord"
    with tfrecord.TFRecordWriter(path) as writer:
        writer.write_parts(parts)
        writer.write_parts(parts)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [expected, expected]
    assert path.stat().st_size == writer.bytes_written
