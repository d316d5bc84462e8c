"""``edgeline ingest imagenet|coco ...``: the ingest stage on its own.

    edgeline ingest imagenet SOURCE --output DIR [--val-labels FILE] [--train-shards N]
                    [--val-shards N] [--workers N] [--runner NAME] [beam options]
    edgeline ingest coco --images DIR --annotations FILE --output DIR [...]

The output is a published Examples artifact (artifact.json included), written aside and
renamed into place, so DIR holds either a whole result or nothing new. A run that was killed
leaves its hidden staging folder beside DIR (``.DIR.tmp-<pid>-<hex>``); the next run for DIR
removes those whose writer is gone.
"""

from __future__ import annotations

import argparse
import os

from edgeline.pipeline.standalone import add_publishing_flags

DESCRIPTION = ("Ingest a dataset with an Apache Beam pipeline into TFRecord shards that "
               "edgeline, TF Model Garden, the TF Object Detection API and "
               "tfds.builder_from_directory read.")
BEAM_EPILOG = (
    "Any other --flag is passed to Apache Beam's PipelineOptions, e.g. "
    "--runner DataflowRunner --project P --region R --temp_location gs://B/tmp "
    "(SOURCE and DIR must then be on a file system every worker mounts); put them after the "
    "edgeline options, --flag=value is the safest form. "
    "Exit codes: 0 done, 2 bad input (one line says what), 1 internal failure."
)


class _BeamPassThroughParser(argparse.ArgumentParser):
    """Collects the flags it does not know into ``beam_args`` for Beam, instead of failing;
    a usage error is one line and exit code 2, as everywhere in edgeline."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.beam_args = [*getattr(namespace, "beam_args", []), *extras]
        return namespace, []


# The options given as paths, each with its own flag and check below, and the ones that are
# not flags (the subcommand is the format; unknown flags are the Beam options).
PATH_OPTIONS = ("source", "val_labels", "class_names", "images", "annotations", "val_images",
                "val_annotations")
NOT_FLAGS = (*PATH_OPTIONS, "format", "beam_options")


def _add_common(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    from edgeline.components.ingest.options import IngestOptions
    from edgeline.pipeline.flags import Flag, add_option_flags

    add_publishing_flags(parser, "the shards, labels.txt, rejected.jsonl and artifact.json")
    add_option_flags(parser, IngestOptions, {"reencode_quality": Flag("--quality")},
                     exclude=(*NOT_FLAGS, *exclude))
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    ingest = subparsers.add_parser(
        "ingest",
        help="turn an ImageNet folder/tars or a COCO set into sharded TFRecords (Beam)",
        description=DESCRIPTION,
    )
    formats = ingest.add_subparsers(dest="ingest_format", metavar="FORMAT",
                                    parser_class=_BeamPassThroughParser)
    formats.required = True

    imagenet = formats.add_parser(
        "imagenet",
        help="an ImageNet-layout folder or the official ILSVRC-2012 tars",
        description=(
            "SOURCE is a folder holding train/<wnid>/*.JPEG and val/ (flat files labelled by a "
            "ground-truth file, or val/<wnid>/), a train folder itself (<wnid>/*.JPEG), or a "
            "folder holding ILSVRC2012_img_train.tar and/or ILSVRC2012_img_val.tar, read in "
            "place with no extraction. Images are checked by content: CMYK, grayscale and "
            "non-JPEG files are re-encoded as RGB JPEG, broken files are rejected and listed "
            "in rejected.jsonl."
        ),
        epilog=BEAM_EPILOG,
    )
    imagenet.add_argument("source", metavar="SOURCE",
                          help="the dataset folder (or builtin:classification for demo data)")
    imagenet.add_argument("--val-labels", metavar="FILE",
                          help="validation ground truth: a filename,wnid CSV, matched by the "
                               "number in ILSVRC2012_val_XXXXXXXX names (default: the "
                               "validation_labels.txt that tensorflow-datasets ships)")
    imagenet.add_argument("--class-names", metavar="FILE",
                          help="'wnid text' lines naming the classes (default: "
                               "LOC_synset_mapping.txt or synset_words.txt in SOURCE, else the "
                               "wnid)")
    _add_common(imagenet, exclude=("split",))
    imagenet.set_defaults(func=_cmd_ingest)

    coco = formats.add_parser(
        "coco",
        help="a COCO-format detection set (images + annotations JSON)",
        description=(
            "Boxes become normalized corners; category ids and names, iscrowd and area are "
            "kept; image/source_id is the COCO image id. The ground truth of the written "
            "images is saved as <split>_annotations.json for the evaluator."
        ),
        epilog=BEAM_EPILOG,
    )
    coco.add_argument("--images", metavar="DIR", help="the image folder of the split")
    coco.add_argument("--annotations", metavar="FILE", help="the split's COCO JSON")
    coco.add_argument("--val-images", metavar="DIR", help="the validation split's image folder")
    coco.add_argument("--val-annotations", metavar="FILE",
                      help="the validation split's COCO JSON")
    coco.add_argument("--source", metavar="DIR",
                      help="instead of the above: a folder with images/, train.json and/or "
                           "val.json (or builtin:detection for demo data)")
    _add_common(coco)
    coco.set_defaults(func=_cmd_ingest)


def _options_data(args: argparse.Namespace) -> dict:
    from edgeline.pipeline.errors import UserError
    from edgeline.pipeline.flags import given_options

    data = {**given_options(args), "format": args.ingest_format,
            "beam_options": list(args.beam_args)}
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        if not value.startswith("builtin:") and not os.path.exists(value):
            label = "ingest source" if name == "source" else f"--{name.replace('_', '-')}"
            raise UserError(f"{label} does not exist: {value!r}")
        data[name] = value if value.startswith("builtin:") else os.path.abspath(value)
    return data


def _cmd_ingest(args: argparse.Namespace) -> int:
    import dataclasses

    from edgeline.components.ingest import core
    from edgeline.components.ingest.options import IngestOptions
    from edgeline.components.ingest.stage import STAGES
    from edgeline.pipeline.config import parse_dataclass
    from edgeline.pipeline.standalone import run_one_step

    options = parse_dataclass(IngestOptions, _options_data(args), "ingest")
    progress = not args.no_progress  # a bar in a terminal, else plain lines

    def run(context):  # the stage's own run, with the command's progress bar
        return core.run(context.options, context.output_dir, cache_dir=context.cache_dir,
                        seed=context.seed, progress=progress)

    outcome = run_one_step(dataclasses.replace(STAGES[0], run=run), options, inputs={},
                           output=args.output, overwrite=args.overwrite,
                           runs_dir=args.runs_dir, force=args.force)
    artifact = outcome.artifact
    for split, counts in artifact.properties["splits"].items():
        boxes = (f"  boxes dropped {counts['boxes_dropped']} fixed {counts['boxes_fixed']}"
                 if "boxes_dropped" in counts else "")
        print(f"{split:<10} seen {counts['seen']:>8}  written {counts['written']:>8}  "
              f"fixed {counts['fixed']:>6}  rejected {counts['rejected']:>6}  "
              f"shards {counts['shards']}{boxes}")
    how = "cached, no work done" if outcome.cached else f"{artifact.metrics['seconds']:.1f}s"
    print(f"wrote {artifact.uri} ({how}); rejected files are listed in "
          f"{artifact.path / 'rejected.jsonl'}")
    print(outcome.details())
    return 0
