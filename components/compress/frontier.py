"""Frontier mode: "give me the smallest model that is still good enough".

Every recipe runs on the same input model; each result is exported to TFLite by the export
stage (its public core: conversion, the LiteRT accuracy on held-out images, LiteRT latency),
and measured where it will run: accuracy (top-1, or box mAP for a detector) of the ``.tflite``
in LiteRT, the ``.tflite`` size and its gzip size (what an app download costs, and where
pruning's zeros show), and batch-1 latency on one thread. The chosen model is the one with the
smallest gzip size whose accuracy is at most ``accuracy_budget`` points below the original's
float32 ``.tflite``; two plots (accuracy against size, accuracy against latency) show the
trade-off and mark it.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os
import time
from pathlib import Path
from typing import Any

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.artifact_types.frontier import (
    CSV_FILE,
    LATENCY_PLOT,
    REPORT_FILE,
    SIZE_PLOT,
    TABLE_FILE,
)
from edgeline.common.artifact_types.tflite_model import TFLITE_FILE as EXPORTED_FILE
from edgeline.common.determinism import determinism
from edgeline.components.compress import core
from edgeline.components.compress.options import CompressOptions, Recipe
from edgeline.pipeline import console
from edgeline.pipeline.errors import UserError

ORIGINAL = "original"
COLUMNS = ("recipe", "steps", "quantize", "accuracy", "delta_points", "tflite_bytes",
           "gzip_bytes", "latency_ms", "kernel_sparsity", "within_budget", "chosen")


@dataclasses.dataclass
class FrontierResult:
    directory: Path
    rows: list[dict[str, Any]]
    chosen: str | None
    report: dict[str, Any]
    metrics: dict[str, Any]
    properties: dict[str, Any]


def gzip_size(content: bytes) -> int:
    """Bytes after gzip at its strongest level: the download cost, where zeros show."""
    return len(gzip.compress(content, compresslevel=9))


def tflite_quantize(recipe: Recipe, quantization_aware: bool) -> str:
    if recipe.quantize != "auto":
        return recipe.quantize
    return "int8" if quantization_aware else "none"


def export_and_measure(model_dir: Path, export_dir: Path, *, quantize: str, task: str,
                       examples_dir, options: CompressOptions, seed: int) -> dict[str, Any]:
    """Export ``model_dir`` with the export stage and read off the frontier's figures."""
    from edgeline.components import export

    frontier = options.frontier
    export_options = export.ExportOptions(
        quantize=quantize,
        include_preprocessing=frontier.include_preprocessing,
        representative_size=frontier.calibration_images,
        parity_size=frontier.evaluation_images or 1_000_000,  # at most: the whole split
        max_metric_drop=1.0,  # the frontier applies its own budget across recipes
        latency_runs=frontier.latency_runs,
        measure_latency=True,
    )
    try:
        result = export.run(model_dir=model_dir, output_dir=export_dir,
                            options=export_options, examples_dir=examples_dir, seed=seed)
        report = result.report
    except export.ParityGateFailed as failed:
        # A float export that drifts from its source still gets measured; the table says so.
        report = failed.result.report
    parity = report["parity"]
    accuracy_key = "map_export" if task == "detection" else "top1_export"
    content = (export_dir / EXPORTED_FILE).read_bytes()
    return {
        "accuracy": float(parity[accuracy_key]),
        "source_accuracy": float(parity.get(accuracy_key.replace("export", "source"), "nan")),
        "tflite_bytes": len(content),
        "gzip_bytes": gzip_size(content),
        "latency_ms": float(report["latency"]["threads_1_ms"]),
        "parity_passed": bool(parity.get("passed", True)),
        "evaluated_images": int(parity.get("images", 0)),
        "tflite": export_dir / EXPORTED_FILE,
    }


def choose(rows: list[dict[str, Any]], budget_points: float) -> str | None:
    """The smallest (gzip) model within ``budget_points`` of the original's accuracy; ties go
    to the faster one. Marks ``within_budget``, ``delta_points`` and ``chosen`` on the rows."""
    reference = next(row for row in rows if row["recipe"] == ORIGINAL)["accuracy"]
    for row in rows:
        row["delta_points"] = round(100.0 * (row["accuracy"] - reference), 2)
        row["within_budget"] = row["delta_points"] >= -budget_points - 1e-9
        row["chosen"] = False
    candidates = [row for row in rows if row["within_budget"]]
    if not candidates:
        return None
    best = min(candidates, key=lambda row: (row["gzip_bytes"], row["latency_ms"]))
    best["chosen"] = True
    return best["recipe"]


