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

from edgeline.components.export.options import DEFAULT_MAX_METRIC_DROP


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
    tflite.add_argument("--output", required=True, metavar="DIR",
                        help="where model.tflite, labels.txt and export.json go: a new or "
                        "empty folder, or an earlier edgeline output with --overwrite")
    tflite.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds an earlier edgeline output (swapped only "
                        "once the new export is complete)")
    tflite.add_argument(
        "--quantize", choices=("none", "float16", "dynamic", "int8"), default="none",
        help="none: float32; float16: float16 weights (half size); dynamic: int8 weights, "
             "float activations; int8: full integer, calibrated on --representative-size "
             "training images (or a QAT model's own ranges). Default: none",
    )
    tflite.add_argument("--examples", metavar="DIR",
                        help="the Examples artifact the model was trained on: its train split "
                             "calibrates int8, its validation split feeds the parity gate")
    tflite.add_argument("--io-type", choices=("float32", "int8"), default="float32",
                        help="int8 (with --quantize int8): integer inputs/outputs, their scale "
                             "and zero point in export.json (default: float32)")
    tflite.add_argument("--include-preprocessing", action="store_true",
                        help="take uint8 RGB pixels and normalize inside the model, so an app "
                             "feeds camera pixels directly (detectors always do)")
    tflite.add_argument("--per-tensor-weights", action="store_true",
                        help="int8 weights with one scale per tensor instead of per output "
                             "channel: a smaller file for narrow networks, judged by the "
                             "parity gate")
    tflite.add_argument("--source", choices=("auto", "keras", "saved_model"), default="auto",
                        help="convert model.keras or saved_model/ (auto: Keras, else the "
                             "SavedModel)")
    tflite.add_argument("--representative-size", type=int, default=300, metavar="N",
                        help="calibration images for int8 (default: 300)")
    tflite.add_argument("--representative-split", default="train", metavar="SPLIT",
                        help="split the calibration images come from (default: train)")
    tflite.add_argument("--parity-split", default="validation", metavar="SPLIT",
                        help="held-out split of the parity gate (default: validation)")
    tflite.add_argument("--parity-size", type=int, default=500, metavar="N",
                        help="held-out images the gate runs, at most (default: 500)")
    tflite.add_argument("--float-tolerance", type=float, default=1e-4, metavar="X",
                        help="float32 classifiers: largest allowed |p_tflite - p_keras| on "
                             "class probabilities (default: 1e-4)")
    tflite.add_argument("--float-map-tolerance", type=float, default=0.01, metavar="X",
                        help="float32 detectors: largest allowed COCO mAP difference "
                             "(default: 0.01)")
    tflite.add_argument(
        "--max-metric-drop", type=float, metavar="X",
        help="quantized exports: largest allowed drop of top-1 (classifiers) or COCO mAP "
             "(detectors) against the source model (default: "
             + ", ".join(f"{v} for {k}" for k, v in DEFAULT_MAX_METRIC_DROP.items()) + ")",
    )
    tflite.add_argument(
        "--max-relative-metric-drop", type=float, metavar="F",
        help="quantized exports: largest allowed drop as a fraction of the source's metric "
             "(0.05: keep at least 95%%); applies together with --max-metric-drop")
    tflite.add_argument("--max-detections", type=int, metavar="K",
                        help="detection slots of an exported detector (default: the model's)")
    tflite.add_argument("--latency-runs", type=int, default=30, metavar="N",
                        help="timed LiteRT runs; the median is reported (default: 30)")
    tflite.add_argument("--latency-warmup", type=int, default=5, metavar="N",
                        help="untimed runs before timing (default: 5)")
    tflite.add_argument("--no-latency", action="store_true", help="skip the latency figures")
    tflite.add_argument("--no-parity-check", action="store_true",
                        help="skip the parity gate (export.json then says it was not checked)")
    tflite.add_argument("--seed", type=int, default=0, help="picks the calibration images")
    tflite.add_argument("--json", action="store_true", help="print export.json to stdout")
    tflite.set_defaults(func=_cmd_tflite)


def _options(args: argparse.Namespace):
    from edgeline.components.export.options import ExportOptions
    from edgeline.pipeline.errors import UserError

    try:
        return ExportOptions(
            quantize=args.quantize, io_type=args.io_type,
            include_preprocessing=args.include_preprocessing, source=args.source,
            per_channel_weights=not args.per_tensor_weights,
            representative_size=args.representative_size,
            representative_split=args.representative_split, parity_split=args.parity_split,
            parity_size=args.parity_size, float_tolerance=args.float_tolerance,
            float_map_tolerance=args.float_map_tolerance, max_metric_drop=args.max_metric_drop,
            max_relative_metric_drop=args.max_relative_metric_drop,
            max_detections=args.max_detections, latency_warmup=args.latency_warmup,
            latency_runs=args.latency_runs, measure_latency=not args.no_latency,
            check_parity=not args.no_parity_check,
        )
    except ValueError as err:
        raise UserError(str(err)) from None


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
    from pathlib import Path

    from edgeline.components.export import core
    from edgeline.pipeline import artifacts
    from edgeline.pipeline.config import to_plain

    options = _options(args)
    output = Path(args.output).absolute()
    artifacts.check_output_dir(output, args.overwrite)
    artifacts.verify_input(args.model, "MODEL")
    artifacts.verify_input(args.examples, "--examples")
    inputs = {"model": artifacts.input_identity(args.model)}
    if args.examples:
        inputs["examples"] = artifacts.input_identity(args.examples)
    # Written aside, published whole: a failed gate still publishes its figures and files
    # (exit 1), a crash leaves the previous output as it was.
    failed = None
    with artifacts.writing_output(output) as staging:
        try:
            result = core.run(model_dir=args.model, output_dir=staging, options=options,
                              examples_dir=args.examples, seed=args.seed,
                              log=lambda message: print(message, file=sys.stderr, flush=True))
        except core.ParityGateFailed as gate:
            failed, result = gate, gate.result
        artifacts.publish(
            staging, output, type="TFLiteModel", producer="cli:export",
            fingerprint=artifacts.fingerprint("export", to_plain(options), inputs,
                                              {"seed": args.seed}),
            inputs=inputs, properties={"parity_passed": failed is None},
            metrics={k: v for k, v in result.report["parity"].items()
                     if isinstance(v, int | float) and not isinstance(v, bool)},
            replace=args.overwrite)
    if failed is not None:
        _print_summary(result.report)
        print(f"edgeline: {failed}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        _print_summary(result.report)
        parity = result.report["parity"]
        if parity.get("checked"):
            print(f"  {core.describe_gate(parity, options.quantize)}")
        else:
            print("  parity: not checked (--no-parity-check)")
    return 0
