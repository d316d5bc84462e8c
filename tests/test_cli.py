"""The CLI's contract: --help everywhere, exit code 2 and one line for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _edgeline(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_lists_the_commands():
    result = _edgeline("--help")
    assert result.returncode == 0
    for command in ("run", "runs", "models"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "body, expected",
    [
        ("name: x\nsteps:\n  a:\n    stage: nope\n", "a.stage: unknown stage 'nope'"),
        ("name: x\nbogus: 1\nsteps: {}\n", "bogus: unknown key (received 1)"),
        ("name: x\nsteps: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_exit_2_and_one_line(tmp_path, body, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    result = _edgeline("run", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_missing_config_and_usage_errors_are_exit_2(tmp_path):
    result = _edgeline("run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "config file does not exist" in result.stderr
    result = _edgeline("run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    result = _edgeline("runs", "show", "--runs-dir", str(tmp_path / "none"))
    assert result.returncode == 2 and "no runs directory" in result.stderr


def _lineage(runs_dir, query):
    import sqlite3

    with sqlite3.connect(runs_dir / "lineage.sqlite") as db:
        return db.execute(query).fetchall()


def _published_then_cached(argv, output, runs_dir, artifact_type, capsys):
    """``argv`` publishes ``artifact_type`` in ``runs_dir`` with a lineage row and places it at
    ``output``; the same command again (as it is: the output already holds this very artifact) is
    a cache hit that does no work; the artifact and its files are the same."""
    import json

    from edgeline.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    artifact = json.loads((output / "artifact.json").read_text())
    assert artifact["type"] == artifact_type
    published = runs_dir / "artifacts"
    [copy] = [p for p in published.glob("*/*") if p.name == artifact["fingerprint"][:16]]
    assert json.loads((copy / "artifact.json").read_text()) == artifact
    stage = copy.parent.name
    rows = _lineage(runs_dir, f"SELECT status, cached FROM executions WHERE stage='{stage}'")
    assert rows == [("complete", 0)]
    assert _lineage(runs_dir, "SELECT type FROM artifacts WHERE fingerprint="
                    f"'{artifact['fingerprint']}'") == [(artifact_type,)]
    before = {p.name: p.stat().st_ino for p in output.rglob("*") if p.is_file()}

    assert main(argv) == 0
    assert "cached" in capsys.readouterr().out
    rows = _lineage(runs_dir, f"SELECT status, cached FROM executions WHERE stage='{stage}'")
    assert rows == [("complete", 0), ("cached", 1)]
    assert json.loads((output / "artifact.json").read_text()) == artifact
    assert {p.name: p.stat().st_ino for p in output.rglob("*") if p.is_file()} == before
    assert not list(output.parent.glob(".*.tmp-*"))
    return artifact


@pytest.mark.slow
def test_every_single_stage_command_publishes_like_a_pipeline_step(tmp_path, capsys):
    """Acceptance 3: ingest, train, evaluate, compress and export, each run alone, publish
    their artifact in a runs directory (artifact.json and a lineage row), as a step of
    'edgeline run' does, place it at --output, and a rerun is a cache hit."""
    from edgeline.components.ingest.demo_data import write_classification_set

    source = write_classification_set(tmp_path / "source", seed=0, train_per_class=12,
                                      val_per_class=6, plant_faults=False)
    runs = tmp_path / ".edgeline-runs"  # the default: beside --output
    examples = tmp_path / "examples"
    _published_then_cached(
        ["ingest", "imagenet", str(source), "--val-labels", str(source / "val_labels.csv"),
         "--output", str(examples), "--train-shards", "1", "--val-shards", "1",
         "--workers", "1", "--no-progress"], examples, runs, "Examples", capsys)

    config = tmp_path / "train.yaml"
    config.write_text("model: cnn\nepochs: 1\nsteps_per_epoch: 2\nbatch_size: 8\n"
                      "data: {input_size: [40, 40], shuffle_buffer: 64}\nprogress: 'off'\n"
                      "tensorboard: false\n")
    model = tmp_path / "model"
    trained = _published_then_cached(
        ["train", str(config), "--examples", str(examples), "--output", str(model),
         "--seed", "1", "--deterministic"], model, runs, "Model", capsys)
    ingested = (examples / "artifact.json").read_text()
    assert trained["inputs"] == {"examples": __import__("json").loads(ingested)["fingerprint"]}

    _published_then_cached(
        ["evaluate", str(model), str(examples), "--output", str(tmp_path / "metrics"),
         "--no-plots"], tmp_path / "metrics", runs, "Metrics", capsys)

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("steps:\n  - {method: bn_fold}\n")
    _published_then_cached(
        ["compress", str(recipe), "--model", str(model), "--examples", str(examples),
         "--output", str(tmp_path / "small")], tmp_path / "small", runs, "Model", capsys)

    _published_then_cached(
        ["export", "tflite", str(model), "--examples", str(examples), "--parity-size", "8",
         "--no-latency", "--output", str(tmp_path / "tflite")], tmp_path / "tflite", runs,
        "TFLiteModel", capsys)

    # --runs-dir puts the run store elsewhere; there, the same step is built once more.
    elsewhere = tmp_path / "elsewhere"
    _published_then_cached(
        ["evaluate", str(model), str(examples), "--output", str(tmp_path / "metrics2"),
         "--no-plots", "--runs-dir", str(elsewhere)], tmp_path / "metrics2", elsewhere,
        "Metrics", capsys)


# An exit handler, and an object whose finalizer says when the interpreter tears it down.
_EXIT_PROBE = """import atexit, sys
atexit.register(lambda: sys.stderr.write('exit handler ran\\n'))
class _Probe:
    def __del__(self):
        sys.stderr.write('torn down\\n')
probe = _Probe()
from edgeline.cli import console_main
sys.argv = ['edgeline', *sys.argv[1:]]
console_main()
"""


def test_coco_eval_leaves_without_teardown_but_flushed_and_with_exit_handlers(
        tmp_path, shared_data):
    """The executable's way out (console_main): coco-eval flushes its output, runs the exit
    handlers and leaves without freeing the interpreter's objects, on success and on bad
    input alike; any other command exits the usual way, teardown included."""
    import json

    folder = shared_data / "coco" / "small"
    scored = subprocess.run(
        [sys.executable, "-c", _EXIT_PROBE, "coco-eval", str(folder / "gt_dataset.json"),
         str(folder / "dt_dataset.json"), "--json"], capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    assert len(json.loads(scored.stdout)["summary"]) == 12  # the whole document, flushed
    assert scored.stderr.splitlines() == ["exit handler ran"]

    refused = subprocess.run(
        [sys.executable, "-c", _EXIT_PROBE, "coco-eval", str(folder / "gt_dataset.json"),
         str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[1:] == ["exit handler ran"]
    assert refused.stderr.startswith("edgeline: error: detections file not found")

    listed = subprocess.run([sys.executable, "-c", _EXIT_PROBE, "models", "list"],
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "torn down" in listed.stderr
