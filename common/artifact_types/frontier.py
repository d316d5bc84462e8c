"""The Frontier artifact (compress_frontier stage): every compression recipe, exported and
measured, and the one chosen.

    frontier.json              ``metric``, ``accuracy_budget_points``, ``chosen`` and ``rows``
                               (per recipe: recipe, steps, quantize, accuracy, delta_points,
                               tflite_bytes, gzip_bytes, latency_ms, kernel_sparsity,
                               within_budget, chosen, tflite)
    frontier.md, frontier.csv  the same table for people and spreadsheets
    accuracy_vs_size.png, accuracy_vs_latency.png
    recipes/<recipe>/          each recipe's Model and its export (``.tflite`` + export.json)

Its ``artifact.json`` properties name the ``chosen`` recipe and its ``chosen_tflite``; its
metrics the original's and the chosen recipe's accuracy, sizes and latency.
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
    Figure,
    StepArtifact,
    Table,
    Text,
    format_value,
    key_value_table,
    read_json_object,
)

REPORT_FILE = "frontier.json"
TABLE_FILE = "frontier.md"
CSV_FILE = "frontier.csv"
SIZE_PLOT = "accuracy_vs_size.png"
LATENCY_PLOT = "accuracy_vs_latency.png"
TABLE_COLUMNS = ("recipe", "steps", "quantize", "{metric} %", "Δ points", "TFLite bytes",
           "gzip bytes", "latency ms (1 thread)", "kernel sparsity", "chosen")


def read(directory: str | Path) -> dict[str, Any]:
    """The artifact's ``frontier.json``; {} where there is none or it is unreadable."""
    return read_json_object(Path(directory) / REPORT_FILE)


def _row_cells(row: Mapping[str, Any]) -> tuple:
    mark = "chosen" if row.get("chosen") else (
        "" if row.get("within_budget", True) else "over budget")
    accuracy = row.get("accuracy")
    return (
        row.get("recipe", ""), row.get("steps") or "-", row.get("quantize", ""),
        format_value(100 * accuracy if isinstance(accuracy, int | float) else None),
        format_value(row.get("delta_points")), format_value(row.get("tflite_bytes")),
        format_value(row.get("gzip_bytes")), format_value(row.get("latency_ms")),
        format_value(row.get("kernel_sparsity")), mark,
    )


class Frontier:
    type_name = "Frontier"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        metrics = artifact.metrics
        return {"chosen": artifact.properties.get("chosen"),
                "chosen accuracy": metrics.get("chosen_accuracy"),
                "chosen gzip bytes": metrics.get("chosen_gzip_bytes")}

    def render(self, entry: StepArtifact) -> list[Block]:
        blocks: list[Block] = []
        report = read(entry.directory)
        rows = report.get("rows") or []
        metric = report.get("metric", "accuracy")
        if rows:
            columns = tuple(c.format(metric=metric) for c in TABLE_COLUMNS)
            blocks.append(Table(columns, [_row_cells(row) for row in rows]))
            budget = report.get("accuracy_budget_points")
            chosen = report.get("chosen")
            blocks.append(Text(
                f"Chosen: {chosen or 'none'} (the smallest gzip size within "
                f"{format_value(budget)} point(s) of the original's {metric})."))
        elif entry.artifact.metrics:
            blocks.append(key_value_table(entry.artifact.metrics))
        plots = entry.artifact.properties.get("plots") or []
        for rel in [p for p in plots if isinstance(p, str)] + entry.files(".png"):
            figure = entry.figure(rel, f"{entry.step}: {rel}")
            if figure and not any(isinstance(b, Figure) and b.name == figure.name
                                  for b in blocks):
                blocks.append(figure)
        return blocks

    def exported_files(self, entry: StepArtifact) -> list[ExportedFile]:
        return tflite_files(entry)
