"""The TFLiteModel artifact (export stage): a ``.tflite`` file and the report of its export.

    model.tflite       the converted network
    export.json        how it was converted and measured: ``size_bytes``, ``quantize``,
                       ``task``, ``io_type``, ``preprocessing_inside``, ``latency``
                       (``threads_1_ms``, ``threads_all_ms``, ``threads_all``: median LiteRT
                       time of one batch-1 inference) and ``parity`` (``passed`` and the
                       figures it was judged on)
    labels.txt         one class per output index
    category_ids.txt   detectors: the dataset category id of each output class

The same ``export.json``-beside-a-``.tflite`` layout appears inside other artifacts (each
recipe of a Frontier), so :func:`tflite_files` serves every view's exported-files listing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The one labels file name (the Model directory's), re-exported for this type's readers.
from edgeline.models.io import LABELS_FILE as LABELS_FILE
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.report import (
    Block,
    ExportedFile,
    StepArtifact,
    key_value_table,
    read_json_object,
)

TFLITE_FILE = "model.tflite"
REPORT_FILE = "export.json"
CATEGORY_IDS_FILE = "category_ids.txt"


def export_report(directory: str | Path) -> dict[str, Any]:
    """The ``export.json`` in ``directory``; {} where there is none or it is unreadable."""
    return read_json_object(Path(directory) / REPORT_FILE)


def tflite_files(entry: StepArtifact) -> list[ExportedFile]:
    """Every ``.tflite`` ``entry``'s artifact holds, with the figures of the ``export.json``
    written beside it (by the export stage, also inside a Frontier's recipes)."""
    found = []
    chosen = entry.artifact.properties.get("chosen_tflite")
    for rel in entry.files(".tflite"):
        path = entry.directory / rel
        if not path.is_file():
            continue
        report = export_report(path.parent)
        latency = report.get("latency") or {}
        parity = report.get("parity") or {}
        found.append(ExportedFile(
            step=entry.step,
            format="tflite",
            path=path,
            size_bytes=path.stat().st_size,
            quantize=report.get("quantize"),
            latency_threads_1_ms=latency.get("threads_1_ms"),
            latency_threads_all_ms=latency.get("threads_all_ms"),
            threads_all=latency.get("threads_all"),
            parity_passed=parity.get("passed") if parity else None,
            chosen=rel == chosen,
        ))
    return found


class TFLiteModel:
    type_name = "TFLiteModel"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        metrics = artifact.metrics
        return {"bytes": metrics.get("size_bytes"),
                "latency ms (1 thread)": metrics.get("latency_threads_1_ms"),
                "parity passed": metrics.get("parity_passed")}

    def render(self, entry: StepArtifact) -> list[Block]:
        report = export_report(entry.directory)
        summary = {k: report[k] for k in ("task", "quantize", "io_type", "preprocessing_inside",
                                          "size_bytes") if k in report}
        for key, value in (report.get("latency") or {}).items():
            summary[f"latency.{key}"] = value
        for key, value in (report.get("parity") or {}).items():
            if isinstance(value, str | int | float | bool):
                summary[f"parity.{key}"] = value
        table = key_value_table(summary or entry.artifact.metrics, "figure")
        return [table] if table else []

    def exported_files(self, entry: StepArtifact) -> list[ExportedFile]:
        return tflite_files(entry)
