"""MODEL -> something that maps one image to the model's outputs, and what they mean.

What ``edgeline predict`` accepts, and where it learns the task, the labels and the input:

    a Model artifact (train, compress)   model.keras; preprocessing.json; labels.txt
    a SavedModel directory               serving_default; preprocessing.json and labels.txt in
                                         it or beside it (a Model artifact's saved_model/)
    a TFLiteModel artifact, a .tflite    export.json (task, preprocessing, whether it is
                                         inside), labels.txt, category_ids.txt beside it; or,
                                         for a bare file, labels.txt in its TFLite Model
                                         Metadata (a zip appended to the flatbuffer), the task
                                         from its outputs (four: a detector), the input size
                                         from its input tensor

A model either takes uint8 pixels (an export with the preprocessing inside, every exported
detector) or normalized floats ``(pixels / 255 - mean) / std``; a float input with nothing
saying its mean and std is refused rather than guessed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.common.artifact_types.policy import DESCRIPTION_FILE as POLICY_FILE
from edgeline.common.artifact_types.policy import SAVED_POLICY_DIR
from edgeline.common.artifact_types.tflite_model import (
    CATEGORY_IDS_FILE,
    LABELS_FILE,
    REPORT_FILE,
    TFLITE_FILE,
)
from edgeline.models.io import PREPROCESSING_FILE, ModelDirError, Preprocessing
from edgeline.pipeline.errors import UserError

# The SSD order of an exported detector's outputs (components/export/detection.py), which apps
# that read outputs by position rely on.
DETECTION_OUTPUTS = ("detection_boxes", "detection_classes", "detection_scores",
                     "num_detections")
NOT_A_MODEL = ("expected a Model artifact, a SavedModel directory, a .tflite file (or a "
               "TFLiteModel artifact) or a Policy artifact")


@dataclasses.dataclass(frozen=True)
class ImageModel:
    """A model ready to predict, and what its input and outputs mean.

    Attributes:
      path: the file or directory the network was loaded from.
      form: ``keras``, ``saved_model`` or ``tflite``.
      preprocessing: input size, resize method, crop and normalization (detectors: no crop).
      takes_pixels: the model takes uint8 RGB pixels (normalization inside); else normalized
        float32.
      labels: display name of each output class.
      category_ids: detectors: the dataset category id of each output class.
      run: one batch ``(1, H, W, 3)`` -> ``{output name: numpy array}``.
      notes: what had to be assumed, to print (a bare ``.tflite``'s labels, its crop).
    """

    path: Path
    form: str
    preprocessing: Preprocessing
    takes_pixels: bool
    labels: tuple[str, ...]
    category_ids: tuple[int, ...] | None
    run: Callable[[np.ndarray], dict[str, np.ndarray]]
    notes: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return self.preprocessing.task


def is_policy_dir(path: Path) -> bool:
    """A Policy artifact (rl output): ``saved_policy/`` beside ``policy.json`` or an
    ``artifact.json`` of type Policy."""
    if not (path / SAVED_POLICY_DIR).is_dir():
        return False
    if (path / POLICY_FILE).is_file():
        return True
    try:
        return json.loads((path / "artifact.json").read_text(encoding="utf-8"))["type"] == "Policy"
    except (OSError, KeyError, TypeError, ValueError):
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _preprocessing(data: Any, where: Path) -> Preprocessing:
    try:
        return Preprocessing.from_json(data)
    except (ModelDirError, TypeError, ValueError) as err:
        raise UserError(f"{where}: unreadable preprocessing ({err})") from None


def _label_lines(path: Path) -> tuple[str, ...] | None:
    """Display names from a labels file: the text after a wnid or category id and a tab."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.split("\t", 1)[-1] for line in lines if line.strip())


def _for_detection(preprocessing: Preprocessing) -> Preprocessing:
    """Detectors see the whole image (the detection evaluation convention): no crop."""
    if preprocessing.task == "detection":
        return dataclasses.replace(preprocessing, crop_fraction=1.0)
    return preprocessing


def model_location(path: str | os.PathLike) -> tuple[str, Path]:
    """(form, the file or directory to load) of the model at ``path``, from its layout alone
    (nothing heavy is loaded); :class:`UserError` if it is no model."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Received: MODEL={os.fspath(path)!r}; no such file or directory")
    if path.is_dir() and (path / TFLITE_FILE).is_file():
        return "tflite", path / TFLITE_FILE
    if path.is_dir() and (path / "model.keras").is_file():
        return "keras", path
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model", path
    if path.is_file() and path.suffix == ".tflite":
        return "tflite", path
    if path.is_file() and path.suffix == ".keras":
        return "keras", path.parent
    raise UserError(f"Received: MODEL={os.fspath(path)!r}; not a model: {NOT_A_MODEL}")


def load_image_model(path: str | os.PathLike, *, num_threads: int = 1) -> ImageModel:
    """The model at ``path`` (see the module docstring); :class:`UserError` if it is none."""
    form, location = model_location(path)
    if form == "tflite":
        return _tflite_model(location, num_threads)
    return _keras_model(location) if form == "keras" else _saved_model(location)


def _as_output_dict(outputs, names=None) -> dict[str, np.ndarray]:
    """A network's output (a tensor, a list or a dict) -> ``{name: float32 numpy}``."""
    if isinstance(outputs, dict):
        return {str(k): np.asarray(v, np.float32) for k, v in outputs.items()}
    if isinstance(outputs, list | tuple):
        names = list(names or [])
        keys = names if len(names) == len(outputs) else [f"output_{i}" for i in
                                                          range(len(outputs))]
        return {k: np.asarray(v, np.float32) for k, v in zip(keys, outputs)}
    return {"outputs": np.asarray(outputs, np.float32)}


def _keras_model(directory: Path) -> ImageModel:
    import tensorflow as tf

    from edgeline.models.io import load_model_dir

    try:
        model_dir = load_model_dir(directory)
        network = model_dir.load_keras()
    except ModelDirError as err:
        raise UserError(str(err)) from None
    names = getattr(network, "output_names", None)

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return _as_output_dict(network(tf.constant(batch, tf.float32), training=False), names)

    preprocessing = model_dir.preprocessing
    return ImageModel(path=model_dir.keras_path, form="keras",
                      preprocessing=_for_detection(preprocessing), takes_pixels=False,
                      labels=tuple(model_dir.label_names),
                      category_ids=preprocessing.category_ids, run=run)


def _saved_model(directory: Path) -> ImageModel:
    """A SavedModel's ``serving_default``; its preprocessing.json and labels.txt are in the
    directory or beside it (a Model artifact's ``saved_model/``)."""
    import tensorflow as tf

    info = directory if (directory / PREPROCESSING_FILE).is_file() else directory.parent
    if not (info / PREPROCESSING_FILE).is_file():
        raise UserError(f"{directory}: a SavedModel with no {PREPROCESSING_FILE} in it or "
                        "beside it: its task, input size and normalization cannot be known "
                        "(pass the Model artifact directory instead)")
    preprocessing = _preprocessing(_read_json(info / PREPROCESSING_FILE), info)
    try:
        loaded = tf.saved_model.load(str(directory))
        function = loaded.signatures["serving_default"]
    except Exception as err:  # noqa: BLE001  (protobuf, TF and OS errors alike)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"{directory}: not a readable SavedModel with a serving_default "
                        f"signature ({type(err).__name__}: {first})") from None
    _, kwargs = function.structured_input_signature
    if len(kwargs) != 1:
        raise UserError(f"{directory}: serving_default takes {len(kwargs)} inputs; expected "
                        "one image tensor")
    (input_name,) = kwargs

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        # ``loaded`` is held by this closure: the signature needs its variables alive.
        outputs = loaded.signatures["serving_default"](
            **{input_name: tf.constant(batch, tf.float32)})
        return _as_output_dict(dict(sorted(outputs.items())))

    labels = _label_lines(info / LABELS_FILE) or ()
    return ImageModel(path=directory, form="saved_model",
                      preprocessing=_for_detection(preprocessing), takes_pixels=False,
                      labels=labels, category_ids=preprocessing.category_ids, run=run)


