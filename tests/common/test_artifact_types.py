"""The typed artifact views: each owns its file names (defined there and nowhere else), reads
its files, names its headline figures, and renders itself in the run report."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from PIL import Image

from edgeline.common import artifact_types
from edgeline.common.artifact_types import (
    examples,
    frontier,
    metrics,
    model,
    policy,
    tflite_model,
)
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.report import Figure, StepArtifact, Table, Text

REPO = Path(__file__).resolve().parents[2]
HISTORY = {"epoch": [0, 1, 2], "loss": [2.1, 1.4, 0.9], "val_loss": [2.2, 1.6, 1.1],
           "top1": [0.2, 0.5, 0.7], "val_top1": [0.25, 0.45, 0.625],
           "learning_rate": [0.01, 0.005, 0.001], "phase": ["train"] * 3}
VIEW_MODULES = (examples, frontier, metrics, model, policy, tflite_model)


def _file_names(module) -> dict[str, str]:
    """The module's file-name constants: upper-case names bound to a string with a suffix or
    naming a folder (``*_FILE``, ``*_DIR``, ``*_PLOT``)."""
    return {name: value for name, value in vars(module).items()
            if re.fullmatch(r"[A-Z_]+_(FILE|DIR|PLOT)", name) and isinstance(value, str)}


def _entry(tmp_path, artifact_type, *, properties=None, metrics_=None, files=()):
    artifact = Artifact(uri=str(tmp_path), type=artifact_type, producer="step:stage",
                        fingerprint="f" * 64, inputs={}, properties=properties or {},
                        metrics=metrics_ or {}, files={rel: {} for rel in files})
    return StepArtifact("step", artifact_type.lower(), artifact, cached=False)


def test_one_view_per_artifact_type():
    assert [view.type_name for view in artifact_types.VIEWS] == [
        "Examples", "Model", "Metrics", "Frontier", "Policy", "TFLiteModel"]


def test_no_stage_defines_a_file_name_a_view_owns():
    """The stages import their file names from the views; the pipeline names none of them."""
    owned = {value for module in VIEW_MODULES for value in _file_names(module).values()}
    owned -= {"plots", "tensorboard"}  # folder names too common to search for as text
    assert {"export.json", "frontier.json", "history.json", "metrics.json", "model.tflite",
            "policy.tflite", "labels.txt", "confusion_matrix.png"} <= owned
    definition = re.compile(r'^[A-Z_]+ = "([^"]+)"', re.M)
    for path in sorted((REPO / "components").rglob("*.py")):
        defined = set(definition.findall(path.read_text(encoding="utf-8"))) & owned
        assert not defined, f"{path.relative_to(REPO)} defines {sorted(defined)}"
    for path in sorted((REPO / "pipeline").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        named = {name for name in owned if name in text}
        assert not named, f"{path.relative_to(REPO)} names {sorted(named)}"


def test_the_stages_use_the_views_names():
    from edgeline.components.compress import frontier as compress_frontier
    from edgeline.components.evaluate import core as evaluate_core
    from edgeline.components.export import core as export_core

    assert export_core.TFLITE_FILE is tflite_model.TFLITE_FILE == "model.tflite"
    assert export_core.REPORT_FILE is tflite_model.REPORT_FILE == "export.json"
    assert compress_frontier.REPORT_FILE is frontier.REPORT_FILE == "frontier.json"
    assert evaluate_core.METRICS_FILE is metrics.METRICS_FILE == "metrics.json"
    assert evaluate_core.POLICY_DESCRIPTION_FILE is policy.DESCRIPTION_FILE == "policy.json"
    assert model.HISTORY_FILE == "history.json" and model.LABELS_FILE == "labels.txt"


def test_readers_return_the_json_or_nothing(tmp_path):
    assert frontier.read(tmp_path) == {} and metrics.read(tmp_path) == {}
    assert tflite_model.export_report(tmp_path) == {} and policy.read_history(tmp_path) == {}
    (tmp_path / frontier.REPORT_FILE).write_text(json.dumps({"chosen": "ptq_int8"}))
    (tmp_path / tflite_model.REPORT_FILE).write_text(json.dumps({"size_bytes": 3}))
    (tmp_path / metrics.METRICS_FILE).write_text("{not json")
    assert frontier.read(tmp_path) == {"chosen": "ptq_int8"}
    assert tflite_model.export_report(tmp_path) == {"size_bytes": 3}
    assert metrics.read(tmp_path) == {}  # a damaged file: the report renders what it can


def test_headlines_name_what_each_task_puts_first(tmp_path):
    def headline(view, **artifact):
        return view.headline(_entry(tmp_path, view.type_name, **artifact).artifact)

    assert headline(artifact_types.Metrics(), properties={"task": "detection"},
                    metrics_={"AP": 0.31, "AP50": 0.52, "AR100": 0.4}) == {
        "mAP": 0.31, "AP50": 0.52}
    assert headline(artifact_types.Metrics(), properties={"task": "policy"},
                    metrics_={"mean_return": 200.0, "episodes": 10}) == {
        "mean return": 200.0, "episodes": 10}
    # Train publishes the kept epoch's val_top1, compress the evaluate stage's top1.
    assert headline(artifact_types.Model(), properties={"task": "classification"},
                    metrics_={"val_top1": 0.6}) == {"top-1": 0.6}
    assert headline(artifact_types.Model(), properties={"task": "classification"},
                    metrics_={"top1": 0.7, "kernel_sparsity": 0.5}) == {
        "top-1": 0.7, "kernel sparsity": 0.5}
    assert headline(artifact_types.Model(), properties={"task": "detection"},
                    metrics_={"box_map": 0.2}) == {"box mAP": 0.2}
    # A figure the artifact should hold and does not is None (the report shows "–").
    assert headline(artifact_types.TFLiteModel(), metrics_={"size_bytes": 10}) == {
        "bytes": 10, "latency ms (1 thread)": None, "parity passed": None}


def test_tflite_files_read_the_export_report_beside_each(tmp_path):
    recipe = tmp_path / "recipes" / "int8"
    recipe.mkdir(parents=True)
    (recipe / tflite_model.TFLITE_FILE).write_bytes(b"\0" * 100)
    (recipe / tflite_model.REPORT_FILE).write_text(json.dumps({
        "quantize": "int8", "parity": {"passed": False},
        "latency": {"threads_1_ms": 0.5, "threads_all_ms": 0.25, "threads_all": 2}}))
    rel = "recipes/int8/model.tflite"
    entry = _entry(tmp_path, "Frontier", properties={"chosen_tflite": rel}, files=[rel])
    (found,) = artifact_types.Frontier().exported_files(entry)
    assert (found.format, found.path, found.size_bytes, found.quantize) == (
        "tflite", tmp_path / rel, 100, "int8")
    assert (found.latency_threads_1_ms, found.latency_threads_all_ms, found.threads_all) == (
        0.5, 0.25, 2)
    assert found.parity_passed is False and found.chosen


def test_model_renders_its_history_as_curves_and_a_table(tmp_path):
    (tmp_path / model.HISTORY_FILE).write_text(json.dumps(HISTORY))
    entry = _entry(tmp_path, "Model", metrics_={"val_top1": 0.625})
    blocks = artifact_types.Model().render(entry)
    (figure,) = [b for b in blocks if isinstance(b, Figure)]
    assert figure.name == "step_training_curves.png"
    epochs = next(b for b in blocks if isinstance(b, Table) and b.columns[0] == "epoch")
    assert [row[0] for row in epochs.rows] == ["1", "2", "3"]
    assert "val_top1" in epochs.columns and "phase" not in epochs.columns


def test_frontier_renders_its_table_and_choice(tmp_path):
    (tmp_path / frontier.REPORT_FILE).write_text(json.dumps({
        "metric": "top-1", "accuracy_budget_points": 1.0, "chosen": "ptq_int8",
        "rows": [{"recipe": "ptq_int8", "quantize": "int8", "accuracy": 0.8047,
                  "within_budget": True, "chosen": True}]}))
    blocks = artifact_types.Frontier().render(_entry(tmp_path, "Frontier"))
    table = blocks[0]
    assert table.columns[3] == "top-1 %" and table.rows[0][3] == "80.47"
    assert table.rows[0][-1] == "chosen"
    assert isinstance(blocks[1], Text) and blocks[1].text.startswith("Chosen: ptq_int8")


def test_training_curves_plot_every_numeric_column():
    png = model.training_curves_png(HISTORY, "title")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 3 * image.height  # three panels side by side
    assert model.training_curves_png({"epoch": [0], "phase": ["train"]}, "title") is None


def test_learning_curve_plots_the_return_and_the_loss_beside_it():
    curve = [[0, 0, 9.5], [1000, 40, 57.25]]
    training = [{"env_steps": 500, "loss": 0.5, "train_average_return": 20.0}]
    png = policy.learning_curve_png(curve, training, 180.0, "title")
    image = Image.open(io.BytesIO(png))
    assert image.width > 2 * image.height  # two panels: the return, the loss
    assert policy.learning_curve_png([], training, None, "title") is None
