"""The ingest stage in a pipeline run: built-in demo data, caching on the source's identity."""

from __future__ import annotations

import json
import os

import pytest

import edgeline  # noqa: F401
from edgeline.components.ingest.options import IngestOptions
from edgeline.components.ingest.stage import STAGES
from edgeline.pipeline.config import load_pipeline_config
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.runner import run_pipeline
from edgeline.pipeline.stage import StageRegistry


@pytest.fixture
def registry():
    registry = StageRegistry()
    for stage in STAGES:
        registry.register(stage)
    return registry


def _config(registry, step: dict, seed: int = 3):
    data = {"name": "ingest-test", "seed": seed,
            "steps": {"data": {"stage": "ingest", "workers": 1, **step}}}
    return load_pipeline_config(None, registry.options_types(), data=data)


@pytest.mark.slow
def test_builtin_sets_ingest_with_their_planted_faults(registry, tmp_path):
    config = _config(registry, {"source": "builtin:classification", "train_shards": 4,
                                "val_shards": 2})
    artifact = run_pipeline(config, registry, runs_dir=tmp_path, log=lambda m: None).artifact(
        "data")
    splits = artifact.properties["splits"]
    # The demo set plants a CMYK JPEG, a PNG named .JPEG and two grayscale JPEGs (fixed) and
    # one truncated JPEG (rejected) in train/; validation is labelled by its CSV.
    assert (splits["train"]["fixed"], splits["train"]["rejected"]) == (4, 1)
    assert splits["validation"]["rejected"] == 0 and splits["validation"]["written"] > 0
    labels = (artifact.path / "labels.txt").read_text().splitlines()
    assert labels[0] == "n90000001\tdisc" and artifact.properties["num_classes"] == 10

    config = _config(registry, {"format": "coco", "source": "builtin:detection",
                                "train_shards": 2, "val_shards": 1})
    artifact = run_pipeline(config, registry, runs_dir=tmp_path, log=lambda m: None).artifact(
        "data")
    assert artifact.properties["task"] == "detection"
    assert set(artifact.properties["splits"]) == {"train", "validation"}
    truth = json.loads((artifact.path / "validation_annotations.json").read_text())
    assert len(truth["images"]) == artifact.properties["splits"]["validation"]["written"]


def test_an_unchanged_source_is_a_cache_hit_and_a_changed_one_is_not(registry, tmp_path,
                                                                    fault_set):
    source, _ = fault_set
    config = _config(registry, {"source": str(source), "train_shards": 2})
    first = run_pipeline(config, registry, runs_dir=tmp_path / "runs", log=lambda m: None)
    again = run_pipeline(config, registry, runs_dir=tmp_path / "runs", log=lambda m: None)
    assert not first.steps[0].cached and again.steps[0].cached
    clean = source / "train" / "n01440764" / "clean_a.JPEG"
    stat = clean.stat()
    os.utime(clean, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = run_pipeline(config, registry, runs_dir=tmp_path / "runs", log=lambda m: None)
    assert not changed.steps[0].cached
    assert changed.artifact("data").fingerprint != first.artifact("data").fingerprint


@pytest.mark.parametrize("step, message", [
    ({"source": "/no/such/folder"}, "data.source"),
    ({"source": "builtin:classification", "train_shards": 0}, "train_shards=0"),
    ({"format": "coco", "source": "builtin:classification"}, "format coco takes"),
    ({"format": "coco"}, "needs a source folder or images and annotations"),
    ({"source": "builtin:classification", "shards": 3}, "data.shards: unknown key"),
])
def test_bad_step_options_are_config_errors(registry, step, message):
    with pytest.raises(ConfigError, match=message):
        _config(registry, step)


def test_options_defaults_match_the_issue():
    options = IngestOptions(source="builtin:classification")
    assert (options.train_shards, options.val_shards) == (1024, 128)
