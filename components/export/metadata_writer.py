"""Writes TFLite Model Metadata into an exported ``.tflite``: run by the mobile environment's
Python, not by edgeline's (``python metadata_writer.py < spec.json``).

The writers are tflite-support's (``tflite_support.metadata_writers``), the reference
implementation of the metadata schema that MediaPipe Tasks and the TFLite Task Library read;
MediaPipe's own writers are a copy of them whose wheels (0.10.30 to 1.2.3) lack the native
module their populator imports. tflite-support pins protobuf < 4, so it lives in its own
environment (``.venv/mobile``); this script imports nothing from edgeline.

The spec (JSON on stdin)::

    {"model": "in.tflite", "output": "out.tflite", "task": "classification" | "detection",
     "labels": "labels.txt", "norm_mean": [...], "norm_std": [...],
     "general": {"name": ..., "description": ..., "version": ..., "author": ...,
                 "licenses": ...}}

It prints the metadata it wrote, as JSON, on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import types
import zipfile

import flatbuffers
from tensorflow_lite_support.metadata.python.metadata_writers import metadata_writer
from tflite_support import metadata as _metadata
from tflite_support import metadata_schema_py_generated as _metadata_fb
from tflite_support.metadata_writers import image_classifier, metadata_info, object_detector

# The exported detector's outputs, by position (edgeline.components.export.detection): boxes,
# classes, scores, count, named as the writer names their metadata.
DETECTION_OUTPUT_ORDER = ("location", "category", "score", "number of detections")

# The ZIP epoch, 1980-01-01 (SOURCE_DATE_EPOCH's usual floor): every packed file's timestamp.
_FIXED_TIME = 315532800


def classifier_writer(model: bytes, spec: dict):
    return image_classifier.MetadataWriter.create_for_inference(
        model, spec["norm_mean"], spec["norm_std"], [spec["labels"]])


def detector_writer(model: bytes, spec: dict):
    """The stock detector writer pairs its four output metadata with the outputs in the order
    of their tensor indices, assuming TFLITE_DETECTION_POST_PROCESS's ports; edgeline's graph
    ends in four Identity ops whose indices do not ascend in output order, and that pairing
    swaps classes and scores. MediaPipe and the spec pair metadata with outputs by position, so
    the same metadata is put back in output order."""
    stock = object_detector.MetadataWriter.create_for_inference(
        model, spec["norm_mean"], spec["norm_std"], [spec["labels"]])
    metadata = _metadata_fb.ModelMetadataT.InitFromObj(
        _metadata_fb.ModelMetadata.GetRootAsModelMetadata(stock._metadata_buffer, 0))
    subgraph = metadata.subgraphMetadata[0]
    by_name = {_text(tensor.name): tensor for tensor in subgraph.outputTensorMetadata}
    subgraph.outputTensorMetadata = [by_name[name] for name in DETECTION_OUTPUT_ORDER]
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), _metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    return metadata_writer.MetadataWriter(model, builder.Output(), [spec["labels"]])


def with_general_metadata(writer, general: dict):
    """The writer's metadata with the model's name, description, version, author, license."""
    metadata = _metadata_fb.ModelMetadataT.InitFromObj(
        _metadata_fb.ModelMetadata.GetRootAsModelMetadata(writer._metadata_buffer, 0))
    given = metadata_info.GeneralMd(**general).create_metadata()
    for field in ("name", "version", "description", "author", "license"):
        if getattr(given, field):
            setattr(metadata, field, getattr(given, field))
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), _metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    return metadata_writer.MetadataWriter(writer._model_buffer, builder.Output(),
                                          writer._associated_files)


@contextlib.contextmanager
def fixed_zip_time():
    """zipfile stamps each packed file with the current time (``ZipFile.writestr``), so the
    same model would give other bytes on every run; edgeline's exports are reproducible byte
    for byte, so the packing sees a fixed clock (zipfile's own, nothing else's)."""
    clock = zipfile.time
    zipfile.time = types.SimpleNamespace(time=lambda: _FIXED_TIME, localtime=time.gmtime)
    try:
        yield
    finally:
        zipfile.time = clock


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def main() -> int:
    spec = json.load(sys.stdin)
    with open(spec["model"], "rb") as f:
        model = f.read()
    make = classifier_writer if spec["task"] == "classification" else detector_writer
    writer = with_general_metadata(make(model, spec), spec.get("general", {}))
    with fixed_zip_time():
        populated = writer.populate()
    with open(spec["output"], "wb") as f:
        f.write(populated)
    print(writer.get_populated_metadata_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
