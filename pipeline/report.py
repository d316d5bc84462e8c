"""The run report: one self-contained HTML file per run, and the same content as Markdown.

    write_report(runs_dir, run_id)  ->  runs/runs/<run_id>/report.html, report.md

The report is built from what the run left on disk and in the lineage database, never from a
stage's code (the pipeline knows no particular stage): the resolved config, every step with
its artifact (producer, inputs, fingerprint, cache hit or built), then each artifact rendered
by its type and the files it holds (a Model's ``history.json`` as training curves, a Metrics
artifact's numbers and plots, a Frontier's table and plots, a Policy's learning curve), any
other ``*.png`` an artifact holds, and every ``.tflite`` of the run with its size and LiteRT
latency (from the ``export.json`` beside it).

The HTML needs no network: plots are PNG data URIs and the only script is inline (it records,
once the page has loaded, how many figures decoded). The Markdown links its images from a
``report_files/`` folder beside it, since Markdown viewers differ on data URIs.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import edgeline
from edgeline.pipeline.artifacts import ARTIFACT_FILE, Artifact
from edgeline.pipeline.errors import UserError, storage_errors
from edgeline.pipeline.store import RunStore

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
ASSETS_DIR = "report_files"  # the Markdown report's images
HISTORY_FILE = "history.json"  # a Model's (columns per metric) or a Policy's (evaluations...)
METRICS_FILE = "metrics.json"
FRONTIER_FILE = "frontier.json"
EXPORT_FILE = "export.json"
MAX_TABLE_ROWS = 200  # longer per-class tables are cut, with a note saying so


# -- the report's content, independent of its format ---------------------------------------


@dataclasses.dataclass
class Heading:
    level: int
    text: str


@dataclasses.dataclass
class Text:
    text: str


@dataclasses.dataclass
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""


@dataclasses.dataclass
class Figure:
    name: str  # a file name, unique in the report: the Markdown report's image file
    png: bytes
    caption: str


@dataclasses.dataclass
class Code:
    text: str
    language: str = ""


Block = Heading | Text | Table | Figure | Code


def format_value(value: Any) -> str:
    """How a number reads in the report: integers in full, fractions to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        if len(value) > 8:
            return f"[{len(value)} items]"
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys (``best_evaluation.mean_return``), in key order."""
    items = []
    for key in sorted(mapping):
        value = mapping[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            items.extend(flatten(value, f"{name}."))
        else:
            items.append((name, value))
    return items


def key_value_table(mapping: Mapping[str, Any], kind: str = "metric") -> Table | None:
    """``mapping`` flattened, one row per key; ``kind`` names the first column."""
    rows = [(key, format_value(value)) for key, value in flatten(mapping)]
    return Table((kind, "value"), rows) if rows else None


# -- plots -------------------------------------------------------------------------------------


def _new_figure(panels: int):
    """A matplotlib Figure on an Agg canvas (no pyplot: no global state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(4.2 * panels, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, panels, i + 1) for i in range(panels)]