def _kernel_sparsity(model) -> float:
    from edgeline.components.compress.selection import kernels

    zeros = size = 0
    for layer in model.layers:
        for weight in kernels(layer):
            values = weight.numpy()
            zeros, size = zeros + int((values == 0).sum()), size + int(values.size)
    return zeros / size if size else 0.0


def markdown_table(rows: list[dict[str, Any]], metric_name: str) -> str:
    header = (f"| recipe | steps | tflite | {metric_name} | Δ points | TFLite bytes | gzip bytes "
              "| latency ms (1 thread) | kernel sparsity | chosen |")
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        mark = "**chosen**" if row["chosen"] else ("" if row["within_budget"] else "over budget")
        lines.append(
            f"| {row['recipe']} | {row['steps'] or '-'} | {row['quantize']} | "
            f"{100 * row['accuracy']:.2f} | {row['delta_points']:+.2f} | {row['tflite_bytes']:,} "
            f"| {row['gzip_bytes']:,} | {row['latency_ms']:.3f} | {row['kernel_sparsity']:.2f} "
            f"| {mark} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], *, x_key: str, x_label: str, metric_name: str,
         budget_points: float, path: Path) -> None:
    """Accuracy against ``x_key``, each recipe labelled, the budget line dashed, the chosen
    model starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = next(row for row in rows if row["recipe"] == ORIGINAL)["accuracy"]
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for row in rows:
        x, y = row[x_key], 100 * row["accuracy"]
        style = {"marker": "*", "s": 260, "color": "tab:red", "zorder": 3} if row["chosen"] else {
            "marker": "o", "s": 50, "color": "tab:blue" if row["within_budget"] else "tab:gray"}
        axes.scatter([x], [y], **style)
        axes.annotate(row["recipe"], (x, y), textcoords="offset points", xytext=(6, 4),
                      fontsize=8)
    axes.axhline(100 * reference - budget_points, linestyle="--", color="tab:red", linewidth=1,
                 label=f"budget: {budget_points:g} point(s) below the original")
    axes.set_xlabel(x_label)
    axes.set_ylabel(f"{metric_name} (%) of the .tflite in LiteRT")
    axes.set_title(f"{metric_name} vs {x_label.split(' (')[0]}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def run(*, options: CompressOptions, model_dir: str | os.PathLike,
        examples_dir: str | os.PathLike, output_dir: str | os.PathLike, seed: int = 0,
        deterministic: bool = False, log: core.Log | None = None) -> FrontierResult:
    """Run every recipe on ``model_dir``, export and measure each, choose, and write the
    table, the plots and ``frontier.json`` into ``output_dir``."""
    if options.mode != "frontier":
        raise UserError(f"frontier.run needs mode='frontier'; received mode={options.mode!r}")
    # Op determinism is process-wide: on for this run only, not for what the process does next.
    with determinism(seed=seed, deterministic=deterministic):
        return _run_frontier(options=options, model_dir=model_dir, examples_dir=examples_dir,
                             output_dir=output_dir, seed=seed, log=log)


def _run_frontier(*, options: CompressOptions, model_dir, examples_dir, output_dir, seed: int,
                  log: core.Log | None) -> FrontierResult:

    log = log or core._stderr
    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    source = core.read_source(model_dir)
    task = core.examples_task(examples_dir, source, options.fine_tune)

    rows, recipes_report = measure_recipes(
        source=source, task=task, options=options, model_dir=Path(model_dir),
        examples_dir=examples_dir, output_dir=output_dir, seed=seed, log=log,
    )
    for row in rows:  # paths inside the artifact, relative: the runner moves the directory
        row["tflite"] = os.path.relpath(row["tflite"], output_dir)
        if "model_dir" in row and Path(row["model_dir"]).is_relative_to(output_dir):
            row["model_dir"] = os.path.relpath(row["model_dir"], output_dir)
    budget = options.frontier.accuracy_budget
    chosen = choose(rows, budget)
    metric_name = "box mAP" if source.task == "detection" else "top-1"
    write_table_and_plots(rows, metric_name=metric_name, budget_points=budget,
                          output_dir=output_dir)
    chosen_row = next((row for row in rows if row["chosen"]), None)
    report = core.write_report(
        output_dir / REPORT_FILE, model_dir=model_dir, source=source, options=options,
        started=started, metric=metric_name, accuracy_budget_points=budget, chosen=chosen,
        rows=rows, recipes=recipes_report,
    )
    if chosen is None:
        log(f"compress: frontier: no recipe is within {budget:g} point(s) of the original")
    else:
        log(f"compress: frontier: chosen {chosen} ({chosen_row['gzip_bytes']:,} gzip bytes, "
            f"{100 * chosen_row['accuracy']:.2f}% vs {100 * rows[0]['accuracy']:.2f}%)")
    properties = {
        "task": source.task,
        "chosen": chosen,
        "chosen_tflite": chosen_row["tflite"] if chosen_row else None,
        "recipes": [row["recipe"] for row in rows],
        "table": TABLE_FILE,
        "plots": [SIZE_PLOT, LATENCY_PLOT],
    }
    return FrontierResult(directory=output_dir, rows=rows, chosen=chosen, report=report,
                          metrics=headline_metrics(rows, chosen_row), properties=properties)


def measure_recipes(*, source: core.SourceModel, task: core.ExamplesTask,
                    options: CompressOptions, model_dir: Path, examples_dir,
                    output_dir: Path, seed: int, log: core.Log
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The original's float32 ``.tflite`` first, then each recipe run, exported and measured:
    the frontier's rows (paths absolute) and each recipe's step report."""
    from edgeline.components.export import is_quantization_aware

    measure = dict(task=source.task, examples_dir=examples_dir, options=options, seed=seed)
    log("compress: frontier: measuring the original (float32 .tflite)")
    original = export_and_measure(model_dir, output_dir / "recipes" / ORIGINAL / "tflite",
                                  quantize="none", **measure)
    rows = [{"recipe": ORIGINAL, "steps": "", "quantize": "none",
             "kernel_sparsity": _kernel_sparsity(source.model), "seconds": 0.0, **original}]
    recipes_report = {}
    recipes = options.resolved_recipes()
    progress = console.progress(len(recipes), "compress: recipes", "recipe")
    for name, recipe in progress.iterate(recipes.items()):
        recipe_started = time.time()
        recipe_dir = output_dir / "recipes" / name
        if recipe.steps:
            log(f"compress: frontier: recipe {name}")
            outcome = core.run_steps(source, recipe.steps, task, fine_tune=options.fine_tune,
                                     seed=seed, evaluation_images=options.evaluation_images,
                                     log=log)
            core.save_model(recipe_dir / "model", outcome.model, source, outcome.history())
            model, model_path = outcome.model, recipe_dir / "model"
            recipes_report[name] = outcome.to_json()
        else:
            model, model_path = source.model, model_dir
            recipes_report[name] = []
        quantize = tflite_quantize(recipe, is_quantization_aware(model))
        if not recipe.steps and quantize == "none":
            log(f"compress: frontier: recipe {name} is the original; not measured twice")
            continue
        figures = export_and_measure(model_path, recipe_dir / "tflite", quantize=quantize,
                                     **measure)
        rows.append({
            "recipe": name,
            "steps": " -> ".join(step.method for step in recipe.steps),
            "quantize": quantize,
            "kernel_sparsity": _kernel_sparsity(model),
            "seconds": round(time.time() - recipe_started, 1),
            "model_dir": os.fspath(model_path),
            **figures,
        })
        log(f"compress: frontier: {name}: accuracy {figures['accuracy']:.4f}, "
            f"{figures['gzip_bytes']:,} gzip bytes, {figures['latency_ms']:.3f} ms")
    progress.close()
    return rows, recipes_report


