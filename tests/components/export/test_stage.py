"""The export stage in the pipeline: options from a config, inputs from artifacts."""

from __future__ import annotations

import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.export import stage as export_stage
from edgeline.components.export.options import ExportOptions
from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.config import load_pipeline_config
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.stage import StageContext

(STAGE,) = export_stage.STAGES


def _pipeline(**export_options):
    return {
        "name": "export_test",
        "steps": {"export": {"stage": "export", **export_options}},
    }


def test_config_is_checked_before_any_work():
    config = load_pipeline_config(None, {"export": ExportOptions},
                                  data=_pipeline(quantize="int8", io_type="int8"))
    assert config.step("export").options == ExportOptions(quantize="int8", io_type="int8")
    with pytest.raises(ConfigError, match="export.quantize: expected one of"):
        load_pipeline_config(None, {"export": ExportOptions}, data=_pipeline(quantize="int4"))
    with pytest.raises(ConfigError, match="io_type='int8' with quantize='dynamic'"):
        load_pipeline_config(None, {"export": ExportOptions},
                             data=_pipeline(quantize="dynamic", io_type="int8"))
    with pytest.raises(ConfigError, match="representative_size=0"):
        load_pipeline_config(None, {"export": ExportOptions},
                             data=_pipeline(representative_size=0))


def _artifact(path, type_):
    return Artifact(uri=str(path), type=type_, producer=f"x:{type_}", fingerprint=type_,
                    inputs={}, properties={}, metrics={})


def test_stage_publishes_a_tflite_model(trained_cnn, shapes_examples, tmp_path):
    assert STAGE.name == "export" and STAGE.artifact_type == "TFLiteModel"
    context = StageContext(
        step="export_int8",
        # This test is about what the stage publishes; the int8 budget itself is tested in
        # test_core.py. A loose budget keeps a 3-image flip on 64 images from failing it.
        options=ExportOptions(quantize="int8", representative_size=200, parity_size=64,
                              max_metric_drop=0.1, latency_runs=3, latency_warmup=1),
        inputs={"train": _artifact(trained_cnn["directory"], "Model"),
                "images": _artifact(shapes_examples["directory"], "Examples")},
        output_dir=tmp_path, seed=7, deterministic=True, cache_dir=tmp_path / "cache",
    )
    result = STAGE.run(context)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.tflite", "labels.txt",
                                                     "export.json"}
    assert result.properties["quantize"] == "int8" and result.properties["task"] == \
        "classification"
    assert result.metrics["size_bytes"] == (tmp_path / "model.tflite").stat().st_size
    assert result.metrics["parity_passed"] is True
    assert result.metrics["latency_threads_1_ms"] > 0
    assert 0.0 <= result.metrics["parity_top1_export"] <= 1.0


def test_stage_needs_exactly_one_model(shapes_examples, tmp_path):
    context = StageContext(
        step="export", options=ExportOptions(),
        inputs={"images": _artifact(shapes_examples["directory"], "Examples")},
        output_dir=tmp_path, seed=0, deterministic=False, cache_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match="expected exactly one Model artifact"):
        STAGE.run(context)
