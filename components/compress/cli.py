"""``edgeline compress CONFIG --model DIR --examples DIR --output DIR``: the compress stage alone.

CONFIG is a pipeline file (the options of its compress or compress_frontier step are used;
``--step`` picks one when there are several) or a YAML mapping of compress options alone,
whose ``mode`` (recipe or frontier) decides what is written: a Model artifact, or a Frontier
(every recipe's model and .tflite, the table, the plots and the chosen model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeline.components.compress.options import CompressOptions, CompressStep
from edgeline.pipeline import standalone
from edgeline.pipeline.flags import options_reference

EPILOG = """\
examples:
  edgeline compress recipe.yaml --model runs/.../Model --examples runs/.../Examples --output small
  edgeline compress configs/demo.yaml --step frontier --model M --examples E --output frontier
  edgeline compress recipe.yaml --model M --examples E --output out --set fine_tune.epochs=1

a recipe file (the Deep Compression order: prune -> cluster -> QAT):
  steps:
    - {method: bn_fold}
    - {method: prune, prune: {target_sparsity: 0.8, schedule: polynomial_decay}}
    - {method: cluster, cluster: {number_of_clusters: 16}}
    - {method: qat}
  fine_tune: {epochs: 2, learning_rate: 1.0e-4, batch_size: 32}

methods (each step's method; its options are in its own block):
  bn_fold   fold BatchNormalization into the Conv2D/DepthwiseConv2D/Dense before it
  prune     magnitude pruning to a target sparsity, unstructured or 2:4 (TF-MOT)
  cluster   weight clustering: each kernel shares a few centroids (TF-MOT)
  qat       quantization-aware training, keeping the sparsity and clusters of earlier steps
  distill   a smaller student (a registry name) trained from the input model, the teacher

frontier mode (mode: frontier, or --frontier) compares recipes (name -> {steps, quantize})
and chooses the smallest model within frontier.accuracy_budget points of the original.

keys of a recipe step (their meaning is in components/compress/options.py):
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="compress a Model (prune, cluster, QAT, distill, BN fold), or run a frontier",
        description=__doc__.split("\n\n", 1)[1],
        epilog=(EPILOG + options_reference(CompressStep) + "\n\nkeys of the compress step:\n"
                + options_reference(CompressOptions, exclude=("steps",))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    standalone.add_config_flags(parser, "compress", "fine_tune.epochs=1")
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="the Model artifact to compress (the teacher, for distill)")
    parser.add_argument("--examples", required=True, metavar="DIR",
                        help="the Examples the model was trained on (fine-tuning, evaluation)")
    parser.add_argument("--frontier", action="store_true",
                        help="run the options in frontier mode (same as mode: frontier)")
    standalone.add_publishing_flags(parser, "the result (a Model, or a Frontier directory)")
    parser.set_defaults(func=_cmd_compress)


def load_options(args):
    """(options, seed, deterministic) from CONFIG, --frontier and the overrides."""
    from edgeline.pipeline.config import parse_dataclass

    body, where, stage, seed, deterministic = standalone.config_options(
        args, ("compress", "compress_frontier"))
    if args.frontier or stage == "compress_frontier":
        body["mode"] = "frontier"
    options = parse_dataclass(CompressOptions, standalone.set_options(body, args.set), where,
                              Path(args.config).resolve().parent)
    return options, seed, deterministic


def _cmd_compress(args) -> int:
    from edgeline.components.compress.stage import STAGES
    from edgeline.models import io as model_io
    from edgeline.pipeline import artifacts
    from edgeline.pipeline.errors import UserError
    from edgeline.pipeline.standalone import given_artifact, refuse_foreign_output, run_one_step

    options, seed, deterministic = load_options(args)
    refuse_foreign_output(args.output)
    for flag, path in (("--model", args.model), ("--examples", args.examples)):
        if not Path(path).is_dir():
            raise UserError(f"{flag}: not a directory: {path!r}")
    artifacts.verify_input(args.model, "--model")
    artifacts.verify_input(args.examples, "--examples")
    try:  # the small files only: a wrong directory fails before TensorFlow loads
        model_io.load_model_dir(args.model)
    except model_io.ModelDirError as err:
        raise UserError(f"--model: {err}") from None
    # compress (a Model) or compress_frontier (a Frontier), by the options' mode
    stage = {s.name: s for s in STAGES}["compress_frontier" if options.mode == "frontier"
                                        else "compress"]
    outcome = run_one_step(
        stage, options, output=args.output, overwrite=args.overwrite, runs_dir=args.runs_dir,
        inputs={"model": given_artifact(args.model, "Model"),
                "examples": given_artifact(args.examples, "Examples")},
        seed=seed, deterministic=deterministic, force=args.force)
    artifact = outcome.artifact
    cached = " (cached, no work done)" if outcome.cached else ""
    if options.mode == "frontier":
        from edgeline.components.compress.frontier import TABLE_FILE

        print((artifact.path / TABLE_FILE).read_text(), end="")
        print(f"chosen: {artifact.properties.get('chosen') or 'none within the budget'}")
        print(f"frontier written to {artifact.uri}{cached}")
    else:
        for key, value in sorted(artifact.metrics.items()):
            print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
        print(f"compressed model written to {artifact.uri}{cached}")
    print(outcome.details())
    return 0
