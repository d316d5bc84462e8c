"""Writing ``tf.train.Example`` TFRecords without importing TensorFlow.

Beam workers only need to serialize examples and frame them as TFRecords. Importing
TensorFlow for that costs seconds and hundreds of MB per worker process, so this module
encodes the two small protobuf messages by hand (the wire format is stable and documented:
https://protobuf.dev/programming-guides/encoding/) and frames records with google-crc32c.

The encoding equals ``example.SerializeToString(deterministic=True)`` of the example that
:mod:`edgeline.pipeline.records` builds (tests check it byte for byte): map entries are
written in sorted key order, which is what makes shards byte-identical across runs.

    example.proto:  Example  { Features features = 1; }
                    Features { map<string, Feature> feature = 1; }
    feature.proto:  Feature  { oneof kind { BytesList bytes_list = 1;
                                            FloatList float_list = 2;
                                            Int64List int64_list = 3; } }
                    BytesList { repeated bytes value = 1; }
                    FloatList { repeated float value = 1 [packed = true]; }
                    Int64List { repeated int64 value = 1 [packed = true]; }
"""

from __future__ import annotations

import functools
import os
import struct
import uuid
from collections.abc import Mapping, Sequence

import google_crc32c

# A feature value: ("bytes", [b"..."]), ("float", [0.5]) or ("int64", [3]).
FeatureValue = tuple[str, Sequence]

_LIST_FIELD = {"bytes": 1, "float": 2, "int64": 3}  # field numbers in Feature's oneof
_TAG_1 = b"\x0a"  # field 1, wire type 2 (length-delimited): field_number << 3 | 2
_TAG_2 = b"\x12"  # field 2, wire type 2
_FEATURE_TAG = {"bytes": b"\x0a", "float": b"\x12", "int64": b"\x1a"}


def _encode_varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values are written as 10-byte two's complement."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths of keys, small features and labels are small numbers: encoded once, looked up after.
_SMALL_VARINTS = tuple(_encode_varint(value) for value in range(1 << 12))


def _varint(value: int) -> bytes:
    if 0 <= value < 1 << 12:
        return _SMALL_VARINTS[value]
    return _encode_varint(value)


@functools.lru_cache(maxsize=256)
def _key_field(key: str) -> bytes:
    """MapEntry.key: the same dozen keys in every example."""
    key_bytes = key.encode()
    return _TAG_1 + _varint(len(key_bytes)) + key_bytes


def _list_chunks(kind: str, values: Sequence) -> list[bytes]:
    """The list message's body as chunks (large byte values are not copied here)."""
    if kind == "bytes":
        chunks = []
        for value in values:
            chunks += (_TAG_1, _varint(len(value)), value)
        return chunks
    if not values:
        return []  # an empty packed field is omitted entirely
    if kind == "float":
        packed = struct.pack(f"<{len(values)}f", *values)
    elif kind == "int64":
        packed = b"".join(_varint(int(v)) for v in values)
    else:
        raise ValueError(f"Received: kind={kind!r}; expected one of 'bytes', 'float', 'int64'")
    return [_TAG_1, _varint(len(packed)), packed]


@functools.lru_cache(maxsize=4096)
def _small_entry(key: str, kind: str, values: tuple) -> bytes:
    """A whole map entry of small values (a label, a class name, the format, a height): the
    same few hundred recur in every shard, so each is encoded once per process."""
    return b"".join(_entry_chunks(key, kind, values))


def _entry_chunks(key: str, kind: str, values: Sequence) -> list[bytes]:
    """One ``map<string, Feature>`` entry as chunks (an image's bytes are not copied here)."""
    body = _list_chunks(kind, values)
    list_size = sum(map(len, body))
    list_header = _FEATURE_TAG[kind] + _varint(list_size)  # Feature.<kind>_list
    feature_size = len(list_header) + list_size
    key_field = _key_field(key)
    value_header = _TAG_2 + _varint(feature_size)  # MapEntry.value
    entry_size = len(key_field) + len(value_header) + feature_size
    return [_TAG_1, _varint(entry_size), key_field, value_header, list_header, *body]


