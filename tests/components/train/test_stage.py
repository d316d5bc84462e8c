"""The train stage's binding: inputs from artifacts, resumable state in the cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import train_helpers

from edgeline.components.train import stage as train_stage
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.stage import StageContext


def _artifact(path: Path, kind: str, fingerprint: str) -> Artifact:
    return Artifact(uri=str(path), type=kind, producer=f"x:{kind}", fingerprint=fingerprint,
                    inputs={}, properties={}, metrics={})


def _context(tmp_path, inputs, **options) -> StageContext:
    output = tmp_path / "output"
    output.mkdir(exist_ok=True)
    return StageContext(step="classifier", options=train_helpers.tiny_options(**options),
                        inputs=inputs, output_dir=output, seed=4, deterministic=True,
                        cache_dir=tmp_path / "cache")


def test_the_stage_is_declared_without_importing_tensorflow():
    (declared,) = train_stage.STAGES
    assert (declared.name, declared.artifact_type) == ("train", "Model")


def test_identity_follows_what_decides_the_result():
    options = train_helpers.tiny_options()
    base = train_stage.run_identity(options, {"images": "f1"}, 1, True)
    assert base == train_stage.run_identity(options, {"images": "f1"}, 1, True)
    assert base != train_stage.run_identity(options, {"images": "f2"}, 1, True)
    assert base != train_stage.run_identity(options, {"images": "f1"}, 2, True)
    assert base != train_stage.run_identity(dataclasses.replace(options, epochs=3),
                                            {"images": "f1"}, 1, True)


def test_stage_trains_into_the_output_and_cleans_its_cache(classification_examples,
                                                          tiny_model, tmp_path):
    context = _context(tmp_path, {"images": _artifact(classification_examples, "Examples",
                                                      "e" * 64)}, epochs=1, steps_per_epoch=2)
    result = train_stage.STAGES[0].run(context)
    assert {"val_top1", "val_loss"} <= set(result.metrics)
    assert result.properties["task"] == "classification"
    assert (context.output_dir / "model.keras").is_file()
    assert (context.output_dir / "saved_model" / "saved_model.pb").is_file()
    # The resumable state lived in the cache, keyed by the step's identity, and is gone now.
    assert (tmp_path / "cache" / "train").is_dir()
    assert not any((tmp_path / "cache" / "train").iterdir())


def test_two_starting_models_are_refused(classification_examples, tmp_path):
    inputs = {"images": _artifact(classification_examples, "Examples", "e"),
              "a": _artifact(tmp_path, "Model", "m1"), "b": _artifact(tmp_path, "Model", "m2")}
    with pytest.raises(ConfigError, match="at most one Model to start from, received 2"):
        train_stage.STAGES[0].run(_context(tmp_path, inputs))


def test_external_fingerprint_changes_with_the_initial_model(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"1")
    first = train_stage.model_source_identity(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"22")
    assert train_stage.model_source_identity(tmp_path) != first
    assert train_stage.model_source_identity(None) is None
