"""``edgeline export tflite MODEL --quantize none|float16|dynamic|int8 ...``.

    edgeline export tflite runs/artifacts/train/0123abcd --quantize int8 \
        --examples runs/artifacts/ingest/4567ef01 --include-preprocessing --output exports/int8

Writes ``model.tflite``, ``labels.txt`` (``category_ids.txt`` for detectors) and
``export.json`` into ``--output``. Exit codes: 0 exported and within its parity limits; 1 the
export does not match its source well enough (the figures are printed, the files are still
written for inspection); 2 bad input (one line says what).
"""

from __future__ import annotations

import argparse
import json
import sys

from edgeline.components.export.options import ExportOptions
from edgeline.pipeline.flags import Flag, add_option_flags, options_from_flags
from edgeline.pipeline.standalone import add_publishing_flags

# Flags whose names are not their option's (every other option is --<its name>).
FLAGS = {
    "per_channel_weights": Flag("--per-tensor-weights", negate=True),
    "measure_latency": Flag("--no-latency", negate=True),
    "check_parity": Flag("--no-parity-check", negate=True),
    "metadata": Flag("--no-metadata", negate=True),
}


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a Model artifact to a parity-checked .tflite (LiteRT)",
        description="Export a trained or compressed model for phones and microcontrollers.",
    )
    # The sub-parsers inherit edgeline's parser class: a usage error is one line, exit code 2.
    formats = export.add_subparsers(dest="export_format", metavar="FORMAT")
    formats.required = True
    tflite = formats.add_parser(
        "tflite",
        help="convert to TFLite and check it in the LiteRT interpreter",
        description=(
            "Convert MODEL (a Model artifact directory: model.keras, saved_model/, labels.txt, "
            "preprocessing.json) to a .tflite with builtin ops only, run it in LiteRT against "
            "the source model on held-out images, and measure its size and latency."
        ),
        epilog=(
            "Exit codes: 0 exported and within its parity limits; 1 the export drifts from its "
            "source beyond the limits (figures printed, files kept); 2 bad input."
        ),
    )
    tflite.add_argument("model", metavar="MODEL", help="the Model artifact directory")
    add_publishing_flags(tflite, "model.tflite, labels.txt and export.json")
    tflite.add_argument("--examples", metavar="DIR",
                        help="the Examples artifact the model was trained on: its train split "
                             "calibrates int8, its validation split feeds the parity gate")
    add_option_flags(tflite, ExportOptions, FLAGS)
    tflite.add_argument("--seed", type=int, default=0, help="picks the calibration images")
    tflite.add_argument("--json", action="store_true", help="print export.json to stdout")
    tflite.set_defaults(func=_cmd_tflite)


def _options(args: argparse.Namespace):
    return options_from_flags(args, ExportOptions, "export")


def _print_summary(report: dict) -> None:
    print(f"wrote {report['files']['model']} ({report['size_bytes']:,} bytes, "
          f"quantize={report['quantize']}), "
          f"{', '.join(v for k, v in report['files'].items() if k != 'model')} and "
          "export.json")
    for kind in ("inputs", "outputs"):
        for tensor in report[kind]:
            quantization = tensor["quantization"]
            q = (f" scale={quantization['scale']:.6g} zero_point={quantization['zero_point']}"
                 if quantization else "")
            name = tensor["signature_name"] or tensor["name"]
            print(f"  {kind[:-1]:<6} {name}: {tensor['dtype']} {tensor['shape']}{q}")
    latency = report.get("latency")
    if latency:
        print(f"  LiteRT latency (median of {latency['runs']}): {latency['threads_1_ms']:.3f} ms "
              f"on 1 thread, {latency['threads_all_ms']:.3f} ms on {latency['threads_all']}")


def _cmd_tflite(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from edgeline.components.export import core
    from edgeline.components.export.stage import STAGES
    from edgeline.pipeline import artifacts
    from edgeline.pipeline.errors import StageFailed
    from edgeline.pipeline.standalone import (
        given_artifact,
        read_json,
        refuse_foreign_output,
        run_one_step,
    )

    options = _options(args)
    output = Path(args.output).absolute()
    refuse_foreign_output(output)
    artifacts.verify_input(args.model, "MODEL")
    artifacts.verify_input(args.examples, "--examples")
    inputs = {"model": given_artifact(args.model, "Model")}
    if args.examples:
        inputs["examples"] = given_artifact(args.examples, "Examples")
    stage = STAGES[0]

    def run(context):
        try:
            return stage.run(context)
        except core.ParityGateFailed as gate:
            # Refused: not an artifact (nothing is published in the runs directory, so a rerun
            # is no cache hit), but its files and figures are kept at --output to inspect.
            _keep_refused(context.output_dir, output, gate, args.overwrite)
            _print_summary(gate.result.report)
            raise

    try:
        outcome = run_one_step(dataclasses.replace(stage, run=run), options, inputs=inputs,
                               output=output, overwrite=args.overwrite,
                               runs_dir=args.runs_dir, seed=args.seed, force=args.force)
    except StageFailed as failed:
        if isinstance(failed.cause, core.ParityGateFailed):
            print(f"edgeline: {failed.cause}", file=sys.stderr)
            return 1
        raise
    report = read_json(outcome.artifact, core.REPORT_FILE)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_summary(report)
    parity = report["parity"]
    if parity.get("checked"):
        print(f"  {core.describe_gate(parity, options.quantize)}")
    else:
        print("  parity: not checked (--no-parity-check)")
    if outcome.cached:
        print(f"  cached, no work done: {outcome.artifact.uri}")
    print(outcome.details())
    _print_how_to_try(report, output)
    return 0


def _print_how_to_try(report: dict, output) -> None:
    """The closing lines: the command that tries the file on pictures, and the MediaPipe
    Tasks lines an app runs (or why MediaPipe will not load this file)."""
    from edgeline.components.export import metadata

    model = output / report["files"]["model"]
    print(f"try it on your pictures:  edgeline predict {model} photo.jpg")
    refused = metadata.mediapipe_refuses(report.get("metadata"))
    if report["task"] not in ("classification", "detection"):
        return
    if refused:
        print(f"MediaPipe Tasks: {refused}")
        return
    print("load it in MediaPipe Tasks (pip install mediapipe, or .venv/mobile/bin/python):")
    for line in metadata.mediapipe_lines(report["task"], str(model), "photo.jpg"):
        print(f"    {line}")


def _keep_refused(written, output, gate, overwrite: bool) -> None:
    """The files of an export the parity gate refused, published at ``output`` as a
    TFLiteModel with ``parity_passed: false``."""
    import shutil

    from edgeline.pipeline import artifacts

    with artifacts.writing_output(output) as staging:
        shutil.copytree(written, staging, dirs_exist_ok=True)
        metrics = {k: v for k, v in gate.result.report["parity"].items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        artifacts.publish(staging, output, type="TFLiteModel", producer="cli:export",
                          fingerprint="refused by the parity gate", inputs={},
                          properties={"parity_passed": False}, metrics=metrics,
                          replace=overwrite)
