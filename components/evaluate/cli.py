"""Command-line bindings of the evaluate stage.

    edgeline coco-eval GT.json DT.json [--iou-type bbox|segm] [--json] [--plots DIR]
    edgeline evaluate MODEL EXAMPLES --output DIR [--split S] [--form F] [--batch-size N] ...
    edgeline evaluate POLICY --output DIR [--form saved_model|tflite] [--episodes N] [--seed S]

``coco-eval`` needs no model: it scores detections a user brings (a COCO results file)
against COCO ground truth, with the numbers pycocotools' COCOeval gives. Heavy imports happen
inside the handlers, so ``edgeline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add the evaluate stage's subcommands to the ``edgeline`` parser."""
    _register_coco_eval(subparsers)
    _register_evaluate(subparsers)


def _register_coco_eval(subparsers) -> None:
    parser = subparsers.add_parser(
        "coco-eval",
        help="COCO mAP of a detections file against COCO ground truth (pycocotools' numbers)",
        description=(
            "Score detections against COCO ground truth with the COCO detection metric: AP at "
            "IoU .50:.05:.95, AP50, AP75, AP for small/medium/large objects, AR at 1/10/100 "
            "detections per image and AR small/medium/large -- the 12 numbers of pycocotools' "
            "COCOeval.summarize(), computed by faster-coco-eval. Prints pycocotools' 12-line "
            "summary, or JSON with --json. Exit code 2 and one line for malformed input."
        ),
    )
    parser.add_argument(
        "ground_truth", metavar="GT.json",
        help="COCO ground truth: a JSON object with 'images', 'annotations', 'categories'",
    )
    parser.add_argument(
        "detections", metavar="DT.json",
        help=(
            "detections: a COCO results file (a JSON list of {image_id, category_id, bbox "
            "[x, y, w, h] or segmentation, score}) or a COCO-format file whose 'annotations' "
            "carry a score; an empty list is valid (all zeros)"
        ),
    )
    parser.add_argument(
        "--iou-type", choices=("bbox", "segm"), default="bbox",
        help="match boxes (bbox, default) or masks (segm: RLE or polygon segmentations)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help=(
            "print JSON instead: the 12 numbers by name (AP, AP50, AP75, APs, APm, APl, AR1, "
            "AR10, AR100, ARs, ARm, ARl; -1 where there is no ground truth in that area) and "
            "the AP of each category (null where the category has no ground truth)"
        ),
    )
    parser.add_argument(
        "--plots", metavar="DIR",
        help="also write precision-recall curves as PNGs into DIR (one per category, "
        "plus pr_all.png)",
    )
    parser.set_defaults(func=_cmd_coco_eval)


def _cmd_coco_eval(args: argparse.Namespace) -> int:
    from edgeline.common.coco import evaluate_files

    metrics = evaluate_files(args.ground_truth, args.detections, iou_type=args.iou_type)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
    else:
        print(metrics.format_summary())
    if args.plots:
        from edgeline.components.evaluate.coco_plots import write_precision_recall_plots

        paths = write_precision_recall_plots(metrics, args.plots)
        # stderr, so that --json output stays one JSON document
        print(f"wrote {len(paths)} precision-recall plots to {args.plots}", file=sys.stderr)
    return 0


