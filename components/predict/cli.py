"""``edgeline predict MODEL SOURCE... [--output DIR] [--score-threshold T] [--top-k K]``.

    edgeline predict runs/artifacts/export/0123abcd photos/ --output predictions
    edgeline predict model_int8.tflite 'val/*.jpg' street.jpg --score-threshold 0.4
    edgeline predict runs/artifacts/rl/89ab --episodes 5 --seed 0 --output cartpole

What ``yolo predict`` is to Ultralytics users: a model (a Model artifact, a SavedModel, a
``.tflite``) on your own pictures, or a Policy artifact on a few episodes. Exit codes: 0 at
least one image predicted (unreadable files are listed and counted); 2 bad input: MODEL is not
a model, or no file could be predicted (one line says why).
"""

from __future__ import annotations

import argparse
import sys

from edgeline.components.predict.options import PredictOptions
from edgeline.pipeline.flags import add_option_flags, options_from_flags

DEFAULT_OUTPUT = "predictions"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="try a model on your own images (or a Policy on a few episodes)",
        description=(
            "Run MODEL on the images SOURCE names, prepared exactly as evaluation prepares "
            "them. Classifiers: the top-k labels and probabilities of each image, printed and "
            "written to predictions.json. Detectors: a copy of each image with its boxes, "
            "labels and scores drawn, and predictions.json in COCO results format (image_id, "
            "category_id, bbox [x, y, w, h] in the original image's pixels, score, and "
            "file_name), ready for 'edgeline coco-eval'. A Policy artifact as MODEL plays "
            "seeded greedy episodes instead (no SOURCE) and draws the first as a GIF."
        ),
        epilog=(
            "image_id is the file's stem when it is an integer (COCO's file names give their "
            "ids), else the stem itself, as Ultralytics writes them; coco-eval then finds the "
            "image by file_name. A file that cannot be read is listed with its reason "
            "and skipped (predicted + skipped = given). Exit codes: 0 something predicted; 2 "
            "MODEL is not a model, or nothing could be predicted."
        ),
    )
    parser.add_argument("model", metavar="MODEL",
                        help="a Model artifact (train, compress), a SavedModel directory, a "
                             ".tflite file or TFLiteModel artifact (int8 too), or a Policy "
                             "artifact (rl)")
    parser.add_argument("sources", metavar="SOURCE", nargs="*",
                        help="image files, folders (searched recursively for .jpg, .jpeg, "
                             ".png, .bmp, .gif, .webp) or glob patterns (quote them)")
    parser.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                        help="where predictions.json, the annotated images or the GIF go "
                             f"(default: ./{DEFAULT_OUTPUT}; created if needed, files of the "
                             "same name replaced)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no line per image; the summary only")
    add_option_flags(parser, PredictOptions)
    parser.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgeline.components.predict.loading import is_policy_dir
    from edgeline.pipeline.errors import UserError

    options = options_from_flags(args, PredictOptions, "predict")
    if is_policy_dir(Path(args.model)):
        if args.sources:
            raise UserError(f"Received: SOURCE {args.sources[0]!r}; a Policy plays episodes "
                            "and takes no SOURCE (use --episodes and --seed)")
        return _play(args, options)
    from edgeline.components.predict import core

    result = core.run(model_path=args.model, sources=args.sources, options=options,
                      output_dir=args.output, quiet=args.quiet)
    for path, reason in result.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    drawn = f" and {result.annotated} annotated image(s)" if result.annotated else ""
    print(f"predict: {result.predicted} predicted, {len(result.skipped)} skipped of "
          f"{result.given} given; {core.PREDICTIONS_FILE}{drawn} in {result.output_dir}")
    return 0


def _play(args: argparse.Namespace, options: PredictOptions) -> int:
    import statistics

    from edgeline.components.predict import policy

    result = policy.play(args.model, options=options, output_dir=args.output,
                         log=(lambda message: None) if args.quiet else None)
    if not args.quiet:
        for seed, value in zip(result.seeds, result.returns):
            print(f"episode seed {seed}: return {value:g}")
    print(f"predict: {len(result.returns)} episode(s) of {result.environment}, mean return "
          f"{statistics.fmean(result.returns):g}; the first ({result.first_episode_steps} "
          f"steps, return {result.first_episode_return:g}) drawn in {result.gif_path} "
          f"({result.gif_frames} frames), returns in {result.episodes_path}")
    return 0
