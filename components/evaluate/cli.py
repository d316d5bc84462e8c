"""Command-line bindings of the evaluate stage.

    edgeline coco-eval GT.json DT.json [--iou-type bbox|segm] [--json] [--plots DIR]
    edgeline evaluate MODEL EXAMPLES --output DIR [--split S] [--form F] [--batch-size N] ...
    edgeline evaluate POLICY --output DIR [--form saved_model|tflite] [--episodes N] [--seed S]

``coco-eval`` needs no model: it scores detections a user brings (a COCO results file)
against COCO ground truth, with the numbers pycocotools' COCOeval gives; it lives in
:mod:`.coco_cli`, which imports nothing heavy. Heavy imports happen inside the handlers, so
``edgeline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

from edgeline.components.evaluate import coco_cli
from edgeline.components.evaluate.options import DetectionOptions, EvaluateOptions
from edgeline.pipeline.flags import Flag, add_option_flags, options_from_flags
from edgeline.pipeline.standalone import add_publishing_flags


def register(subparsers) -> None:
    """Add the evaluate stage's subcommands to the ``edgeline`` parser."""
    coco_cli.register(subparsers)
    _register_evaluate(subparsers)


# Flags whose names are not their option's (every other option is --<its last part>).
FLAGS = {
    "model_form": Flag("--form", note="A Policy: auto or saved_model runs the SavedModel "
                       "policy, tflite the .tflite network in LiteRT (argmax action)."),
    "plots": Flag("--no-plots", negate=True),
}
# Not flags: the episodes' first seed is --seed (the run's seed), pre_nms_top_k follows
# --max-detections, and the environment is the Policy's own unless the flags below change it.
NOT_FLAGS = ("episode_seed", "detection.pre_nms_top_k", "environment")


def _register_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a model (Keras, SavedModel or .tflite) on an Examples split, or the "
        "return of a Policy (rl output) over seeded episodes",
        description=(
            "Run a model over the TFRecords of an Examples artifact (ingest output) and score "
            "it: top-1, top-5, per-class accuracy and a confusion matrix for a classifier; the "
            "COCO metrics against the split's stored ground truth for a detector. Writes "
            "metrics.json and PNG plots into --output and prints the headline numbers. The "
            "same code judges a Model artifact, its SavedModel and a TFLite export. Given a "
            "Policy artifact (rl output) instead, and no EXAMPLES, plays its greedy policy for "
            "--episodes episodes seeded --seed, --seed + 1, ... in the environment it was "
            "trained in, and reports the mean, std, min and max return, the episode lengths "
            "and episodes/second, with a return histogram."
        ),
    )
    parser.add_argument(
        "model", metavar="MODEL",
        help="a Model artifact directory, a TFLiteModel (export) directory, a .tflite / "
        ".keras file with labels.txt and preprocessing.json (or export.json) beside it, or a "
        "Policy artifact directory (rl output: saved_policy/, policy.tflite, policy.json)",
    )
    parser.add_argument("examples", metavar="EXAMPLES", nargs="?", default=None,
                        help="an Examples artifact directory (shards, labels.txt, "
                        "<split>_annotations.json for detection); not for a Policy")
    add_publishing_flags(parser, "metrics.json and the plots")
    add_option_flags(parser, EvaluateOptions, FLAGS, exclude=NOT_FLAGS)
    parser.add_argument("--seed", type=int, default=0,
                        help="a Policy: the first episode's seed; episode i is seeded seed + i "
                        "(default 0)")
    parser.add_argument("--environment", metavar="NAME", default=None,
                        help="a Policy: play in this Gym id or Atari game instead of the one it "
                        "was trained in (same observations and actions required)")
    parser.add_argument("--suite", choices=("gym", "atari"), default=None,
                        help="with --environment: its suite (default: the policy's)")
    parser.add_argument("--max-episode-steps", type=int, default=None,
                        help="a Policy in a Gym environment: the time limit per episode "
                        "(default: the one it was trained with)")
    parser.add_argument("--json", action="store_true", help="print metrics.json's content")
    parser.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:

    from edgeline.components.evaluate import core
    from edgeline.components.evaluate.stage import STAGES
    from edgeline.pipeline import artifacts
    from edgeline.pipeline.errors import UserError
    from edgeline.pipeline.standalone import (
        given_artifact,
        read_json,
        refuse_foreign_output,
        run_one_step,
    )

    options = _options(args)
    refuse_foreign_output(args.output)
    artifacts.verify_input(args.model, "MODEL")
    artifacts.verify_input(args.examples, "EXAMPLES")
    is_policy = core.is_policy_dir(args.model)
    if is_policy and args.examples is not None:
        raise UserError(f"Received: EXAMPLES={args.examples!r}; a Policy is evaluated in its "
                        "environment and takes no Examples")
    if not is_policy and args.examples is None:
        raise UserError(f"Received: model={args.model!r} and no EXAMPLES; a model is evaluated "
                        "on an Examples artifact (only a Policy artifact needs none)")
    if is_policy:
        options = _with_environment(args, options)
        model_type = "Policy"
    else:
        model_type = "TFLiteModel" if str(args.model).endswith(".tflite") else "Model"
    inputs = {"model": given_artifact(args.model, model_type)}
    if args.examples is not None:
        inputs["examples"] = given_artifact(args.examples, "Examples")
    # A Policy's episodes are seeded --seed, --seed + 1, ...: the step's seed.
    outcome = run_one_step(STAGES[0], options, inputs=inputs, output=args.output,
                           overwrite=args.overwrite, runs_dir=args.runs_dir, seed=args.seed,
                           force=args.force)
    if args.json:
        print(json.dumps(read_json(outcome.artifact, core.METRICS_FILE), indent=2))
        return 0
    for name, value in outcome.artifact.metrics.items():
        print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    if outcome.cached:
        print(f"cached, no work done: {outcome.artifact.uri}")
    print(outcome.details())
    return 0


def _options(args: argparse.Namespace):
    from edgeline.pipeline.flags import given_options

    detection = given_options(args).get("detection", {})
    # More detections kept than the top-k before NMS would refuse them: raised to match.
    top_k = max(DetectionOptions.pre_nms_top_k, detection.get("max_detections", 0))
    return options_from_flags(args, EvaluateOptions, "evaluate",
                              base={"episode_seed": args.seed,
                                    "detection": {"pre_nms_top_k": top_k}})


def _with_environment(args: argparse.Namespace, options):
    """A Policy is played in the environment of its artifact, unless --environment/--suite/
    --max-episode-steps override it."""
    import dataclasses
    from pathlib import Path

    from edgeline.components.evaluate.returns import (
        environment_options_of,
        read_policy_description,
    )
    from edgeline.pipeline.errors import UserError

    overrides = {"name": args.environment, "suite": args.suite,
                 "max_episode_steps": args.max_episode_steps}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if not overrides:
        return options
    trained_in = environment_options_of(read_policy_description(Path(args.model))["environment"])
    try:
        return dataclasses.replace(options, environment=dataclasses.replace(trained_in,
                                                                            **overrides))
    except ValueError as err:
        raise UserError(str(err)) from None
