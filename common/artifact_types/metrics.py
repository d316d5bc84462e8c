"""The Metrics artifact (evaluate stage): how a Model, TFLiteModel or Policy scored.

    metrics.json             the full report: classification ``top1``, ``top5``,
                             ``per_class_accuracy``; detection the COCO ``summary`` and
                             ``per_category_ap`` rows; a policy's returns
    detections.json          detection: the detections in COCO result format
    confusion_matrix.png     classification
    plots/pr_all.png, ...    detection: precision-recall curves (all categories first)
    returns_histogram.png    a policy's returns

Its ``artifact.json`` properties say what was scored (``task``: classification, detection or
policy; ``split``, ``model_form``, ``model_type``) and its metrics are the headline numbers
(``top1``/``top5``, the COCO summary names ``AP``, ``AP50``, ...; ``mean_return``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeline.common.artifact_types.tflite_model import tflite_files
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.report import (
    Block,
    ExportedFile,
    Heading,
    StepArtifact,
    Table,
    Text,
    cut_table,
    format_value,
    key_value_table,
    read_json_object,
)

METRICS_FILE = "metrics.json"
DETECTIONS_FILE = "detections.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
PLOTS_DIR = "plots"
PR_ALL_PLOT = "pr_all.png"  # the precision-recall curve over all categories, in PLOTS_DIR
HISTOGRAM_FILE = "returns_histogram.png"

# The figures a user reads first, by what was scored: (label, metrics key).
HEADLINES = {
    "classification": (("top-1", "top1"), ("top-5", "top5")),
    "detection": (("mAP", "AP"), ("AP50", "AP50")),
    "policy": (("mean return", "mean_return"), ("episodes", "episodes")),
}


def read(directory: str | Path) -> dict[str, Any]:
    """The artifact's ``metrics.json``; {} where there is none or it is unreadable."""
    return read_json_object(Path(directory) / METRICS_FILE)


def _per_class_blocks(report: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    per_class = report.get("per_class_accuracy")
    if isinstance(per_class, Mapping) and per_class:
        rows = [(name, format_value(value)) for name, value in per_class.items()]
        blocks.append(Heading(3, "Per-class accuracy"))
        blocks.append(cut_table(Table(("class", "accuracy"), rows)))
    per_category = report.get("per_category_ap")
    if isinstance(per_category, list) and per_category:
        rows = [(format_value(row.get("category_id")), row.get("name", ""),
                 format_value(row.get("ap"))) for row in per_category if isinstance(row, Mapping)]
        blocks.append(Heading(3, "Per-category AP"))
        blocks.append(cut_table(Table(("category id", "name", "AP"), rows)))
    return blocks


class Metrics:
    type_name = "Metrics"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        task = artifact.properties.get("task")
        return {label: artifact.metrics.get(key) for label, key in HEADLINES.get(task, ())}

    def render(self, entry: StepArtifact) -> list[Block]:
        blocks: list[Block] = []
        properties = entry.artifact.properties
        heading = ", ".join(f"{k} {properties[k]}" for k in ("task", "split", "model_form",
                                                             "model_type") if k in properties)
        if heading:
            blocks.append(Text(heading))
        if entry.artifact.metrics:
            blocks.append(key_value_table(entry.artifact.metrics))
        blocks.extend(_per_class_blocks(read(entry.directory)))
        pngs = entry.files(".png")
        # The overview plots first (confusion matrix, PR over all categories), then the rest.
        first = [p for p in pngs if p.endswith((CONFUSION_MATRIX_FILE, PR_ALL_PLOT))]
        for rel in first + [p for p in pngs if p not in first]:
            figure = entry.figure(rel, f"{entry.step}: {rel}")
            if figure:
                blocks.append(figure)
        return blocks

    def exported_files(self, entry: StepArtifact) -> list[ExportedFile]:
        return tflite_files(entry)
