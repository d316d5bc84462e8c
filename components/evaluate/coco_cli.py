"""``edgeline coco-eval``: COCO metrics of a results file, no model, no TensorFlow.

    edgeline coco-eval GT.json DT.json [--iou-type bbox|segm] [--json] [--plots DIR]

A command people time against pycocotools, so ``edgeline`` builds this parser alone when it is
the command (see ``edgeline.cli.main``): this module imports nothing but the standard library
at load time, and the handler imports only the COCO scoring path.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add ``coco-eval`` to the ``edgeline`` parser."""
    parser = subparsers.add_parser(
        "coco-eval",
        help="COCO mAP of a detections file against COCO ground truth (pycocotools' numbers)",
        description=(
            "Score detections against COCO ground truth with the COCO detection metric: AP at "
            "IoU .50:.05:.95, AP50, AP75, AP for small/medium/large objects, AR at 1/10/100 "
            "detections per image and AR small/medium/large -- the 12 numbers of pycocotools' "
            "COCOeval.summarize(), bit for bit, computed by ultrafast-pycocotools. Prints "
            "pycocotools' 12-line summary, or JSON with --json. Exit code 2 and one line for "
            "malformed input (a detection for an image or category not in the ground truth, a "
            "negative box side, a missing or non-finite score, a file that is not JSON). "
            "Tolerated as pycocotools tolerates them: ids written as floats (3.0), ground "
            "truth without 'area' (the box's or the mask's) or 'iscrowd' (0), an empty "
            "detection list."
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
            "carry a score; an empty list is valid (all zeros). A detection may name its "
            "image by 'file_name' instead of 'image_id' (as 'edgeline predict' writes): when "
            "its image_id is absent or not in the ground truth, the image whose file_name is "
            "the same, or has the same base name (data/img/0001.jpg matches 0001.jpg), gives "
            "the id"
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
    _one_blas_thread()
    from edgeline.common.coco import evaluate_files

    # standalone: this process ends after it (edgeline.cli.console_main), so the engine's
    # handles need not be freed
    metrics = evaluate_files(args.ground_truth, args.detections, iou_type=args.iou_type,
                             standalone=True)
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


def _one_blas_thread() -> None:
    """No BLAS thread pool for this command, unless the user sized one: COCO scoring does no
    linear algebra, yet importing numpy starts OpenBLAS's pool, a thread a core, whose buffers
    cost about 0.1 s of CPU (system time) on 2 cores before anything is read, near a tenth of
    the command's CPU for 500,000 detections. Set only before numpy is first imported (a process
    that already has it, a test calling ``main``, keeps its pool)."""
    import os

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
