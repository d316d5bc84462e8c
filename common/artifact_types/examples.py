"""The Examples artifact (ingest stage): TFRecord shards of ``tf.train.Example``s.

    {split}-{i:05d}-of-{n:05d}.tfrecord   the shards (keys: ARCHITECTURE.md, "TFRecords")
    labels.txt                            one class per line, in label order
    {split}_annotations.json              detection: COCO ground truth of the split

Its ``artifact.json`` properties hold per-split counts (``splits``: seen, written, fixed,
rejected, shards), ``task``, ``format``, ``source``, ``num_classes`` and ``tfds_name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeline.common.artifact_types.tflite_model import tflite_files

# The one labels file name (the Model directory's), re-exported for this type's readers.
from edgeline.models.io import LABELS_FILE as LABELS_FILE
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.report import (
    Block,
    ExportedFile,
    StepArtifact,
    Table,
    format_value,
    key_value_table,
)

SPLIT_COUNTS = ("seen", "written", "fixed", "rejected", "shards")


class Examples:
    type_name = "Examples"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        splits = artifact.properties.get("splits")
        figures = {f"{split} examples": counts.get("written")
                   for split, counts in (splits or {}).items() if isinstance(counts, Mapping)}
        return {**(figures or {"examples": None}),
                "classes": artifact.properties.get("num_classes")}

    def render(self, entry: StepArtifact) -> list[Block]:
        properties = entry.artifact.properties
        blocks: list[Block] = []
        splits = properties.get("splits")
        if isinstance(splits, Mapping) and splits:
            rows = [[split] + [format_value(counts.get(k)) for k in SPLIT_COUNTS]
                    for split, counts in splits.items() if isinstance(counts, Mapping)]
            blocks.append(Table(("split", *SPLIT_COUNTS), rows))
        info = {k: properties[k] for k in ("task", "format", "source", "num_classes",
                                           "tfds_name") if k in properties}
        for table in (key_value_table(info, "property"), key_value_table(entry.artifact.metrics)):
            if table:
                blocks.append(table)
        return blocks

    def exported_files(self, entry: StepArtifact) -> list[ExportedFile]:
        return tflite_files(entry)
