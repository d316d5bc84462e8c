"""The run report: a real run of small stages that write artifacts in the on-disk formats the
real stages write (history.json, metrics.json and its plots, frontier.json, a Policy's learning
curve, export.json beside a .tflite), through the real runner, store and lineage database, and
rendered through the artifact views of edgeline.common.artifact_types, registered as the CLI
registers them."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re

import pytest
from PIL import Image

from edgeline import cli
from edgeline.common import artifact_types
from edgeline.pipeline import report
from edgeline.pipeline.config import load_pipeline_config
from edgeline.pipeline.errors import StageFailed, UserError
from edgeline.pipeline.runner import run_pipeline
from edgeline.pipeline.stage import Stage, StageRegistry, StageResult

HISTORY = {"epoch": [0, 1, 2], "loss": [2.1, 1.4, 0.9], "val_loss": [2.2, 1.6, 1.1],
           "accuracy": [0.2, 0.5, 0.7], "val_accuracy": [0.25, 0.45, 0.625],
           "learning_rate": [0.01, 0.005, 0.001], "phase": ["train"] * 3}
LEARNING_CURVE = [[0, 0, 9.5], [1000, 40, 57.25], [2000, 61, 187.5]]
FRONTIER_ROWS = [
    {"recipe": "original", "steps": "", "quantize": "none", "accuracy": 0.8125,
     "delta_points": 0.0, "tflite_bytes": 40960, "gzip_bytes": 37000, "latency_ms": 0.731,
     "kernel_sparsity": 0.0, "within_budget": True, "chosen": False,
     "tflite": "recipes/original/tflite/model.tflite"},
    {"recipe": "ptq_int8", "steps": "", "quantize": "int8", "accuracy": 0.8047,
     "delta_points": -0.78, "tflite_bytes": 12288, "gzip_bytes": 9100, "latency_ms": 0.402,
     "kernel_sparsity": 0.0, "within_budget": True, "chosen": True,
     "tflite": "recipes/ptq_int8/tflite/model.tflite"},
]


@dataclasses.dataclass(frozen=True)
class NoOptions:
    fail: bool = False


def _png(path, colour, size=(48, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _tflite(directory, size_bytes, quantize, latency_ms):
    # The report only reads a .tflite's size; its measured figures come from export.json.
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.tflite").write_bytes(b"\0" * size_bytes)
    _json(directory / "export.json", {
        "size_bytes": size_bytes, "quantize": quantize, "task": "classification",
        "parity": {"passed": True, "top1_drop": 0.0},
        "latency": {"runtime": "ai_edge_litert", "threads_1_ms": latency_ms,
                    "threads_all_ms": latency_ms / 2, "threads_all": 2}})


def _examples(context):
    return StageResult(properties={"task": "classification", "num_classes": 4, "splits": {
        "train": {"seen": 41, "written": 40, "fixed": 2, "rejected": 1, "shards": 2},
        "validation": {"seen": 12, "written": 12, "fixed": 0, "rejected": 0, "shards": 1}}},
        metrics={"seconds": 1.5})


def _model(context):
    _json(context.output_dir / "history.json", HISTORY)
    return StageResult(properties={"task": "classification", "model": "cnn"},
                       metrics={"val_top1": 0.625, "kept_epoch": 3})


def _metrics(context):
    _json(context.output_dir / "metrics.json", {
        "top1": 0.8125, "top5": 1.0, "per_class_accuracy": {"circle": 0.75, "square": None}})
    _png(context.output_dir / "confusion_matrix.png", "navy")
    _png(context.output_dir / "plots" / "pr_all.png", "teal")
    return StageResult(properties={"task": "classification", "split": "validation"},
                       metrics={"top1": 0.8125, "top5": 1.0, "num_images": 16})


def _frontier(context):
    for row, latency in zip(FRONTIER_ROWS, (0.731, 0.402)):
        _tflite(context.output_dir / "recipes" / row["recipe"] / "tflite", row["tflite_bytes"],
                row["quantize"], latency)
    _json(context.output_dir / "frontier.json", {
        "metric": "top-1", "accuracy_budget_points": 1.0, "chosen": "ptq_int8",
        "rows": FRONTIER_ROWS})
    for name in ("accuracy_vs_size.png", "accuracy_vs_latency.png"):
        _png(context.output_dir / name, "orange")
    return StageResult(properties={"chosen": "ptq_int8",
                                   "chosen_tflite": FRONTIER_ROWS[1]["tflite"],
                                   "plots": ["accuracy_vs_size.png", "accuracy_vs_latency.png"]},
                       metrics={"chosen_accuracy": 0.8047, "chosen_gzip_bytes": 9100})


def _policy(context):
    _json(context.output_dir / "history.json", {
        "algorithm": "dqn", "environment": "CartPole-v0",
        "evaluations": [{"env_steps": s, "episodes": e, "mean_return": r}
                        for s, e, r in LEARNING_CURVE],
        "training": [{"env_steps": 500 * i, "loss": 1.0 / i, "train_average_return": 10.0 * i}
                     for i in range(1, 5)],
        "target": {"target_return": 180.0, "env_steps": 2000}})
    (context.output_dir / "policy.tflite").write_bytes(b"\0" * 2048)
    return StageResult(properties={"algorithm": "dqn", "learning_curve": LEARNING_CURVE},
                       metrics={"best_mean_return": 187.5, "env_steps": 2000,
                                "best_evaluation": {"env_steps": 2000}})


def _export(context):
    _tflite(context.output_dir, 20480, "float16", 1.234)
    return StageResult(properties={"quantize": "float16"},
                       metrics={"size_bytes": 20480, "parity_passed": True,
                                "latency_threads_1_ms": 1.234})


def _numbers(context):
    if context.options.fail:
        raise RuntimeError("the stage broke on purpose")
    _png(context.output_dir / "deep" / "extra.png", "purple")
    return StageResult(properties={"rows": 3}, metrics={"total": 6})


STAGES = {"examples": ("Examples", _examples), "fit": ("Model", _model),
          "score": ("Metrics", _metrics), "frontier": ("Frontier", _frontier),
          "policy": ("Policy", _policy), "export": ("TFLiteModel", _export),
          "numbers": ("Numbers", _numbers)}
# Figures: training curves, confusion matrix, PR curve, the two frontier plots, the learning
# curve, and the unknown artifact's PNG.
EXPECTED_FIGURES = 7


def make_registry():
    """The toy stages, and the artifact views as edgeline.cli.stage_registry() has them."""
    registry = StageRegistry()
    for name, (artifact_type, function) in STAGES.items():
        registry.register(Stage(name, NoOptions, artifact_type, function))
    for view in artifact_types.VIEWS:
        registry.register_view(view.type_name, view)
    return registry


@pytest.fixture(scope="module")
def registry():
    return make_registry()


def _config(registry, **numbers_options):
    steps = {
        "data": {"stage": "examples"},
        "classifier": {"stage": "fit", "inputs": ["data"]},
        "evaluate_classifier": {"stage": "score", "inputs": ["data", "classifier"]},
        "compress": {"stage": "frontier", "inputs": ["data", "classifier"]},
        "cartpole": {"stage": "policy"},
        "tflite": {"stage": "export", "inputs": ["classifier"]},
        "extra": {"stage": "numbers", **numbers_options},
    }
    data = {"name": "toy", "seed": 3, "steps": steps}
    return load_pipeline_config(None, registry.options_types(), [], data=data)


def _images(html_text):
    return re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)


@pytest.fixture(scope="module")
def built(tmp_path_factory, registry):
    messages = []
    outcome = run_pipeline(_config(registry), registry,
                           runs_dir=tmp_path_factory.mktemp("report") / "runs",
                           log=messages.append)
    return outcome, messages


def test_every_run_writes_its_report_and_says_where(built):
    outcome, messages = built
    run_dir = outcome.runs_dir / "runs" / outcome.run_id
    assert outcome.report == run_dir / "report.html"
    assert (run_dir / "report.html").is_file() and (run_dir / "report.md").is_file()
    assert f"report: {run_dir / 'report.html'} (Markdown: report.md beside it)" in messages
    tflite_lines = [m for m in messages if m.startswith("tflite: ")]
    # The export's file, both frontier recipes' files and the policy's.
    assert len(tflite_lines) == 4
    export_dir = outcome.artifact("tflite").path
    assert (f"tflite: {export_dir / 'model.tflite'} (20,480 bytes, 1.234 ms (1 thread); "
            "step tflite)") in tflite_lines


def test_html_holds_every_section_number_and_figure(built):
    outcome, _ = built
    text = outcome.report.read_text()
    for heading in ("Steps and lineage", "classifier (fit): Model", "Training curves",
                    "evaluate_classifier (score): Metrics", "Per-class accuracy",
                    "compress (frontier): Frontier", "cartpole (policy): Policy",
                    "Learning curve", "tflite (export): TFLiteModel", "extra (numbers): Numbers",
                    "Exported files", "Resolved config"):
        assert f">{heading}</h" in text, heading
    # Metric numbers from the artifacts, as the report formats them.
    for cell in ("0.8125", "0.625", "187.5", "81.25", "80.47", "-0.78", "40,960", "9,100",
                 "1.234", "0.402", "20,480"):
        assert f">{cell}</td>" in text, cell
    assert ">train</td><td class=\"number\">41</td><td class=\"number\">40</td>" in text
    assert "Chosen: ptq_int8" in text
    chosen = outcome.artifact("compress").path / "recipes" / "ptq_int8" / "tflite" / "model.tflite"
    assert f'<td>compress (chosen)</td><td class="path">{chosen}</td>' in text
    images = _images(text)
    assert len(images) == EXPECTED_FIGURES
    assert f'data-figures="{EXPECTED_FIGURES}"' in text
    for encoded in images:
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        image.load()
        assert image.width > 0 and image.height > 0
    # The evaluate stage's plot is embedded byte for byte.
    matrix = outcome.artifact("evaluate_classifier").path / "confusion_matrix.png"
    assert base64.b64encode(matrix.read_bytes()).decode() in images
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_lineage_names_producer_inputs_fingerprint_and_cache(built, registry):
    outcome, _ = built
    text = outcome.report.read_text()
    classifier = outcome.artifact("classifier")
    data = outcome.artifact("data")
    assert classifier.fingerprint in text
    assert f"data ({data.fingerprint[:12]})" in text
    assert "built in" in text and "cache hit" not in text
    second = run_pipeline(_config(registry), registry, runs_dir=outcome.runs_dir,
                          log=lambda message: None)
    again = second.report.read_text()
    assert again.count(">cache hit</td>") == len(STAGES)
    assert f"Cache hit; produced by classifier:fit; fingerprint {classifier.fingerprint}" in again


def test_headline_figures_of_every_artifact_are_found(built, registry):
    """Each view's headline figures, read from what the stages wrote: a key a view expects and
    the artifact does not hold would read "–" here."""
    outcome, _ = built
    text = outcome.report.read_text()
    assert ">Headline figures</h2>" in text
    entries = [report.StepArtifact(s.step, s.stage, s.artifact, s.cached)
               for s in outcome.steps if s.artifact is not None]
    figures = report.headline_figures(entries, registry.views())
    by_step = {}
    for step, _, name, value in figures:
        by_step.setdefault(step, {})[name] = value
    assert by_step == {
        "data": {"train examples": 40, "validation examples": 12, "classes": 4},
        "classifier": {"top-1": 0.625},
        "evaluate_classifier": {"top-1": 0.8125, "top-5": 1.0},
        "compress": {"chosen": "ptq_int8", "chosen accuracy": 0.8047,
                     "chosen gzip bytes": 9100},
        "cartpole": {"best mean return": 187.5, "env steps": 2000},
        "tflite": {"bytes": 20480, "latency ms (1 thread)": 1.234, "parity passed": True},
    }  # the Numbers artifact has no view: no headline, and a generic rendering
    table = text.split(">Headline figures</h2>")[1].split("</table>")[0]
    assert "–" not in table


def test_an_unregistered_type_renders_generically_and_a_registry_refuses_twins(built):
    outcome, _ = built
    text = outcome.report.read_text()
    extra = text.split(">extra (numbers): Numbers</h2>")[1].split("<h2")[0]
    assert '<td>total</td><td class="number">6</td>' in extra
    assert '<td>rows</td><td class="number">3</td>' in extra
    registry = StageRegistry()
    registry.register_view("Model", artifact_types.Model())
    with pytest.raises(ValueError, match="'Model' artifacts is already registered"):
        registry.register_view("Model", artifact_types.Model())


def test_markdown_has_the_same_content_with_its_images_beside_it(built):
    outcome, _ = built
    run_dir = outcome.report.parent
    markdown = (run_dir / "report.md").read_text()
    for heading in ("## Steps and lineage", "### Training curves", "## Exported files",
                    "## Resolved config", "## compress (frontier): Frontier"):
        assert f"\n{heading}\n" in markdown, heading
    links = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+)\)", markdown)
    assert len(links) == EXPECTED_FIGURES == len(set(links))
    for link in links:
        assert (run_dir / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ptq_int8 | - | int8 | 80.47 | -0.78 | 12,288 | 9,100 | 0.402 | 0 | chosen |" \
        in markdown
    assert "```yaml\nname: toy\n" in markdown


def test_a_failed_run_still_gets_a_report_naming_the_failure(tmp_path, registry):
    with pytest.raises(StageFailed):
        run_pipeline(_config(registry, fail=True), registry, runs_dir=tmp_path,
                     log=lambda message: None)
    (run_dir,) = (tmp_path / "runs").iterdir()
    text = (run_dir / "report.html").read_text()
    assert ">failed</td>" in text
    assert "extra failed: RuntimeError: the stage broke on purpose" in text
    assert ">classifier (fit): Model</h2>" in text  # what was built before is there


def test_cli_rerenders_a_report_elsewhere(built, tmp_path, capsys):
    outcome, _ = built
    output = tmp_path / "elsewhere"
    code = cli.main(["runs", "report", outcome.run_id[:-2], "--runs-dir",
                     str(outcome.runs_dir), "--output", str(output)])
    assert code == 0
    assert capsys.readouterr().out.split() == [str(output / "report.html"),
                                               str(output / "report.md")]
    assert len(_images((output / "report.html").read_text())) == EXPECTED_FIGURES
    assert cli.main(["runs", "report", "nosuchrun", "--runs-dir", str(outcome.runs_dir)]) == 2
    assert "run 'nosuchrun' not found" in capsys.readouterr().err


def test_write_report_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(UserError, match="no runs directory"):
        report.write_report(tmp_path / "nothing", "latest")
    assert not (tmp_path / "nothing").exists()


def test_format_value():
    assert [report.format_value(v) for v in (0.8125, 12288, 1234.56, None, True, [1, 2])] == [
        "0.8125", "12,288", "1,234.6", "–", "yes", "1, 2"]
