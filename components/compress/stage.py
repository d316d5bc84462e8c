"""The compress stage's binding to the pipeline.

Two stages share the options of :mod:`.options`:

* ``compress``: a Model (and the Examples it was trained on) in, the compressed Model out;
* ``compress_frontier``: the same inputs, a Frontier out: every recipe's model, its
  ``.tflite``, the accuracy/size/latency table, the two plots and the chosen model.

Nothing heavy is imported here; the cores are imported when a stage runs.
"""

from __future__ import annotations

from edgeline.components.compress.options import CompressFrontierOptions, CompressOptions
from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.stage import Stage, StageContext, StageResult


def _inputs(context: StageContext):
    model = context.input_of_type("Model")
    examples = context.input_of_type("Examples")
    return model.path, examples.path


def _run_compress(context: StageContext) -> StageResult:
    from edgeline.components.compress import core

    if context.options.mode != "recipe":
        raise ConfigError(f"{context.step}.mode: the compress stage runs recipes; for "
                          f"mode={context.options.mode!r} use stage: compress_frontier")
    model_dir, examples_dir = _inputs(context)
    result = core.run(options=context.options, model_dir=model_dir, examples_dir=examples_dir,
                      output_dir=context.output_dir, seed=context.seed,
                      deterministic=context.deterministic)
    return StageResult(properties=result.properties, metrics=result.metrics)


def _run_frontier(context: StageContext) -> StageResult:
    from edgeline.components.compress import frontier

    model_dir, examples_dir = _inputs(context)
    result = frontier.run(options=context.options, model_dir=model_dir,
                          examples_dir=examples_dir, output_dir=context.output_dir,
                          seed=context.seed, deterministic=context.deterministic)
    return StageResult(properties=result.properties, metrics=result.metrics)


# Two declarations of one kind, kept compact: the stages differ only in these fields.
STAGES = (
    Stage(name="compress", options_type=CompressOptions, artifact_type="Model",
          run=_run_compress,
          description="prune, cluster, quantization-aware train, distill or BN-fold a Model"),
    Stage(name="compress_frontier", options_type=CompressFrontierOptions,
          artifact_type="Frontier", run=_run_frontier,
          description="run compression recipes; report accuracy vs size and latency; choose"),
)
