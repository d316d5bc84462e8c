"""TFLite Model Metadata in the exported file, so that MediaPipe Tasks and the TFLite Task
Library load it as it is (https://ai.google.dev/edge/litert/models/metadata).

What is written:

- the model's name, description, version, author and license (:class:`ExportOptions`);
- the input: an RGB image, and the normalization the app must apply: none for uint8 pixels
  (the graph normalizes inside), else ``(pixel - 255 mean) / (255 std)`` per channel, which is
  the graph's ``(pixel / 255 - mean) / std``;
- a classifier's output: the class probabilities with ``labels.txt`` (TENSOR_AXIS_LABELS);
- a detector's four outputs by position: location (BoundingBoxProperties: [ymin, xmin, ymax,
  xmax] as ratios of the image), category (``labels.txt``, TENSOR_VALUE_LABELS, 0-based),
  score, number of detections.

The writing runs in the mobile environment's Python (:data:`MOBILE_PYTHON`), with
tflite-support's writers (:mod:`.metadata_writer` says why those). Metadata is a buffer and a
zip of the label file appended to the flatbuffer: the graph and its weights are untouched, and
LiteRT's outputs are identical with and without it (tests/components/export/test_metadata.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import edgeline
from edgeline.pipeline.errors import UserError

# Where the mobile environment's interpreter is, when not in ``.venv/mobile`` (the environment
# running edgeline, ``sys.prefix``, holds it there; ``make setup`` creates it).
MOBILE_PYTHON = "EDGELINE_MOBILE_PYTHON"
WRITER = Path(__file__).with_name("metadata_writer.py")
SETUP_HINT = ("python -m venv {prefix}/mobile && {prefix}/mobile/bin/pip install "
              "-c constraints-mobile.txt tflite-support mediapipe (make setup does it)")


def mobile_python() -> Path:
    """The mobile environment's Python, or one line saying how to make it."""
    given = os.environ.get(MOBILE_PYTHON)
    path = Path(given) if given else Path(sys.prefix) / "mobile" / "bin" / "python"
    if not path.exists():
        raise UserError(
            f"TFLite metadata is written by tflite-support, which needs an environment of its "
            f"own (it pins protobuf < 4); none at {path}: create it with "
            f"{SETUP_HINT.format(prefix=sys.prefix)}, set {MOBILE_PYTHON}, or export without "
            "metadata (--no-metadata)")
    return path


def input_normalization(preprocessing, *, pixels_in: bool) -> tuple[list[float], list[float]]:
    """NormalizationOptions' mean and std: what an app does to 0-255 pixels before the model."""
    if pixels_in:
        return [0.0], [1.0]  # uint8 pixels as they are: the graph normalizes inside
    mean = [round(255.0 * float(m), 6) for m in preprocessing.mean]
    std = [round(255.0 * float(s), 6) for s in preprocessing.std]
    # One value for all channels where they agree: MediaPipe Tasks applies only that form.
    return (mean[:1] if len(set(mean)) == 1 else mean), (std[:1] if len(set(std)) == 1 else std)


def mediapipe_refuses(written: dict[str, Any] | None) -> str | None:
    """Why MediaPipe Tasks will not load a file with this metadata, if it will not: it
    applies one mean and std to every channel (the TFLite Task Library takes per-channel
    values too)."""
    if not written:
        return "the file has no TFLite Model Metadata (exported with --no-metadata)"
    (image,) = written["subgraph_metadata"][0]["input_tensor_metadata"]
    for unit in image.get("process_units", []):
        if len(unit.get("options", {}).get("mean", [])) > 1:
            return ("MediaPipe Tasks applies one normalization to all channels and this "
                    "model's differs by channel: export with --include-preprocessing (uint8 "
                    "pixels in, normalized inside) for a file MediaPipe loads")
    return None


def general_metadata(options, *, task: str, network: str, labels: list[str]) -> dict[str, str]:
    """Name, description, version, author and license, the options' or their defaults."""
    kind = "image classifier" if task == "classification" else "object detector"
    shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
    general = {
        "name": options.model_name or f"{network} {kind}",
        "description": options.model_description or (
            f"{kind.capitalize()} of {len(labels)} classes ({shown}), exported by edgeline "
            f"({options.quantize})."),
        "version": options.model_version or f"edgeline {edgeline.__version__}",
        "author": options.model_author,
    }
    if options.model_license:
        general["licenses"] = options.model_license
    return general


def write_metadata(model_content: bytes, *, task: str, labels_path: Path, preprocessing,
                   pixels_in: bool, general: dict[str, str]) -> tuple[bytes, dict[str, Any]]:
    """``model_content`` with its metadata, and the metadata as written (for export.json)."""
    python = mobile_python()
    mean, std = input_normalization(preprocessing, pixels_in=pixels_in)
    with tempfile.TemporaryDirectory(prefix="edgeline-metadata-") as work:
        source, target = Path(work) / "in.tflite", Path(work) / "out.tflite"
        source.write_bytes(model_content)
        spec = {"model": os.fspath(source), "output": os.fspath(target), "task": task,
                "labels": os.fspath(labels_path), "norm_mean": mean, "norm_std": std,
                "general": general}
        done = subprocess.run([os.fspath(python), os.fspath(WRITER)], input=json.dumps(spec),
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"writing TFLite metadata failed ({python}): {last}")
        written = target.read_bytes()
    return written, json.loads(done.stdout)


def mediapipe_lines(task: str, model_path: str, image_path: str) -> list[str]:
    """Three lines of Python that load the file in MediaPipe Tasks and run it on an image, as
    an app's code would (the README shows them; the tests run them)."""
    task_api, call, field = (("ImageClassifier", "classify", "classifications")
                             if task == "classification" else
                             ("ObjectDetector", "detect", "detections"))
    return [
        "import mediapipe as mp",
        f"with mp.tasks.vision.{task_api}.create_from_model_path({model_path!r}) as model:",
        f"    print(model.{call}(mp.Image.create_from_file({image_path!r})).{field})",
    ]
