"""The run report of a real `edgeline run` (ingest -> train a 'cnn' -> evaluate -> export on
a tiny generated ImageNet-layout set), and the acceptance check: the report renders in
headless Chromium with all its plots decoded.

The report's inline script records, once the page has loaded, each figure's naturalWidth and
how many figures decoded; Chromium's --dump-dom shows the DOM after it ran. Without a
Chromium on the machine the Chromium tests skip and say so.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import edgeline  # noqa: F401
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.report import format_value

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)
pytestmark = pytest.mark.slow  # a real run, and a browser started per test
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason=f"no Chromium found on PATH (looked for {', '.join(CHROMIUM_NAMES)})")

TINY_CONFIG = """\
# The report test's pipeline: a tiny run of every classification stage.
name: tiny_report
seed: 5
deterministic: true
runs_dir: {runs}
steps:
  images:
    stage: ingest
    format: imagenet
    source: {source}
    val_labels: {source}/val_labels.csv
    train_shards: 1
    val_shards: 1
    workers: 1
  classifier:
    stage: train
    inputs: [images]
    model: cnn
    model_options: {{stage_widths: [8, 16]}}
    epochs: 2
    batch_size: 16
    data: {{input_size: [32, 32], crop_fraction: 1.0, augmentation: {{random_resized_crop: false}}}}
    optimizer: {{name: adam, learning_rate: 0.01}}
    tensorboard: false
    progress: "off"
  evaluate_classifier:
    stage: evaluate
    inputs: [images, classifier]
  tflite:
    stage: export
    inputs: [classifier, images]
    parity_size: 16
    latency_warmup: 1
    latency_runs: 3
"""


def render_dom(html_path: Path, profile_dir: Path) -> str:
    """The report's DOM after its load handlers ran, as headless Chromium sees it."""
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile_dir}", "--virtual-time-budget=10000",
        "--dump-dom", html_path.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def assert_every_figure_decoded(dom: str, expected_figures: int) -> None:
    check = re.search(r'<p[^>]*id="figure-check"[^>]*>([^<]*)</p>', dom)
    assert check, "the report's figure check did not run"
    assert f'data-figures="{expected_figures}"' in check.group(0)
    assert f'data-decoded="{expected_figures}"' in check.group(0)
    assert check.group(1) == f"{expected_figures} of {expected_figures} figures rendered."
    widths = [int(w) for w in re.findall(r'<img [^>]*data-natural-width="(\d+)"', dom)]
    assert len(widths) == expected_figures and min(widths) > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, repo_root):
    """`edgeline run` of the tiny config, through the CLI as a user runs it."""
    from edgeline.components.ingest.demo_data import write_classification_set

    root = tmp_path_factory.mktemp("tiny_report")
    source = write_classification_set(root / "source", train_per_class=8, val_per_class=4,
                                      image_size=32, plant_faults=False)
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(runs=root / "runs", source=source))
    result = subprocess.run([sys.executable, "-m", "edgeline", "run", str(config)],
                            capture_output=True, text=True, cwd=repo_root, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (root / "runs" / "runs").iterdir()
    return run_dir, result


def test_a_real_run_reports_its_curves_metrics_plots_and_tflite(tiny_run):
    run_dir, result = tiny_run
    text = (run_dir / "report.html").read_text()
    for heading in ("Steps and lineage", "images (ingest): Examples",
                    "classifier (train): Model", "Training curves",
                    "evaluate_classifier (evaluate): Metrics", "Per-class accuracy",
                    "tflite (export): TFLiteModel", "Exported files", "Resolved config"):
        assert f">{html.escape(heading)}</h" in text, heading
    shown = json.loads(subprocess.run(
        [sys.executable, "-m", "edgeline", "runs", "show", "--json", "--runs-dir",
         str(run_dir.parent.parent)], capture_output=True, text=True, check=True).stdout)
    artifacts = {a["step"]: Artifact.load(a["path"]) for a in shown["artifacts"]}
    evaluation = artifacts["evaluate_classifier"]
    for key in ("top1", "top5", "num_images"):
        assert f"<td>{key}</td><td class=\"number\">{format_value(evaluation.metrics[key])}" \
               "</td>" in text, key
    for step, artifact in artifacts.items():
        assert artifact.fingerprint in text, step
    # Two figures: the training curves from history.json, the evaluate stage's confusion matrix.
    assert text.count('<img src="data:image/png;base64,') == 2
    assert (evaluation.path / "confusion_matrix.png").is_file()
    # The closing summary says where the report and the .tflite are.
    tflite = artifacts["tflite"].path / "model.tflite"
    assert f"report: {run_dir / 'report.html'} (Markdown: report.md beside it)" in result.stdout
    assert f"tflite: {tflite} ({tflite.stat().st_size:,} bytes, " in result.stdout
    latency = json.loads((tflite.parent / "export.json").read_text())["latency"]
    assert f">{format_value(latency['threads_1_ms'])}</td>" in text
    assert f">{tflite}</td>" in text
    markdown = (run_dir / "report.md").read_text()
    assert "## evaluate_classifier (evaluate): Metrics" in markdown
    assert len(list((run_dir / "report_files").glob("*.png"))) == 2


def test_a_real_run_has_every_headline_figure(tiny_run):
    """Each artifact view's headline figures, read from what the real stages published: a
    stage that renames a key a view reads fails here (the report would show "–")."""
    run_dir, _ = tiny_run
    text = (run_dir / "report.html").read_text()
    table = text.split(">Headline figures</h2>")[1].split("</table>")[0]
    cell = r"<td[^>]*>([^<]*)</td>"
    rows = re.findall("<tr>" + cell * 4, table)
    figures = {(step, name): value for step, _, name, value in rows}
    assert set(figures) >= {("images", "train examples"), ("images", "validation examples"),
                            ("classifier", "top-1"), ("evaluate_classifier", "top-1"),
                            ("evaluate_classifier", "top-5"), ("tflite", "bytes"),
                            ("tflite", "latency ms (1 thread)"), ("tflite", "parity passed")}
    assert "–" not in figures.values(), figures


@needs_chromium
def test_the_real_run_report_renders_in_headless_chromium(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    dom = render_dom(run_dir / "report.html", tmp_path / "profile")
    assert_every_figure_decoded(dom, expected_figures=2)
    assert ">classifier (train): Model</h2>" in dom and ">Exported files</h2>" in dom


@needs_chromium
def test_every_artifact_kind_renders_in_headless_chromium(tmp_path, monkeypatch):
    """Frontier plots, a Policy's learning curve, PR curves and an unknown type's PNG too:
    the run of tests/pipeline/test_report.py's stages, which write those artifacts."""
    path = Path(__file__).parent / "pipeline" / "test_report.py"
    spec = importlib.util.spec_from_file_location("report_stages", path)
    stages = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, stages)  # dataclasses look their module up
    spec.loader.exec_module(stages)
    from edgeline.pipeline.runner import run_pipeline

    registry = stages.make_registry()
    outcome = run_pipeline(stages._config(registry), registry, runs_dir=tmp_path / "runs",
                           log=lambda message: None)
    dom = render_dom(outcome.report, tmp_path / "profile")
    assert_every_figure_decoded(dom, expected_figures=stages.EXPECTED_FIGURES)
    for heading in ("compress (frontier): Frontier", "cartpole (policy): Policy",
                    "Learning curve", "extra (numbers): Numbers"):
        assert f">{heading}</h" in dom, heading