def _png(figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _numeric_series(columns: Mapping[str, Any]) -> dict[str, list[float]]:
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

    series = _numeric_series(history)
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
    figure, axes_list = _new_figure(len(groups))
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
    return _png(figure)


def learning_curve_png(curve: Sequence[Sequence[float]], training: Sequence[Mapping[str, Any]],
                       target_return: float | None, title: str) -> bytes | None:
    """Mean greedy return against environment steps (``learning_curve`` rows are
    ``[env_steps, episodes, mean_return]``), and the training loss beside it when logged."""
    if not curve:
        return None
    losses = [(row["env_steps"], row["loss"]) for row in training
              if isinstance(row.get("loss"), int | float)]
    figure, axes_list = _new_figure(2 if losses else 1)
    axes = axes_list[0]
    axes.plot([row[0] for row in curve], [row[2] for row in curve], marker="o", markersize=3,
              label="mean greedy return")
    train_returns = [(row["env_steps"], row["train_average_return"]) for row in training
                     if isinstance(row.get("train_average_return"), int | float)]
    if train_returns:
        axes.plot(*zip(*train_returns), alpha=0.6, label="training episodes' return")
    if target_return is not None:
        axes.axhline(target_return, linestyle="--", color="tab:red", linewidth=1,
                     label=f"target {target_return:g}")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return")
    axes.set_title("learning curve")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    if losses:
        axes = axes_list[1]
        axes.plot(*zip(*losses), color="tab:orange")
        axes.set_xlabel("environment steps")
        axes.set_title("training loss")
        axes.set_yscale("log" if min(v for _, v in losses) > 0 else "linear")
        axes.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    return _png(figure)


# -- reading an artifact -------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "figure"


@dataclasses.dataclass
class ArtifactView:
    """One artifact of the run as the report sees it: the artifact and the step that made or
    reused it."""

    step: str
    stage: str
    artifact: Artifact
    cached: bool

    @property
    def directory(self) -> Path:
        return self.artifact.path

    def files(self, suffix: str) -> list[str]:
        """Its files (from artifact.json's manifest) ending in ``suffix``, sorted."""
        return sorted(rel for rel in self.artifact.files if rel.endswith(suffix))

    def figure(self, rel: str, caption: str) -> Figure | None:
        path = self.directory / rel
        if not path.is_file():
            return None
        name = _slug(f"{self.step}_{rel}")
        return Figure(name=name, png=path.read_bytes(), caption=caption)


def _render_examples(view: ArtifactView) -> list[Block]:
    properties = view.artifact.properties
    blocks: list[Block] = []
    splits = properties.get("splits")
    if isinstance(splits, Mapping) and splits:
        keys = ("seen", "written", "fixed", "rejected", "shards")
        rows = [[split] + [format_value(counts.get(k)) for k in keys]
                for split, counts in splits.items() if isinstance(counts, Mapping)]
        blocks.append(Table(("split", *keys), rows))
    info = {k: properties[k] for k in ("task", "format", "source", "num_classes", "tfds_name")
            if k in properties}
    for table in (key_value_table(info, "property"), key_value_table(view.artifact.metrics)):
        if table:
            blocks.append(table)
    return blocks


def _render_model(view: ArtifactView) -> list[Block]:
    blocks: list[Block] = []
    history = _read_json(view.directory / HISTORY_FILE)
    if isinstance(history, Mapping) and history:
        png = training_curves_png(history, f"{view.step}: training curves")
        if png:
            blocks.append(Heading(3, "Training curves"))
            blocks.append(Figure(_slug(f"{view.step}_training_curves.png"), png,
                                 f"{view.step}: loss and metrics per epoch (history.json)"))
        series = _numeric_series(history)
        epochs = history.get("epoch", list(range(max(map(len, series.values()), default=0))))
        if series and len(epochs) <= MAX_TABLE_ROWS:
            keys = sorted(series)
            rows = [[str(epoch + 1)] + [format_value(series[k][i] if i < len(series[k]) else None)
                                        for k in keys] for i, epoch in enumerate(epochs)]
            blocks.append(Table(("epoch", *keys), rows))
    if view.artifact.metrics:
        blocks.append(Heading(3, "Final metrics"))
        blocks.append(key_value_table(view.artifact.metrics))
    scalars = {k: v for k, v in view.artifact.properties.items()
               if isinstance(v, str | int | float | bool)}
    if scalars:
        blocks.append(key_value_table(scalars, "property"))
    return blocks


def _render_metrics(view: ArtifactView) -> list[Block]:
    blocks: list[Block] = []
    properties = view.artifact.properties
    heading = ", ".join(f"{k} {properties[k]}" for k in ("task", "split", "model_form",
                                                         "model_type") if k in properties)
    if heading:
        blocks.append(Text(heading))
    if view.artifact.metrics:
        blocks.append(key_value_table(view.artifact.metrics))
    report = _read_json(view.directory / METRICS_FILE) or {}
    per_class = report.get("per_class_accuracy")
    if isinstance(per_class, Mapping) and per_class:
        rows = [(name, format_value(value)) for name, value in per_class.items()]
        blocks.append(Heading(3, "Per-class accuracy"))
        blocks.append(_cut(Table(("class", "accuracy"), rows)))
    per_category = report.get("per_category_ap")
    if isinstance(per_category, list) and per_category:
        rows = [(format_value(row.get("category_id")), row.get("name", ""),
                 format_value(row.get("ap"))) for row in per_category if isinstance(row, Mapping)]
        blocks.append(Heading(3, "Per-category AP"))
        blocks.append(_cut(Table(("category id", "name", "AP"), rows)))
    pngs = view.files(".png")
    # The overview plots first (confusion matrix, PR over all categories), then the rest.
    first = [p for p in pngs if p.endswith(("confusion_matrix.png", "pr_all.png"))]
    for rel in first + [p for p in pngs if p not in first]:
        figure = view.figure(rel, f"{view.step}: {rel}")
        if figure:
            blocks.append(figure)
    return blocks


def _render_frontier(view: ArtifactView) -> list[Block]:
    blocks: list[Block] = []
    report = _read_json(view.directory / FRONTIER_FILE) or {}
    rows = report.get("rows") or []
    metric = report.get("metric", "accuracy")
    if rows:
        columns = ("recipe", "steps", "quantize", f"{metric} %", "Δ points", "TFLite bytes",
                   "gzip bytes", "latency ms (1 thread)", "kernel sparsity", "chosen")
        table_rows = []
        for row in rows:
            mark = "chosen" if row.get("chosen") else (
                "" if row.get("within_budget", True) else "over budget")
            accuracy = row.get("accuracy")
            table_rows.append((
                row.get("recipe", ""), row.get("steps") or "-", row.get("quantize", ""),
                format_value(100 * accuracy if isinstance(accuracy, int | float) else None),
                format_value(row.get("delta_points")), format_value(row.get("tflite_bytes")),
                format_value(row.get("gzip_bytes")), format_value(row.get("latency_ms")),
                format_value(row.get("kernel_sparsity")), mark,
            ))
        blocks.append(Table(columns, table_rows))
        budget = report.get("accuracy_budget_points")
        chosen = report.get("chosen")
        blocks.append(Text(
            f"Chosen: {chosen or 'none'} (the smallest gzip size within "
            f"{format_value(budget)} point(s) of the original's {metric})."))
    elif view.artifact.metrics:
        blocks.append(key_value_table(view.artifact.metrics))
    plots = view.artifact.properties.get("plots") or []
    for rel in [p for p in plots if isinstance(p, str)] + view.files(".png"):
        figure = view.figure(rel, f"{view.step}: {rel}")
        if figure and not any(isinstance(b, Figure) and b.name == figure.name for b in blocks):
            blocks.append(figure)
    return blocks


def _render_policy(view: ArtifactView) -> list[Block]:
    blocks: list[Block] = []
    properties = view.artifact.properties
    history = _read_json(view.directory / HISTORY_FILE) or {}
    curve = properties.get("learning_curve") or [
        [row["env_steps"], row["episodes"], row["mean_return"]]
        for row in history.get("evaluations", []) if "mean_return" in row]
    target = (history.get("target") or {}).get("target_return")
    if target is None:
        target = (history.get("options") or {}).get("target_return")
    what = " on ".join(str(v) for v in (properties.get("algorithm"),
                                          history.get("environment")) if v)
    png = learning_curve_png(curve, history.get("training") or [], target,
                             f"{view.step}: {what}" if what else view.step)
    if png:
        blocks.append(Heading(3, "Learning curve"))
        blocks.append(Figure(_slug(f"{view.step}_learning_curve.png"), png,
                             f"{view.step}: mean greedy return at each evaluation"))
        rows = [(format_value(r[0]), format_value(r[1]), format_value(r[2])) for r in curve]
        blocks.append(_cut(Table(("env steps", "episodes", "mean greedy return"), rows)))
    if view.artifact.metrics:
        blocks.append(Heading(3, "Summary"))
        blocks.append(key_value_table(view.artifact.metrics))
    return blocks


def _render_tflite(view: ArtifactView) -> list[Block]:
    report = _read_json(view.directory / EXPORT_FILE) or {}
    blocks: list[Block] = []
    summary = {k: report[k] for k in ("task", "quantize", "io_type", "preprocessing_inside",
                                      "size_bytes") if k in report}
    for key, value in (report.get("latency") or {}).items():
        summary[f"latency.{key}"] = value
    for key, value in (report.get("parity") or {}).items():
        if isinstance(value, str | int | float | bool):
            summary[f"parity.{key}"] = value
    table = key_value_table(summary or view.artifact.metrics, "figure")
    if table:
        blocks.append(table)
    return blocks


def _render_generic(view: ArtifactView) -> list[Block]:
    blocks: list[Block] = []
    for mapping, kind in ((view.artifact.metrics, "metric"),
                          (view.artifact.properties, "property")):
        table = key_value_table(mapping, kind)
        if table:
            blocks.append(table)
    return blocks


RENDERERS = {
    "Examples": _render_examples,
    "Model": _render_model,
    "Metrics": _render_metrics,
    "Frontier": _render_frontier,
    "Policy": _render_policy,
    "TFLiteModel": _render_tflite,
}


def _cut(table: Table) -> Table:
    if len(table.rows) <= MAX_TABLE_ROWS:
        return table
    note = f"first {MAX_TABLE_ROWS} of {len(table.rows)} rows; the rest are in the artifact"
    return Table(table.columns, table.rows[:MAX_TABLE_ROWS], note)


def render_artifact(view: ArtifactView) -> list[Block]:
    """The blocks of one artifact: by its type, then any PNG it holds not shown yet."""
    renderer = RENDERERS.get(view.artifact.type, _render_generic)
    try:
        blocks = [b for b in renderer(view) if b is not None]
    except Exception as err:  # a damaged file must not cost the rest of the report
        blocks = [Text(f"This artifact could not be rendered: {type(err).__name__}: {err}")]
        blocks.extend(_render_generic(view))
    shown = {b.name for b in blocks if isinstance(b, Figure)}
    for rel in view.files(".png"):
        figure = view.figure(rel, f"{view.step}: {rel}")
        if figure and figure.name not in shown:
            blocks.append(figure)
            shown.add(figure.name)
    return blocks


# -- exported files --------------------------------------------------------------------------


@dataclasses.dataclass
class TFLiteFile:
    step: str
    path: Path
    size_bytes: int
    quantize: str | None
    latency_threads_1_ms: float | None
    latency_threads_all_ms: float | None
    threads_all: int | None
    parity_passed: bool | None
    chosen: bool = False  # the model a Frontier chose


def tflite_files(views: Iterable[ArtifactView]) -> list[TFLiteFile]:
    """Every ``.tflite`` the run's artifacts hold, with the figures of the ``export.json``
    written beside it (by the export stage, also inside a Frontier's recipes)."""
    found = []
    for view in views:
        chosen = view.artifact.properties.get("chosen_tflite")
        for rel in view.files(".tflite"):
            path = view.directory / rel
            if not path.is_file():
                continue
            report = _read_json(path.parent / EXPORT_FILE) or {}
            latency = report.get("latency") or {}
            parity = report.get("parity") or {}
            found.append(TFLiteFile(
                step=view.step,
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


def _tflite_blocks(files: Sequence[TFLiteFile]) -> list[Block]:
    if not files:
        return [Text("This run holds no .tflite file.")]
    rows = [(f.step + (" (chosen)" if f.chosen else ""), str(f.path), format_value(f.size_bytes),
             f"{f.size_bytes / 2**20:.2f}", f.quantize or "–",
             format_value(f.latency_threads_1_ms),
             format_value(f.latency_threads_all_ms) + (f" ({f.threads_all})"
                                                      if f.threads_all else ""),
             format_value(f.parity_passed))
            for f in files]
    columns = ("step", "file", "bytes", "MiB", "quantize", "latency ms (1 thread)",
               "latency ms (all threads)", "parity passed")
    note = "Latency: median LiteRT time of one batch-1 inference (export.json); – where the " \
           "file was not measured."
    return [Table(columns, rows, note)]


# -- the whole report ------------------------------------------------------------------------


def _when(seconds: float | None) -> str:
    if not seconds:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


def _artifact_views(store: RunStore, info: Mapping[str, Any]) -> list[ArtifactView | None]:
    """One entry per execution: its artifact, or None where the step published nothing."""
    views = []
    for execution in info["executions"]:
        artifact = None
        output = execution["output"]
        if output:
            directory = store.artifact_dir(execution["stage"], output)
            if (directory / ARTIFACT_FILE).is_file():
                artifact = Artifact.load(directory)
        views.append(ArtifactView(execution["step"], execution["stage"], artifact,
                                  execution["cached"]) if artifact else None)
    return views


def build_report(store: RunStore, run_id: str) -> tuple[str, list[Block]]:
    """(title, blocks) of the report of ``run_id``."""
    info = store.show_run(run_id)
    views = _artifact_views(store, info)
    steps_by_fingerprint = {ex["output"]: ex["step"] for ex in info["executions"] if ex["output"]}
    title = f"edgeline run {run_id}: {info['pipeline']}"
    blocks: list[Block] = [Heading(1, title)]
    finished = info["finished"]
    overview = {
        "pipeline": info["pipeline"],
        "status": info["status"],
        "started": _when(info["started"]),
        "finished": _when(finished),
        "duration": (f"{finished - info['started']:.1f} s" if finished else "–"),
        "config file": info["config_path"] or "–",
        "runs directory": str(store.root.resolve()),
        "edgeline version": edgeline.__version__,
    }
    if info["error"]:
        overview["error"] = info["error"]
    blocks.append(Table(("run", ""), list(overview.items())))

    blocks.append(Heading(2, "Steps and lineage"))
    rows = []
    for execution, view in zip(info["executions"], views):
        if execution["cached"]:
            outcome = "cache hit"
        elif execution["status"] == "complete":
            outcome = f"built in {execution['seconds']:.1f} s"
        else:
            outcome = execution["status"]
        inputs = ", ".join(f"{steps_by_fingerprint.get(fp, name)} ({fp[:12]})"
                           for name, fp in execution["inputs"].items())
        rows.append((execution["step"], execution["stage"], outcome,
                     view.artifact.type if view else "–",
                     execution["output"][:12] if execution["output"] else "–",
                     inputs or "–", str(view.directory) if view else "–"))
    blocks.append(Table(("step", "stage", "outcome", "artifact", "fingerprint", "inputs",
                         "directory"), rows,
                        note="Fingerprints are sha256 of the step's options, its inputs' "
                             "fingerprints, the seed and the edgeline version (first 12 hex "
                             "digits shown)."))
    for execution in info["executions"]:
        if execution["error"]:
            blocks.append(Text(f"{execution['step']} failed: {execution['error']}"))

    for view in views:
        if view is None:
            continue
        blocks.append(Heading(2, f"{view.step} ({view.stage}): {view.artifact.type}"))
        blocks.append(Text(
            f"{'Cache hit' if view.cached else 'Built'}; produced by {view.artifact.producer}; "
            f"fingerprint {view.artifact.fingerprint}; directory {view.directory}"))
        blocks.extend(render_artifact(view))

    blocks.append(Heading(2, "Exported files"))
    blocks.extend(_tflite_blocks(tflite_files(v for v in views if v is not None)))

    blocks.append(Heading(2, "Resolved config"))
    config_path = Path(info["config"])
    config = config_path.read_text(encoding="utf-8") if config_path.is_file() else "(missing)"
    blocks.append(Text(f"Every default filled in, as saved with the run: {config_path}"))
    blocks.append(Code(config, "yaml"))
    return title, blocks


# -- formats -------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top;
         overflow-wrap: break-word; }
td.path { word-break: break-all; font-family: monospace; font-size: 0.95em; }
nav ul { columns: 2; font-size: 0.9em; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption, .note { color: #666; font-size: 0.85em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""

# Runs when the page has loaded: records on each image whether it decoded (naturalWidth), and
# says how many did at the foot of the page, so a broken figure is visible and checkable.
IMAGE_CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var images = document.querySelectorAll("figure img");
  var decoded = 0;
  images.forEach(function (image) {
    image.dataset.naturalWidth = image.naturalWidth;
    if (image.complete && image.naturalWidth > 0) { decoded += 1; }
  });
  var check = document.getElementById("figure-check");
  check.dataset.decoded = decoded;
  check.textContent = decoded + " of " + images.length + " figures rendered.";
});
"""

_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?$")


def _anchors(blocks: Sequence[Block]) -> dict[int, str]:
    """A unique HTML id for each heading (by block index), from its text."""
    anchors, used = {}, set()
    for index, block in enumerate(blocks):
        if isinstance(block, Heading):
            base = re.sub(r"[^a-z0-9]+", "-", block.text.lower()).strip("-") or "section"
            anchor, count = base, 1
            while anchor in used:
                count += 1
                anchor = f"{base}-{count}"
            anchors[index] = anchor
            used.add(anchor)
    return anchors


def to_html(title: str, blocks: Sequence[Block]) -> str:
    escape = html.escape
    figures = sum(isinstance(b, Figure) for b in blocks)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head><body>"]
    anchors = _anchors(blocks)
    contents = "".join(f'<li><a href="#{anchors[i]}">{escape(b.text)}</a></li>'
                       for i, b in enumerate(blocks) if isinstance(b, Heading) and b.level == 2)
    for index, block in enumerate(blocks):
        if index == 1 and contents:  # after the title: a table of contents
            parts.append(f"<nav><ul>{contents}</ul></nav>")
        if isinstance(block, Heading):
            parts.append(f'<h{block.level} id="{anchors[index]}">{escape(block.text)}'
                         f"</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Code):
            parts.append(f'<pre><code class="language-{escape(block.language)}">'
                         f"{escape(block.text)}</code></pre>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                         f'alt="{escape(block.caption)}" data-name="{escape(block.name)}">'
                         f"<figcaption>{escape(block.caption)}</figcaption></figure>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{escape(str(c))}</th>" for c in block.columns)
            body = []
            for row in block.rows:
                cells = []
                for cell in row:
                    text = str(cell)
                    kind = (' class="number"' if _NUMBER.match(text) else
                            ' class="path"' if text.startswith("/") else "")
                    cells.append(f"<td{kind}>{escape(text)}</td>")
                body.append(f"<tr>{''.join(cells)}</tr>")
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}"
                         "</tbody></table>")
            if block.note:
                parts.append(f'<p class="note">{escape(block.note)}</p>')
    parts.append(f'<p class="note" id="figure-check" data-figures="{figures}">'
                 f"{figures} figures.</p>")
    parts.append(f"<script>{IMAGE_CHECK_SCRIPT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], assets_dir: str) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Code):
            parts.append(f"```{block.language}\n{block.text.rstrip()}\n```")
        elif isinstance(block, Figure):
            parts.append(f"![{_md_cell(block.caption)}]({assets_dir}/{block.name})")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(c) or " " for c in block.columns) + " |",
                     "|" + "---|" * len(block.columns)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            if block.note:
                lines.append(f"\n{block.note}")
            parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _unique_names(blocks: Sequence[Block]) -> None:
    """Figure names double as file names in ``report_files/``: make them unique, .png."""
    seen: set[str] = set()
    for block in blocks:
        if isinstance(block, Figure):
            stem = block.name.removesuffix(".png")
            name, index = f"{stem}.png", 1
            while name in seen:
                index += 1
                name = f"{stem}_{index}.png"
            block.name = name
            seen.add(name)


def write_report(
    runs_dir: str | Path | RunStore, run_id: str, output_dir: str | Path | None = None
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` of ``run_id`` into ``output_dir`` (default: the
    run's folder, ``<runs_dir>/runs/<run_id>``); return their paths.

    ``runs_dir`` is a runs directory or an open :class:`RunStore` (the runner's own);
    ``run_id`` a run id, a unique prefix of one, or ``latest``.
    """
    if not isinstance(runs_dir, RunStore) and not Path(runs_dir, "lineage.sqlite").is_file():
        raise UserError(f"no runs directory at {str(runs_dir)!r} (no lineage.sqlite in it)")
    store = runs_dir if isinstance(runs_dir, RunStore) else RunStore(runs_dir, read_only=True)
    try:
        run_id = store.resolve_run(run_id)
        title, blocks = build_report(store, run_id)
        output = Path(output_dir) if output_dir else store.root / "runs" / run_id
    finally:
        if store is not runs_dir:
            store.close()
    with storage_errors(lambda problem: f"the report cannot be written into {str(output)!r}: "
                                        f"{problem}"):
        return _write_files(output, title, blocks)


def _write_files(output: Path, title: str, blocks: list) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    _unique_names(blocks)
    assets = output / ASSETS_DIR
    if assets.exists():  # figures of an earlier rendering (a refusal here is said, not hidden)
        shutil.rmtree(assets)
    figures = [b for b in blocks if isinstance(b, Figure)]
    if figures:
        assets.mkdir()
        for figure in figures:
            (assets / figure.name).write_bytes(figure.png)
    html_path, md_path = output / REPORT_HTML, output / REPORT_MD
    _write_atomically(html_path, to_html(title, blocks))
    _write_atomically(md_path, to_markdown(blocks, ASSETS_DIR))
    return html_path, md_path


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
