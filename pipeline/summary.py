"""The end of a run as text: one row per step, then where the report and the files are.

    step                    stage   status  time    headline
    ----------------------  ------  ------  ------  ---------------------------------------
    images                  ingest  built   13.6s   train examples 4,004, validation ...
    classifier              train   built   51.0s   top-1 0.266
    export_classifier_int8  export  built   20.1s   bytes 1,031,520, latency ms ...

    report: runs/runs/<run id>/report.html (Markdown: report.md beside it)
    tflite: <the export artifact folder>/<its file>.tflite (1,031,520 bytes, ...)

``edgeline run`` prints it when the run ends (failed or not), ``edgeline runs show`` for a run
in the store. The headline figures are each artifact view's (``ArtifactView.headline``): the
pipeline does not know what an artifact holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeline.pipeline import console, report
from edgeline.pipeline.artifacts import Artifact

if TYPE_CHECKING:
    from edgeline.pipeline.runner import RunOutcome, StepOutcome
    from edgeline.pipeline.stage import ArtifactView

COLUMNS = ("step", "stage", "status", "time", "headline")


def headline_text(artifact: Artifact | None, views: Mapping[str, ArtifactView]) -> str:
    """The artifact's headline figures as one cell: ``top-1 0.9812, kernel sparsity 0.5``."""
    if artifact is None:
        return ""
    view = views.get(artifact.type)
    figures = view.headline(artifact) if view is not None else {}
    return ", ".join(f"{name} {console.format_figure(value)}"
                     for name, value in figures.items() if value is not None)


def where_lines(report_path: Path | None, outcomes: Iterable[StepOutcome],
                views: Mapping[str, ArtifactView]) -> list[str]:
    """Where the run's report and each exported file are (with its size and latency)."""
    lines = []
    if report_path is not None:
        lines.append(f"report: {report_path} (Markdown: report.md beside it)")
    entries = [report.StepArtifact(o.step, o.stage, o.artifact, o.cached)
               for o in outcomes if o.artifact is not None]
    for found in report.exported_files(entries, views):
        latency = (f", {found.latency_threads_1_ms:.3f} ms (1 thread)"
                   if found.latency_threads_1_ms is not None else "")
        lines.append(f"{found.format}: {found.path} ({found.size_bytes:,} bytes{latency}; "
                     f"step {found.step})")
    return lines


def end_of_run_lines(outcome: RunOutcome, views: Mapping[str, ArtifactView]) -> list[str]:
    """What ``edgeline run`` prints when the run ends: counts, the table, where things are."""
    counts = {status: sum(s.status == status for s in outcome.steps)
              for status in ("built", "cached", "failed")}
    failed = f", {counts['failed']} failed" if counts["failed"] else ""
    lines = [f"run {outcome.run_id}: {counts['built']} step(s) built, {counts['cached']} "
             f"cached{failed}, {outcome.seconds:.1f}s", ""]
    rows = [(s.step, s.stage, s.status, console.duration(None if s.cached else s.seconds),
             headline_text(s.artifact, views)) for s in outcome.steps]
    if rows:
        lines += [*console.table(COLUMNS, rows, indent="  "), ""]
    lines += where_lines(outcome.report, outcome.steps, views)
    lines.append(f"details: edgeline runs show {outcome.run_id} --runs-dir {outcome.runs_dir}")
    return lines


def _status(execution: Mapping[str, Any]) -> str:
    if execution["cached"]:
        return "cached"
    return {"complete": "built"}.get(execution["status"], execution["status"])


def run_lines(info: Mapping[str, Any], entries: Sequence[report.StepArtifact | None],
              views: Mapping[str, ArtifactView]) -> list[str]:
    """``edgeline runs show RUN``: the run, a row per step, each artifact's folder, errors.
    ``entries`` are the executions' artifacts (``report.step_artifacts``)."""
    lines = [f"run {info['id']} ({info['pipeline']}): {info['status']}",
             f"config: {info['config']}", ""]
    rows, folders, errors = [], [], []
    for execution, entry in zip(info["executions"], entries):
        artifact = entry.artifact if entry is not None else None
        seconds = None if execution["cached"] else execution["seconds"]
        rows.append((execution["step"], execution["stage"], _status(execution),
                     console.duration(seconds), headline_text(artifact, views)))
        if artifact is not None:
            folders.append((execution["step"], artifact.type, str(artifact.path)))
        if execution["error"]:
            errors.append(f"  {execution['step']}: {execution['error'].splitlines()[0]}")
    lines += console.table(COLUMNS, rows, indent="  ")
    if folders:
        lines += ["", *console.table(("step", "artifact", "folder"), folders, indent="  ")]
    if errors:
        lines += ["", "errors:", *errors]
    return lines