# Values up to this many bytes are encoded through the entry cache; larger ones (the image) are
# kept as chunks of their own, never copied into a joined buffer.
_SMALL_VALUE_BYTES = 64


def example_parts(features: Mapping[str, FeatureValue]) -> list[bytes]:
    """The serialized ``tf.train.Example`` of ``{key: (kind, values)}`` (keys in sorted order)
    as a few parts: the runs of small fields joined, each large bytes value on its own, so that
    the writer checksums and writes the image's bytes where they are (no copy).

    Sizes are computed bottom-up; ``b"".join(parts)`` is the serialized example."""
    parts: list[bytes] = []
    small: list[bytes] = []
    for key in sorted(features):
        kind, values = features[key]
        if len(values) == 1 and (kind != "bytes" or len(values[0]) <= _SMALL_VALUE_BYTES):
            small.append(_small_entry(key, kind, tuple(values)))
            continue
        for chunk in _entry_chunks(key, kind, values):
            if len(chunk) > _SMALL_VALUE_BYTES:
                parts += (b"".join(small), chunk)
                small = []
            else:
                small.append(chunk)
    parts.append(b"".join(small))
    size = sum(map(len, parts))
    return [_TAG_1 + _varint(size) + parts[0], *parts[1:]]  # Example.features


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialize ``{key: (kind, values)}`` as a ``tf.train.Example``, keys in sorted order."""
    return b"".join(example_parts(features))


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C (tensorflow/core/lib/hash/crc32c.h, Mask)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data: bytes) -> tuple[bytes, bytes, bytes]:
    """One TFRecord as (header, data, footer): length and its masked crc, the data, the
    data's masked crc (tensorflow/core/lib/io/record_writer.cc)."""
    return _header(len(data)), data, struct.pack("<I", _masked_crc(data))


def _header(size: int) -> bytes:
    length = struct.pack("<Q", size)
    return length + struct.pack("<I", _masked_crc(length))


def _masked_crc_of_parts(parts: Sequence[bytes]) -> int:
    crc = 0
    for part in parts:
        crc = google_crc32c.extend(crc, part)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# The writer's buffer: a record is three small parts around the image's bytes, and with the
# default 8 KiB buffer each record cost two or three write calls (the buffer's flush, then the
# image's ~110 KB written past it); through 1 MiB, ten records make one call, at the cost of
# one copy: 0.048 instead of 0.058 ms per ImageNet image, framing included.
WRITE_BUFFER_BYTES = 1 << 20


class TFRecordWriter:
    """Writes records to ``path`` through a hidden temporary file renamed on close, so a
    retried or killed Beam bundle never leaves a half-written shard under the final name."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        directory, name = os.path.split(self.path)
        # Unique per attempt, not per process: a runner may run a retried bundle on another
        # machine (the same pid there) while the first attempt is still writing.
        self._tmp_path = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
        self._file = open(self._tmp_path, "wb", buffering=WRITE_BUFFER_BYTES)
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        for part in frame_record(data):
            self._file.write(part)
        self.bytes_written += len(data) + 16

    def write_parts(self, parts: Sequence[bytes]) -> None:
        """One record whose data is ``b"".join(parts)``, framed and written without joining
        them (:func:`example_parts`: the image's bytes go from the read buffer to the file)."""
        size = sum(map(len, parts))
        self._file.write(_header(size))
        for part in parts:
            self._file.write(part)
        self._file.write(struct.pack("<I", _masked_crc_of_parts(parts)))
        self.bytes_written += size + 16

    def close(self) -> None:
        self._file.close()
        os.replace(self._tmp_path, self.path)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
            os.remove(self._tmp_path)
