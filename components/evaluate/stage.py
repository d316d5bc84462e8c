"""The evaluate stage's binding to the pipeline: Examples + Model (or TFLiteModel) in, Metrics out;
or a Policy (rl output) in, Metrics of its return over seeded episodes out.

Nothing heavy is imported here; the core is imported when the stage runs.
"""

from __future__ import annotations

from edgeline.components.evaluate.options import EvaluateOptions
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.stage import Stage, StageContext, StageResult

MODEL_TYPES = ("Model", "TFLiteModel")
POLICY_TYPE = "Policy"  # the rl stage's output: scored by its return over seeded episodes


def _only_one(context: StageContext, artifacts: list, kind: str):
    """The single input artifact of ``kind``; a step given none or several is a config error."""
    if len(artifacts) != 1:
        raise ConfigError(
            f"{context.step}.inputs: expected exactly one {kind} artifact, received "
            f"{len(artifacts)} ({', '.join(context.inputs) or 'no inputs'})"
        )
    return artifacts[0]


def _run_policy(context: StageContext, policies: list) -> StageResult:
    from edgeline.components.evaluate.returns import evaluate_policy

    result = evaluate_policy(
        options=context.options,
        policy_dir=_only_one(context, policies, "Policy").path,
        output_dir=context.output_dir,
        seed=context.seed,
    )
    return StageResult(properties={**result.properties, "model_type": "Policy"},
                       metrics=result.metrics)


def _run(context: StageContext) -> StageResult:
    from edgeline.components.evaluate import core

    policies = [a for a in context.inputs.values() if a.type == POLICY_TYPE]
    if policies:
        return _run_policy(context, policies)
    examples = context.input_of_type("Examples")
    model = _only_one(context, [a for a in context.inputs.values() if a.type in MODEL_TYPES],
                      "Model or TFLiteModel")
    result = core.run(
        options=context.options,
        examples_dir=examples.path,
        model_path=model.path,
        output_dir=context.output_dir,
    )
    properties = {**result.properties, "model_type": model.type}
    return StageResult(properties=properties, metrics=result.metrics)


STAGES = (
    Stage(
        name="evaluate",
        options_type=EvaluateOptions,
        artifact_type="Metrics",
        run=_run,
        description="metrics of a Keras, SavedModel or TFLite model on an Examples split "
        "(top-1/top-5/confusion matrix, or COCO mAP), or of a Policy: the mean and spread of "
        "its greedy return over seeded episodes",
    ),
)