def _register_evaluate(subparsers) -> None:
    from edgeline.components.evaluate.options import DetectionOptions, EvaluateOptions

    defaults, detection = EvaluateOptions(), DetectionOptions()
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
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="where metrics.json and the plots go: a new or empty folder, or "
                        "an earlier edgeline output with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds an earlier edgeline output (swapped only "
                        "once the new evaluation is complete)")
    parser.add_argument("--split", default=defaults.split,
                        help=f"the split to evaluate (default {defaults.split})")
    parser.add_argument(
        "--form", choices=("auto", "keras", "saved_model", "tflite"), default="auto",
        help="which form of the model to run; auto: the .tflite of an export, else the Keras "
        "model (saved_model: a Model artifact's SavedModel). A Policy: auto or saved_model "
        "runs the SavedModel policy, tflite the .tflite network in LiteRT (argmax action)",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help=f"images per inference call (default {defaults.batch_size})")
    parser.add_argument("--num-threads", type=int, default=defaults.num_threads,
                        help="CPU threads of the LiteRT interpreter (default 1)")
    parser.add_argument("--max-images", type=int, default=None,
                        help="evaluate the first N images only (default: all)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--score-threshold", type=float, default=detection.score_threshold,
        help=f"detectors: drop detections scoring below it (default {detection.score_threshold})",
    )
    parser.add_argument("--nms", choices=("hard", "soft"), default=detection.nms,
                        help="detectors: hard NMS or Gaussian soft-NMS (Bodla et al., 2017)")
    parser.add_argument("--iou-threshold", type=float, default=detection.iou_threshold,
                        help=f"detectors: hard-NMS IoU (default {detection.iou_threshold})")
    parser.add_argument("--soft-nms-sigma", type=float, default=detection.soft_nms_sigma,
                        help=f"detectors: soft-NMS sigma (default {detection.soft_nms_sigma})")
    parser.add_argument("--max-detections", type=int, default=detection.max_detections,
                        help=f"detectors: detections per image (default "
                        f"{detection.max_detections})")
    parser.add_argument("--episodes", type=int, default=defaults.episodes,
                        help=f"a Policy: greedy episodes to play (default {defaults.episodes})")
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
    from edgeline.components.evaluate.options import DetectionOptions, EvaluateOptions
    from edgeline.pipeline.errors import UserError

    try:
        detection = DetectionOptions(
            score_threshold=args.score_threshold, nms=args.nms,
            iou_threshold=args.iou_threshold, soft_nms_sigma=args.soft_nms_sigma,
            max_detections=args.max_detections,
            pre_nms_top_k=max(DetectionOptions.pre_nms_top_k, args.max_detections),
        )
        options = EvaluateOptions(
            split=args.split, model_form=args.form, batch_size=args.batch_size,
            num_threads=args.num_threads, max_images=args.max_images,
            plots=not args.no_plots, detection=detection,
            episodes=args.episodes, episode_seed=args.seed,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    from pathlib import Path

    from edgeline.pipeline import artifacts
    from edgeline.pipeline.config import to_plain

    output = Path(args.output).absolute()
    artifacts.check_output_dir(output, args.overwrite)
    artifacts.verify_input(args.model, "MODEL")
    artifacts.verify_input(args.examples, "EXAMPLES")
    is_policy = core.is_policy_dir(args.model)
    if is_policy and args.examples is not None:
        raise UserError(f"Received: EXAMPLES={args.examples!r}; a Policy is evaluated in its "
                        "environment and takes no Examples")
    if not is_policy and args.examples is None:
        raise UserError(f"Received: model={args.model!r} and no EXAMPLES; a model is evaluated "
                        "on an Examples artifact (only a Policy artifact needs none)")
    inputs = {"model": artifacts.input_identity(args.model)}
    if args.examples is not None:
        inputs["examples"] = artifacts.input_identity(args.examples)
    with artifacts.writing_output(output) as staging:  # published whole, or not at all
        if is_policy:
            result = _evaluate_policy(args, options, staging)
        else:
            result = core.run(options=options, examples_dir=args.examples,
                              model_path=args.model, output_dir=staging)
        artifacts.publish(
            staging, output, type="Metrics", producer="cli:evaluate",
            fingerprint=artifacts.fingerprint("evaluate", to_plain(options), inputs,
                                              {"seed": args.seed}),
            inputs=inputs, properties=result.properties, metrics=result.metrics,
            replace=args.overwrite)
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        for name, value in result.metrics.items():
            print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")
    return 0


def _evaluate_policy(args: argparse.Namespace, options, output_dir):
    """The Policy path of ``edgeline evaluate``: options from the flags, environment from the
    artifact unless --environment/--suite/--max-episode-steps override it."""
    import dataclasses
    from pathlib import Path

    from edgeline.components.evaluate.returns import (
        environment_options_of,
        evaluate_policy,
        read_policy_description,
    )
    from edgeline.pipeline.errors import UserError

    environment = None
    overrides = {"name": args.environment, "suite": args.suite,
                 "max_episode_steps": args.max_episode_steps}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if overrides:
        trained_in = environment_options_of(read_policy_description(Path(args.model))["environment"])
        try:
            environment = dataclasses.replace(trained_in, **overrides)
        except ValueError as err:
            raise UserError(str(err)) from None
    options = dataclasses.replace(options, environment=environment)
    return evaluate_policy(options=options, policy_dir=args.model, output_dir=output_dir,
                           seed=args.seed)
