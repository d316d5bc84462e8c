"""The Model artifact (train and compress stages): the Model directory of
:mod:`edgeline.models.io`, which owns its file names (``models`` may not import this layer, so
this view reuses them rather than defining its own).

    model.keras, saved_model/, labels.txt, preprocessing.json   see edgeline.models.io
    history.json        the training history, one list per metric, one value per epoch
    compress.json       compress only: the recipe's steps and the evaluations before and after

Its ``artifact.json`` metrics are the kept epoch's validation figures (train: ``val_*``, and
``box_map`` for detectors) or the evaluate stage's figures of the result (compress: ``top1``,
``AP``, ..., with ``original_`` twins, ``kernel_sparsity``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeline.common.artifact_types.tflite_model import tflite_files
from edgeline.models.io import HISTORY_FILE, LABELS_FILE, MODEL_FILE, PREPROCESSING_FILE
from edgeline.pipeline import report
from edgeline.pipeline.artifacts import Artifact

COMPRESS_REPORT_FILE = "compress.json"

__all__ = ["COMPRESS_REPORT_FILE", "HISTORY_FILE", "LABELS_FILE", "MODEL_FILE",
           "PREPROCESSING_FILE", "Model", "read_history", "training_curves_png"]


def read_history(directory: str | Path) -> dict[str, Any]:
    """The Model's ``history.json`` (Keras-style columns); {} where there is none or it is
    unreadable."""
    return report.read_json_object(Path(directory) / HISTORY_FILE)


def numeric_series(columns: Mapping[str, Any]) -> dict[str, list[float]]:
    """The history's numeric columns but ``epoch`` (None read as NaN: an unlogged epoch)."""
    series = {}
    for key, values in columns.items():
        if key == "epoch" or not isinstance(values, list) or not values:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) or v is None
               for v in values) and any(v is not None for v in values):
            series[key] = [float("nan") if v is None else float(v) for v in values]
    return series


def training_curves_png(history: Mapping[str, Any], title: str) -> bytes | None:
    """Loss, the other metrics and the learning rate per epoch, from a Keras-style history
    (``{"epoch": [0, 1, ...], "loss": [...], "val_loss": [...], ...}``). Validation curves are
    dashed in their training counterpart's colour."""
    from matplotlib.ticker import MaxNLocator

    series = numeric_series(history)
    if not series:
        return None
    length = max(len(v) for v in series.values())
    epochs = [e + 1 for e in history.get("epoch", range(length))]  # Keras counts from 1
    groups = {
        "loss": [k for k in series if k.endswith("loss")],
        "metrics": [k for k in series if not k.endswith("loss") and k != "learning_rate"],
        "learning rate": [k for k in series if k == "learning_rate"],
    }
    groups = {name: keys for name, keys in groups.items() if keys}
    figure, axes_list = report.new_figure(len(groups))
    for axes, (name, keys) in zip(axes_list, groups.items()):
        colours = {}
        for key in sorted(keys, key=lambda k: (k.startswith("val_"), k)):
            base = key.removeprefix("val_")
            style = {"linestyle": "--"} if key.startswith("val_") else {}
            if base in colours:
                style["color"] = colours[base]
            (line,) = axes.plot(epochs[:len(series[key])], series[key], marker="o",
                                markersize=3, label=key, **style)
            colours.setdefault(base, line.get_color())
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(name)
        axes.grid(alpha=0.3)
        if name != "learning rate":
            axes.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    return report.png_bytes(figure)


def _history_blocks(entry: report.StepArtifact, history: Mapping[str, Any]) -> list[report.Block]:
    """The training curves and, when short enough to read, the per-epoch table."""
    blocks: list[report.Block] = []
    png = training_curves_png(history, f"{entry.step}: training curves")
    if png:
        blocks.append(report.Heading(3, "Training curves"))
        blocks.append(report.Figure(report.slug(f"{entry.step}_training_curves.png"), png,
                             f"{entry.step}: loss and metrics per epoch ({HISTORY_FILE})"))
    series = numeric_series(history)
    epochs = history.get("epoch", list(range(max(map(len, series.values()), default=0))))
    if series and len(epochs) <= report.MAX_TABLE_ROWS:
        keys = sorted(series)
        value = report.format_value
        rows = [[str(epoch + 1)] + [value(series[k][i] if i < len(series[k]) else None)
                                    for k in keys] for i, epoch in enumerate(epochs)]
        blocks.append(report.Table(("epoch", *keys), rows))
    return blocks


class Model:
    type_name = "Model"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        metrics = artifact.metrics

        def first(*keys: str) -> Any:  # compress publishes evaluate's names, train its own
            return next((metrics[k] for k in keys if k in metrics), None)

        if artifact.properties.get("task") == "detection":
            figures = {"box mAP": first("AP", "box_map")}
        else:
            figures = {"top-1": first("top1", "val_top1")}
        if "kernel_sparsity" in metrics:
            figures["kernel sparsity"] = metrics["kernel_sparsity"]
        return figures

    def render(self, entry: report.StepArtifact) -> list[report.Block]:
        blocks: list[report.Block] = []
        history = read_history(entry.directory)
        if history:
            blocks.extend(_history_blocks(entry, history))
        if entry.artifact.metrics:
            blocks.append(report.Heading(3, "Final metrics"))
            blocks.append(report.key_value_table(entry.artifact.metrics))
        scalars = {k: v for k, v in entry.artifact.properties.items()
                   if isinstance(v, str | int | float | bool)}
        if scalars:
            blocks.append(report.key_value_table(scalars, "property"))
        return blocks

    def exported_files(self, entry: report.StepArtifact) -> list[report.ExportedFile]:
        return tflite_files(entry)