def metadata_labels(model_content: bytes) -> tuple[str, ...] | None:
    """``labels.txt`` from a ``.tflite``'s TFLite Model Metadata: its associated files are a
    zip archive appended to the flatbuffer, which ``zipfile`` finds from the end of the bytes
    (the flatbuffer before it reads as a preamble)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(model_content))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    chosen = [n for n in names if Path(n).name == LABELS_FILE] or [
        n for n in names if "label" in Path(n).name.lower() and n.endswith(".txt")]
    if not chosen:
        return None
    try:
        text = archive.read(chosen[0]).decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, ValueError):
        return None
    return tuple(line.split("\t", 1)[-1] for line in text.splitlines() if line.strip())


def _described_preprocessing(folder: Path) -> tuple[Preprocessing | None, bool, dict]:
    """(preprocessing, whether it is inside the graph, export.json) of a ``.tflite`` from the
    files beside it: export.json (an export artifact) or preprocessing.json."""
    if (folder / REPORT_FILE).is_file():
        report = _read_json(folder / REPORT_FILE)
        if "preprocessing" in report:
            return (_preprocessing(report["preprocessing"], folder / REPORT_FILE),
                    bool(report.get("preprocessing_inside", False)), report)
    if (folder / PREPROCESSING_FILE).is_file():
        data = _read_json(folder / PREPROCESSING_FILE)
        return _preprocessing(data, folder / PREPROCESSING_FILE), False, {}
    return None, False, {}


def _category_ids(folder: Path, report: dict, preprocessing: Preprocessing
                  ) -> tuple[int, ...] | None:
    path = folder / CATEGORY_IDS_FILE
    try:
        if path.is_file():
            return tuple(int(line) for line in path.read_text(encoding="utf-8").split())
    except ValueError:
        raise UserError(f"{path}: expected one integer category id a line") from None
    from_report = (report.get("detection") or {}).get("category_ids")
    if from_report:
        return tuple(int(c) for c in from_report)
    return preprocessing.category_ids or None


def _tflite_model(path: Path, num_threads: int) -> ImageModel:
    from edgeline.common.litert import LiteRTModel

    runtime = LiteRTModel(path, num_threads=num_threads)
    inputs, output_names = runtime.input_details, runtime.output_names
    if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
        raise UserError(f"{path}: takes {len(inputs)} input(s) of shape "
                        f"{[i['shape'] for i in inputs]}; expected one image (1, H, W, 3)")
    (tensor,) = inputs
    pixel_input = tensor["dtype"] == "uint8" and tensor["quantization"] is None
    preprocessing, inside, report = _described_preprocessing(path.parent)
    notes = []
    if preprocessing is None:
        if not pixel_input:
            raise UserError(
                f"{path}: takes {tensor['dtype']} input, and no export.json or "
                f"{PREPROCESSING_FILE} beside it says how pixels are normalized for it (mean, "
                "std); export with --include-preprocessing (uint8 pixels in), or keep the "
                "export's files beside the .tflite")
        task = "detection" if len(output_names) == 4 else "classification"
        preprocessing = Preprocessing(task=task, input_size=tuple(tensor["shape"][1:3]),
                                      crop_fraction=1.0,
                                      category_ids=() if task == "detection" else None)
        notes.append(f"no export.json beside {path.name}: a {task} model (it has "
                     f"{len(output_names)} output(s)), fed the whole image resized to "
                     f"{tensor['shape'][1]}x{tensor['shape'][2]}")
    labels = _label_lines(path.parent / LABELS_FILE)
    if labels is None:
        labels = metadata_labels(runtime.model_content)
        notes.append("labels from the file's TFLite Model Metadata" if labels else
                     "no labels.txt beside it or in its metadata: labels are class indices")

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(output_names, runtime.invoke(batch)))

    return ImageModel(path=path, form="tflite", preprocessing=_for_detection(preprocessing),
                      takes_pixels=inside or pixel_input, labels=labels or (),
                      category_ids=_category_ids(path.parent, report, preprocessing),
                      run=run, notes=tuple(notes))
