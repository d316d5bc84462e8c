"""The rl stage's pipeline binding: ``stage: rl`` steps publish a ``Policy`` artifact.

Nothing heavy is imported here; the core (TensorFlow, tf-agents) loads when a step runs.
"""

from __future__ import annotations

from edgeline.components.rl.options import RlOptions
from edgeline.pipeline import console
from edgeline.pipeline.stage import Stage, StageContext, StageResult


def _log(message: str) -> None:
    console.log(message)  # above a live bar, if there is one


def run_stage(context: StageContext) -> StageResult:
    """Train in ``cache_dir/rl/<step>-<key>`` (checkpoints survive a killed run, which the
    runner's staging directory does not), export into ``output_dir``."""
    from edgeline.components.rl import core

    key = core.checkpoint_key(context.options, context.seed, context.deterministic)
    checkpoint_dir = context.cache_dir / "rl" / f"{context.step}-{key}"
    result = core.run(
        context.options,
        output_dir=context.output_dir,
        checkpoint_dir=checkpoint_dir,
        seed=context.seed,
        deterministic=context.deterministic,
        log=_log,
    )
    core.remove_checkpoint(checkpoint_dir)
    return StageResult(properties=result["properties"], metrics=result["metrics"])


STAGES = (
    Stage(
        name="rl",
        options_type=RlOptions,
        artifact_type="Policy",
        run=run_stage,
        description=(
            "Train a tf-agents DQN or REINFORCE agent on a Gym or Atari environment; publish "
            "the best greedy policy as a SavedModel and a .tflite network."
        ),
    ),
)