def write_table_and_plots(rows: list[dict[str, Any]], *, metric_name: str,
                          budget_points: float, output_dir: Path) -> None:
    """The frontier as a Markdown table, a CSV, and the two trade-off plots."""
    (output_dir / TABLE_FILE).write_text(markdown_table(rows, metric_name), encoding="utf-8")
    with open(output_dir / CSV_FILE, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, x_key="gzip_bytes", x_label="model size (gzip bytes of the .tflite)",
         metric_name=metric_name, budget_points=budget_points, path=output_dir / SIZE_PLOT)
    plot(rows, x_key="latency_ms", x_label="latency (ms, batch 1, 1 thread, LiteRT)",
         metric_name=metric_name, budget_points=budget_points, path=output_dir / LATENCY_PLOT)


def headline_metrics(rows: list[dict[str, Any]],
                     chosen_row: dict[str, Any] | None) -> dict[str, Any]:
    """The original's accuracy and size, and the chosen model's (when one is in budget)."""
    metrics = {"original_accuracy": rows[0]["accuracy"],
               "original_gzip_bytes": rows[0]["gzip_bytes"]}
    if chosen_row is not None:
        metrics.update(chosen_accuracy=chosen_row["accuracy"],
                       chosen_gzip_bytes=chosen_row["gzip_bytes"],
                       chosen_tflite_bytes=chosen_row["tflite_bytes"],
                       chosen_latency_ms=chosen_row["latency_ms"])
    return metrics
