"""``edgeline predict``'s core: a model run on the user's own pictures, as evaluation runs it.

    SOURCE... --expand--> image files (sources.py)
        each: read, opened by PIL (a file it cannot read is skipped, with the reason)
        --decode (TF)--> (h, w, 3) uint8 --evaluation_pixels--> (H, W, 3) uint8
            (classifiers: the central crop_fraction of the shorter side; detectors: the whole
            image), normalized unless the model takes pixels
        --model--> classifier: top-k labels and scores, one row per image
                   detector:   COCO results (image_id, category_id, bbox [x, y, w, h] in the
                               original image's pixels, score) + file_name, and a copy of the
                               picture with the boxes drawn
    --> predictions.json (and the annotated pictures) in the output folder

The view of each image is the export stage's parity gate's (``evaluation_pixels``: the uint8
pixels a camera gives an app, rounded after the resize), for every form, so a Keras model and
its ``.tflite`` see the same input and the mAP of predictions.json on the validation images is
the figure the export reported for the file. The evaluate stage differs only for classifiers'
JPEG crops, by a few levels in some edge pixels (see ``edgeline.common.preprocessing``).

image_id is the file's stem when it is an integer (COCO's own file names, ``000000397133.jpg``,
give their image ids), else the stem itself, as Ultralytics writes them: no ground truth's
integer id, so ``edgeline coco-eval`` finds the image by the row's ``file_name``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.components.predict.loading import DETECTION_OUTPUTS, ImageModel
from edgeline.components.predict.options import PredictOptions
from edgeline.components.predict.sources import Given
from edgeline.pipeline.errors import UserError

PREDICTIONS_FILE = "predictions.json"


class Unreadable(Exception):
    """A given file that is not a picture we can decode; the message is the reason."""


@dataclasses.dataclass
class PredictionRun:
    """What a run did: counts, the skipped files with their reasons, and where files went."""

    given: int
    predicted: int = 0
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    output_dir: Path | None = None
    predictions_path: Path | None = None
    annotated: int = 0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def image_ids(given: Sequence[Given]) -> list[int | str]:
    """One COCO image id per given file, as Ultralytics writes them: its stem as an integer
    when it is one (COCO's own file names), else the stem itself. A string id is no image of
    any ground truth, so ``edgeline coco-eval`` finds the image by the row's ``file_name``; a
    made-up number could silently name another image. A second file with the same integer
    stem keeps its stem as a string too."""
    ids: list[int | str] = []
    taken: set[int] = set()
    for item in given:
        stem = _integer_stem(item.path)
        if stem is not None and stem not in taken:
            taken.add(stem)
            ids.append(stem)
        else:
            ids.append(item.path.stem)
    return ids


def _integer_stem(path: Path) -> int | None:
    return int(path.stem) if path.stem.isdigit() else None


def read_picture(path: Path):
    """(the encoded bytes, the picture as PIL opened it): raises :class:`Unreadable`."""
    from PIL import Image, UnidentifiedImageError

    try:
        encoded = path.read_bytes()
    except OSError as err:
        raise Unreadable(f"cannot be read ({err.strerror or err})") from None
    try:
        import io

        picture = Image.open(io.BytesIO(encoded))
        picture.load()  # a truncated file fails here, not at open
    except UnidentifiedImageError:
        raise Unreadable("not an image PIL recognizes") from None
    except (OSError, ValueError, SyntaxError) as err:  # SyntaxError: PIL's broken-PNG error
        raise Unreadable(f"a damaged image ({err})") from None
    return encoded, picture


def model_input(encoded: bytes, model: ImageModel) -> tuple[np.ndarray, tuple[int, int]]:
    """(the batch of one the model takes, (height, width) of the decoded image)."""
    import tensorflow as tf

    from edgeline.common.preprocessing import decode, evaluation_pixels, normalize

    try:
        image = decode(encoded)  # (h, w, 3) uint8
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
        reason = str(err.message).split("}}")[-1].strip().splitlines()[0]
        raise Unreadable(f"TensorFlow cannot decode it ({reason[:160]})") from None
    pixels = evaluation_pixels(image, model.preprocessing)  # (H, W, 3) uint8
    if model.takes_pixels:
        batch = pixels.numpy()[None]  # (1, H, W, 3) uint8
    else:
        batch = normalize(pixels, model.preprocessing).numpy()[None]  # (1, H, W, 3) float32
    return batch, (int(image.shape[0]), int(image.shape[1]))


def _label(model: ImageModel, class_index: int) -> str:
    return model.labels[class_index] if 0 <= class_index < len(model.labels) else str(class_index)


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Class scores as probabilities: kept when they already are (an export's softmax; int8
    dequantization leaves the sum a little off 1), else a softmax of the logits. (C,)"""
    scores = np.asarray(scores, np.float64).reshape(-1)
    if scores.min() >= 0.0 and abs(scores.sum() - 1.0) <= 0.02:
        return scores
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def classify(model: ImageModel, batch: np.ndarray, top_k: int) -> dict[str, Any]:
    """The top-k classes of one image: labels, class ids and probabilities."""
    outputs = model.run(batch)
    if len(outputs) != 1:
        raise UserError(f"{model.path}: a classifier with outputs {sorted(outputs)}; expected "
                        "one (1, classes) tensor")
    (scores,) = outputs.values()
    probability = probabilities(scores[0])  # (C,)
    best = np.argsort(-probability, kind="stable")[:top_k]  # (k,)
    return {"labels": [_label(model, int(i)) for i in best],
            "class_ids": [int(i) for i in best],
            "scores": [float(probability[i]) for i in best]}


def _decoded(model: ImageModel, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Detections of one image from the model's outputs (see ``coco_detections``): decoded
    ones as they are, matched by name, or by position in the SSD order when a bare ``.tflite``
    names them otherwise; a network's raw output decoded with its own settings."""
    from edgeline.common.coco_detections import decoded_detections

    names = " ".join(outputs).lower()
    if len(outputs) == 4 and not all(key in names for key in
                                     ("boxes", "scores", "classes", "num_detections")):
        outputs = dict(zip(DETECTION_OUTPUTS, outputs.values()))
    decoding = dict(model.preprocessing.decoding or {})
    strides = decoding.pop("strides", None)
    input_size = decoding.pop("input_size", model.preprocessing.input_size)
    return decoded_detections(outputs, input_size=input_size, decode_settings=decoding,
                              strides=strides)


def detect(model: ImageModel, batch: np.ndarray, *, image_id: int | str, size: tuple[int, int]
           ) -> tuple[list[dict[str, Any]], list[int]]:
    """COCO result rows of one image (every detection the model returns) and the class index
    of each row."""
    from edgeline.common.coco_detections import to_coco_detections

    decoded = _decoded(model, model.run(batch))
    count = int(decoded["num_detections"][0])
    classes = [int(c) for c in decoded["classes"][0, :count]]
    category_ids = model.category_ids or tuple(range(max(classes, default=0) + 1))
    rows = to_coco_detections(decoded, image_ids=[0], heights=[size[0]],
                              widths=[size[1]], category_ids=category_ids)
    for row in rows:
        row["image_id"] = image_id  # an integer stem, or the stem itself (image_ids)
    return rows, classes


def _progress(total: int, quiet: bool):
    from edgeline.pipeline import console

    # The shared console's bar in a terminal; no plain progress lines elsewhere, since each
    # image gets a line of its own (and -q asks for the summary only).
    return console.progress(total, "predict", "img", bar=False if quiet else None, lines=False)


def _classification_line(item: Given, row: dict[str, Any]) -> str:
    best = ", ".join(f"{label} {score:.3f}" for label, score in zip(row["labels"], row["scores"]))
    return f"{item.path}: {best}"


def _predict_one(model: ImageModel, item: Given, image_id: int | str, prepared, *,
                 options: PredictOptions, result: PredictionRun, taken: set[str]) -> str:
    """Predict one prepared image, keep its rows (and drawn copy); return its printed line."""
    picture, batch, size = prepared
    if model.task == "classification":
        row = {"file_name": item.path.name, "path": os.fspath(item.path),
               **classify(model, batch, options.top_k)}
        result.rows.append(row)
        return _classification_line(item, row)
    from edgeline.components.predict.drawing import draw_boxes, save_image

    rows, classes = detect(model, batch, image_id=image_id, size=size)
    shown = []
    for row, class_index in zip(rows, classes):
        row["file_name"] = item.path.name
        if row["score"] >= options.score_threshold:
            shown.append((row["bbox"], _label(model, class_index), row["score"], class_index))
    result.rows.extend(rows)
    save_image(draw_boxes(picture, shown), result.output_dir, item.path.name, taken)
    result.annotated += 1
    found = ", ".join(f"{label} {score:.2f}" for _, label, score, _ in shown)
    return f"{item.path}: {len(shown)} detection(s){': ' + found if found else ''}"


def predict_images(model: ImageModel, given: Sequence[Given], *, options: PredictOptions,
                   output_dir: str | os.PathLike, quiet: bool = False,
                   echo: Callable[[str], None] | None = None) -> PredictionRun:
    """Run ``model`` on every given image; files that cannot be read are skipped with their
    reason (predicted + skipped = given). The output folder is created at the first image
    predicted, so a run that predicts nothing leaves nothing behind."""
    result = PredictionRun(given=len(given))
    taken: set[str] = set()
    with _progress(len(given), quiet) as bar:
        write = echo or _stdout_above(bar)
        for item, image_id in zip(given, image_ids(given)):
            bar.update(1)
            try:
                if item.missing is not None:
                    raise Unreadable(item.missing)
                encoded, picture = read_picture(item.path)
                batch, size = model_input(encoded, model)
            except Unreadable as reason:
                result.skipped.append((item.path, str(reason)))
                continue
            if result.output_dir is None:
                result.output_dir = _make_output_dir(Path(output_dir))
            line = _predict_one(model, item, image_id, (picture, batch, size),
                                options=options, result=result, taken=taken)
            result.predicted += 1
            if not quiet:
                write(line)
    return result


def _stdout_above(bar) -> Callable[[str], None]:
    """A result line on stdout, above the live bar when there is one."""
    if not bar.is_bar:
        return lambda line: print(line, flush=True)
    from tqdm import tqdm

    return lambda line: tqdm.write(line, file=sys.stdout)


def _make_output_dir(output_dir: Path) -> Path:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"Received: --output={os.fspath(output_dir)!r}; cannot create it "
                        f"({err.strerror or err})") from None
    return output_dir


def write_predictions(result: PredictionRun) -> Path:
    """predictions.json: a JSON list, one row a line (COCO results for detectors)."""
    path = result.output_dir / PREDICTIONS_FILE
    body = ",\n".join(json.dumps(row) for row in result.rows)
    path.write_text(f"[\n{body}\n]\n" if body else "[]\n", encoding="utf-8")
    result.predictions_path = path
    return path


def _opens(item: Given) -> bool:
    """Whether PIL reads the file (stops at the first that does, in :func:`run`)."""
    try:
        if item.missing is None:
            read_picture(item.path)
            return True
    except Unreadable:
        pass
    return False


def _all_skipped(given: Sequence[Given]) -> PredictionRun:
    """The run in which no given file could be read: each with its reason."""
    result = PredictionRun(given=len(given))
    for item in given:
        reason = item.missing
        if reason is None:
            try:
                read_picture(item.path)
            except Unreadable as why:
                reason = str(why)
        result.skipped.append((item.path, reason or "unreadable"))
    return result


def check_output_dir(output_dir: Path) -> None:
    """--output must not be a file or a pipeline artifact (predict would write into it)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"Received: --output={os.fspath(output_dir)!r}; it is a file, not a "
                        "folder")
    if (output_dir / "artifact.json").is_file():
        raise UserError(f"Received: --output={os.fspath(output_dir)!r}; it is a pipeline "
                        "artifact: give predict a folder of its own")


def nothing_predicted(result: PredictionRun) -> UserError:
    """The one line for a run in which no given file could be predicted."""
    path, reason = result.skipped[0]
    more = f" (and {len(result.skipped) - 1} more)" if len(result.skipped) > 1 else ""
    return UserError(f"nothing could be predicted: {result.given} file(s) given, all skipped; "
                     f"{path}: {reason}{more}")


def run(*, model_path: str | os.PathLike, sources: Sequence[str | os.PathLike],
        options: PredictOptions, output_dir: str | os.PathLike, quiet: bool = False,
        echo: Callable[[str], None] | None = None,
        log: Callable[[str], None] | None = None) -> PredictionRun:
    """Predict the images ``sources`` name with the model at ``model_path``; write
    predictions.json (and, for a detector, the annotated copies) into ``output_dir``.

    Raises :class:`UserError` when the model is none, no SOURCE is given, or no file could be
    predicted (nothing is written then)."""
    from edgeline.components.predict.loading import load_image_model, model_location
    from edgeline.components.predict.sources import expand_sources

    log = log or (lambda message: print(message, file=sys.stderr))
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    model_location(model_path)  # not a model: said before anything else
    if not sources:
        raise UserError("Received: no SOURCE; give image files, folders or glob patterns")
    given = expand_sources(sources)
    if not any(_opens(item) for item in given):
        # Nothing to predict: said without loading TensorFlow and the model (whose runtimes
        # print lines of their own).
        raise nothing_predicted(_all_skipped(given))
    model = load_image_model(model_path, num_threads=options.num_threads)
    if not quiet:
        log(f"predict: {model.form} {model.task} model {model.path}, {len(given)} file(s)")
        for note in model.notes:
            log(f"predict: {note}")
    result = predict_images(model, given, options=options, output_dir=output_dir,
                            quiet=quiet, echo=echo)
    if result.predicted == 0:
        raise nothing_predicted(result)
    write_predictions(result)
    return result
