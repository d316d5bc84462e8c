"""The run report: one self-contained HTML file per run, and the same content as Markdown.

    write_report(runs_dir, run_id, views=registry.views())
        ->  runs/runs/<run_id>/report.html, report.md

The report is built from what the run left on disk and in the lineage database, never from a
stage's code: the pipeline knows no particular stage, nor any artifact type's files. It lays
out the overview, each artifact's headline figures, every step with its artifact (producer,
inputs, fingerprint, cache hit or built), then each artifact as the view registered for its
type renders it (:class:`edgeline.pipeline.stage.ArtifactView`; the CLI registers the views of
``edgeline.common.artifact_types``), followed by any other ``*.png`` it holds; an artifact type
without a view shows its metrics and properties. Then the exported files the views found, with
their size and measured latency, and the resolved config.

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
from typing import TYPE_CHECKING, Any

import edgeline
from edgeline.pipeline.artifacts import ARTIFACT_FILE, Artifact
from edgeline.pipeline.errors import UserError, storage_errors
from edgeline.pipeline.store import RunStore

if TYPE_CHECKING:
    from edgeline.pipeline.stage import ArtifactView

REPORT_HTML = "report.html"
REPORT_MD = "report.md"
ASSETS_DIR = "report_files"  # the Markdown report's images
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


def new_figure(panels: int):
    """A matplotlib Figure of ``panels`` axes side by side, on an Agg canvas (no pyplot: no
    global state, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    figure = MplFigure(figsize=(4.2 * panels, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, panels, i + 1) for i in range(panels)]


def png_bytes(figure) -> bytes:
    """``figure`` laid out and encoded as PNG."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- reading an artifact -------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None where it is missing or unreadable (a report renders what
    it can)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; {} where it is missing, unreadable or not an object."""
    data = read_json(path)
    return data if isinstance(data, dict) else {}


def slug(text: str) -> str:
    """``text`` as a file name: what the Markdown report's image files are called."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "figure"


@dataclasses.dataclass
class StepArtifact:
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
        name = slug(f"{self.step}_{rel}")
        return Figure(name=name, png=path.read_bytes(), caption=caption)


@dataclasses.dataclass
class ExportedFile:
    """A file of the run made to be deployed (a ``.tflite``), with what its export measured;
    None where it was not measured. Artifact views find them (``exported_files``)."""

    step: str
    format: str  # the file's kind, as the run's log names it ("tflite")
    path: Path
    size_bytes: int
    quantize: str | None
    latency_threads_1_ms: float | None
    latency_threads_all_ms: float | None
    threads_all: int | None
    parity_passed: bool | None
    chosen: bool = False  # the file the artifact chose among several (a Frontier's)


def cut_table(table: Table) -> Table:
    """``table`` cut to its first MAX_TABLE_ROWS rows, with a note saying so."""
    if len(table.rows) <= MAX_TABLE_ROWS:
        return table
    note = f"first {MAX_TABLE_ROWS} of {len(table.rows)} rows; the rest are in the artifact"
    return Table(table.columns, table.rows[:MAX_TABLE_ROWS], note)


def render_generic(entry: StepArtifact) -> list[Block]:
    """An artifact of a type no view is registered for: its metrics and properties (its PNGs
    follow, from :func:`render_artifact`)."""
    blocks: list[Block] = []
    for mapping, kind in ((entry.artifact.metrics, "metric"),
                          (entry.artifact.properties, "property")):
        table = key_value_table(mapping, kind)
        if table:
            blocks.append(table)
    return blocks


def render_artifact(entry: StepArtifact, view: ArtifactView | None) -> list[Block]:
    """The blocks of one artifact: by its type's view, then any PNG it holds not shown yet."""
    try:
        blocks = [b for b in (view.render(entry) if view else render_generic(entry))
                  if b is not None]
    except Exception as err:  # a damaged file must not cost the rest of the report
        blocks = [Text(f"This artifact could not be rendered: {type(err).__name__}: {err}")]
        blocks.extend(render_generic(entry))
    shown = {b.name for b in blocks if isinstance(b, Figure)}
    for rel in entry.files(".png"):
        figure = entry.figure(rel, f"{entry.step}: {rel}")
        if figure and figure.name not in shown:
            blocks.append(figure)
            shown.add(figure.name)
    return blocks


def headline_figures(entries: Iterable[StepArtifact],
                     views: Mapping[str, ArtifactView]) -> list[tuple[str, str, str, Any]]:
    """(step, artifact type, figure, value) of each artifact's headline figures, by its view;
    a value of None is a figure its view expected and the artifact does not hold."""
    rows = []
    for entry in entries:
        view = views.get(entry.artifact.type)
        figures = view.headline(entry.artifact) if view else {}
        rows.extend((entry.step, entry.artifact.type, name, value)
                    for name, value in figures.items())
    return rows


def _headline_blocks(entries: Sequence[StepArtifact],
                     views: Mapping[str, ArtifactView]) -> list[Block]:
    rows = [(step, kind, name, format_value(value))
            for step, kind, name, value in headline_figures(entries, views)]
    if not rows:
        return []
    return [Heading(2, "Headline figures"),
            Table(("step", "artifact", "figure", "value"), rows,
                  note="The figures each artifact type puts first; – where the artifact "
                       "does not hold one.")]


# -- exported files --------------------------------------------------------------------------


def exported_files(entries: Iterable[StepArtifact],
                   views: Mapping[str, ArtifactView]) -> list[ExportedFile]:
    """Every deployable file the run's artifacts hold, as their views find them."""
    found = []
    for entry in entries:
        view = views.get(entry.artifact.type)
        if view is not None:
            found.extend(view.exported_files(entry))
    return found


def _exported_blocks(files: Sequence[ExportedFile]) -> list[Block]:
    if not files:
        return [Text("This run holds no exported file.")]
    rows = [(f.step + (" (chosen)" if f.chosen else ""), str(f.path), format_value(f.size_bytes),
             f"{f.size_bytes / 2**20:.2f}", f.quantize or "–",
             format_value(f.latency_threads_1_ms),
             format_value(f.latency_threads_all_ms) + (f" ({f.threads_all})"
                                                      if f.threads_all else ""),
             format_value(f.parity_passed))
            for f in files]
    columns = ("step", "file", "bytes", "MiB", "quantize", "latency ms (1 thread)",
               "latency ms (all threads)", "parity passed")
    note = "Latency: median LiteRT time of one batch-1 inference, as its export measured it; " \
           "– where the file was not measured."
    return [Table(columns, rows, note)]


# -- the whole report ------------------------------------------------------------------------


def _when(seconds: float | None) -> str:
    if not seconds:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


def step_artifacts(store: RunStore, info: Mapping[str, Any]) -> list[StepArtifact | None]:
    """One entry per execution: its artifact, or None where the step published nothing."""
    entries = []
    for execution in info["executions"]:
        artifact = None
        output = execution["output"]
        if output:
            directory = store.artifact_dir(execution["stage"], output)
            if (directory / ARTIFACT_FILE).is_file():
                artifact = Artifact.load(directory)
        entries.append(StepArtifact(execution["step"], execution["stage"], artifact,
                                    execution["cached"]) if artifact else None)
    return entries


def _overview_table(store: RunStore, info: Mapping[str, Any]) -> Table:
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
    return Table(("run", ""), list(overview.items()))


def _lineage_blocks(info: Mapping[str, Any],
                    entries: Sequence[StepArtifact | None]) -> list[Block]:
    steps_by_fingerprint = {ex["output"]: ex["step"] for ex in info["executions"] if ex["output"]}
    rows = []
    for execution, entry in zip(info["executions"], entries):
        if execution["cached"]:
            outcome = "cache hit"
        elif execution["status"] == "complete":
            outcome = f"built in {execution['seconds']:.1f} s"
        else:
            outcome = execution["status"]
        inputs = ", ".join(f"{steps_by_fingerprint.get(fp, name)} ({fp[:12]})"
                           for name, fp in execution["inputs"].items())
        rows.append((execution["step"], execution["stage"], outcome,
                     entry.artifact.type if entry else "–",
                     execution["output"][:12] if execution["output"] else "–",
                     inputs or "–", str(entry.directory) if entry else "–"))
    blocks: list[Block] = [
        Heading(2, "Steps and lineage"),
        Table(("step", "stage", "outcome", "artifact", "fingerprint", "inputs", "directory"),
              rows, note="Fingerprints are sha256 of the step's options, its inputs' "
                         "fingerprints, the seed and the edgeline version (first 12 hex "
                         "digits shown)."),
    ]
    blocks.extend(Text(f"{ex['step']} failed: {ex['error']}")
                  for ex in info["executions"] if ex["error"])
    return blocks


def _artifact_blocks(entry: StepArtifact, view: ArtifactView | None) -> list[Block]:
    return [
        Heading(2, f"{entry.step} ({entry.stage}): {entry.artifact.type}"),
        Text(f"{'Cache hit' if entry.cached else 'Built'}; produced by "
             f"{entry.artifact.producer}; fingerprint {entry.artifact.fingerprint}; "
             f"directory {entry.directory}"),
        *render_artifact(entry, view),
    ]


def build_report(store: RunStore, run_id: str,
                 views: Mapping[str, ArtifactView] | None = None) -> tuple[str, list[Block]]:
    """(title, blocks) of the report of ``run_id``: the overview, the headline figures, the
    steps and lineage, each artifact through the view registered for its type (``views``:
    artifact type -> view; a type without one gets a generic rendering), the exported files
    and the resolved config."""
    views = views or {}
    info = store.show_run(run_id)
    entries = step_artifacts(store, info)
    published = [e for e in entries if e is not None]
    title = f"edgeline run {run_id}: {info['pipeline']}"
    blocks: list[Block] = [Heading(1, title), _overview_table(store, info)]
    blocks.extend(_headline_blocks(published, views))
    blocks.extend(_lineage_blocks(info, entries))
    for entry in published:
        blocks.extend(_artifact_blocks(entry, views.get(entry.artifact.type)))
    blocks.append(Heading(2, "Exported files"))
    blocks.extend(_exported_blocks(exported_files(published, views)))
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
    runs_dir: str | Path | RunStore, run_id: str, output_dir: str | Path | None = None,
    views: Mapping[str, ArtifactView] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` of ``run_id`` into ``output_dir`` (default: the
    run's folder, ``<runs_dir>/runs/<run_id>``); return their paths.

    ``runs_dir`` is a runs directory or an open :class:`RunStore` (the runner's own);
    ``run_id`` a run id, a unique prefix of one, or ``latest``; ``views`` the artifact views
    by type (``StageRegistry.views()``).
    """
    if not isinstance(runs_dir, RunStore) and not Path(runs_dir, "lineage.sqlite").is_file():
        raise UserError(f"no runs directory at {str(runs_dir)!r} (no lineage.sqlite in it)")
    store = runs_dir if isinstance(runs_dir, RunStore) else RunStore(runs_dir, read_only=True)
    try:
        run_id = store.resolve_run(run_id)
        title, blocks = build_report(store, run_id, views)
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
