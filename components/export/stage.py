"""The export stage's binding to the pipeline runner (nothing heavy imported here).

Inputs: one Model artifact (from train or compress: any input holding ``model.keras`` and
``preprocessing.json``) and, for calibration and the parity gate, the Examples artifact it was
trained on. Output: a ``TFLiteModel`` artifact (``model.tflite``, ``labels.txt``,
``export.json``; ``category_ids.txt`` for detectors).
"""

from __future__ import annotations

from edgeline.components.export.options import ExportOptions
from edgeline.pipeline import console
from edgeline.pipeline.stage import Stage, StageContext, StageResult


def _stderr(message: str) -> None:
    console.log(message)  # above a live bar, if there is one


def _model_input(context: StageContext):
    from edgeline.models.io import is_model_dir
    from edgeline.pipeline.errors import ConfigError

    found = [artifact for artifact in context.inputs.values() if is_model_dir(artifact.path)]
    if len(found) != 1:
        raise ConfigError(
            f"{context.step}.inputs: expected exactly one Model artifact (model.keras + "
            f"preprocessing.json), received {len(found)} among "
            f"{', '.join(context.inputs) or 'no inputs'}"
        )
    return found[0]


def _examples_input(context: StageContext):
    from edgeline.pipeline.errors import ConfigError

    found = [artifact for artifact in context.inputs.values() if artifact.type == "Examples"]
    if len(found) > 1:
        raise ConfigError(f"{context.step}.inputs: expected at most one Examples artifact, "
                          f"received {len(found)}")
    return found[0] if found else None


def summary(report: dict) -> tuple[dict, dict]:
    """(properties, metrics) of the artifact: what the file is, and how it measured."""
    properties = {
        "task": report["task"],
        "quantize": report["quantize"],
        "io_type": report["io_type"],
        "preprocessing_inside": report["preprocessing_inside"],
        "files": report["files"],
        "inputs": report["inputs"],
        "outputs": report["outputs"],
    }
    metrics = {"size_bytes": report["size_bytes"]}
    parity = report["parity"]
    for key in ("max_abs_difference", "top1_source", "top1_export", "top1_drop", "map_source",
                "map_export", "map_drop"):
        if key in parity:
            metrics[f"parity_{key}"] = parity[key]
    metrics["parity_passed"] = bool(parity.get("passed", True))
    latency = report.get("latency")
    if latency:
        metrics["latency_threads_1_ms"] = latency["threads_1_ms"]
        metrics["latency_threads_all_ms"] = latency["threads_all_ms"]
    return properties, metrics


def run_stage(context: StageContext) -> StageResult:
    from edgeline.common.determinism import determinism
    from edgeline.components.export import core

    examples = _examples_input(context)
    # A deterministic pipeline's source-model inference (the parity gate's reference) runs
    # with op determinism on, as training did; it is off again afterwards.
    with determinism(deterministic=context.deterministic):
        result = core.run(
            model_dir=_model_input(context).path,
            output_dir=context.output_dir,
            options=context.options,
            examples_dir=examples.path if examples is not None else None,
            seed=context.seed,
            log=_stderr,
        )
    properties, metrics = summary(result.report)
    return StageResult(properties=properties, metrics=metrics)


STAGES = (
    Stage(
        name="export",
        options_type=ExportOptions,
        artifact_type="TFLiteModel",
        run=run_stage,
        description=(
            "TFLite/LiteRT: float32, float16, dynamic-range or full-integer int8, optional "
            "uint8 preprocessing inside, detector decoding and NMS in builtin ops; "
            "parity-checked against the source model, with size and latency."
        ),
    ),
)
