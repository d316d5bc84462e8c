"""A stage run on its own: a one-step pipeline, published, cached, then placed at --output."""

from __future__ import annotations

import dataclasses
import json
import sqlite3

import pytest

from edgeline.pipeline import standalone
from edgeline.pipeline.artifacts import Artifact, publish, staging_dir
from edgeline.pipeline.errors import UserError
from edgeline.pipeline.stage import Stage, StageResult


@dataclasses.dataclass(frozen=True)
class Options:
    word: str = "hello"


def _stage(calls: list) -> Stage:
    def run(context):
        calls.append(context)
        if context.options.word == "bad":
            raise UserError("Received: word='bad'; a word must not be bad")
        words = [context.options.word, *[a.uri for a in context.inputs.values()]]
        (context.output_dir / "words.txt").write_text("\n".join(words))
        return StageResult(properties={"words": len(words)}, metrics={"length": 5})

    return Stage(name="toy", options_type=Options, artifact_type="Words", run=run)


def test_a_step_is_published_with_lineage_then_a_rerun_is_a_cache_hit(tmp_path):
    calls = []
    output = tmp_path / "out"
    first = standalone.run_one_step(_stage(calls), Options(), inputs={}, output=output,
                                    overwrite=False)
    assert not first.cached and len(calls) == 1
    runs = tmp_path / standalone.DEFAULT_RUNS_DIR_NAME
    assert first.runs_dir == runs
    [published] = (runs / "artifacts" / "toy").iterdir()
    assert (output / "words.txt").read_text() == "hello"
    # Hard-linked, not copied: the same file as the published one.
    assert (output / "words.txt").stat().st_ino == (published / "words.txt").stat().st_ino
    assert Artifact.load(output).fingerprint == Artifact.load(published).fingerprint

    # The same step again, as it is: --output already holds this very artifact, so there is
    # nothing to refuse (no --overwrite needed) and nothing to do.
    again = standalone.run_one_step(_stage(calls), Options(), inputs={}, output=output,
                                    overwrite=False)
    assert again.cached and len(calls) == 1  # no work
    # Another result (other options) into the taken output is refused before any work.
    with pytest.raises(UserError, match="--overwrite"):
        standalone.run_one_step(_stage(calls), Options(word="other"), inputs={}, output=output,
                                overwrite=False)
    assert len(calls) == 1
    with sqlite3.connect(runs / "lineage.sqlite") as db:
        rows = db.execute("SELECT step, status, cached FROM executions ORDER BY id").fetchall()
    assert rows == [("toy", "complete", 0), ("toy", "cached", 1)]


def test_the_output_is_checked_before_any_work(tmp_path):
    calls = []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(UserError, match="holds no edgeline artifact"):
            standalone.run_one_step(_stage(calls), Options(), inputs={}, output=mine,
                                    overwrite=overwrite)
    assert calls == [] and [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert not (tmp_path / standalone.DEFAULT_RUNS_DIR_NAME).exists()


def test_bad_input_is_one_line_without_the_step_prefix(tmp_path):
    with pytest.raises(UserError) as error:
        standalone.run_one_step(_stage([]), Options(word="bad"), inputs={},
                                output=tmp_path / "out", overwrite=False)
    assert str(error.value) == "Received: word='bad'; a word must not be bad"
    assert not (tmp_path / "out").exists()


def test_given_inputs_are_read_and_a_changed_folder_is_no_cache_hit(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.txt").write_text("1")
    before = standalone.given_artifact(folder, "Examples")
    assert before.type == "Examples" and before.uri == str(folder)
    (folder / "a.txt").write_text("22")
    assert standalone.given_artifact(folder, "Examples").fingerprint != before.fingerprint

    staging = staging_dir(tmp_path / "published")
    (staging / "x.txt").write_text("x")
    made = publish(staging, tmp_path / "published", type="Model", producer="p:train",
                   fingerprint="f" * 64, inputs={}, properties={}, metrics={})
    assert standalone.given_artifact(made.path, "Examples").type == "Model"  # its own

    calls = []
    outcome = standalone.run_one_step(_stage(calls), Options(), output=tmp_path / "out",
                                      inputs={"model": made}, overwrite=False)
    assert calls[0].inputs["model"].uri == made.uri
    saved = json.loads((tmp_path / "out" / "artifact.json").read_text())
    assert saved["inputs"] == {"model": "f" * 64} == outcome.artifact.inputs
