"""The Model artifact on disk: written and read only through this module.

A Model directory holds::

    model.keras          the tf_keras model (native format, float32, no optimizer)
    saved_model/         a SavedModel of the same network with a ``serving_default`` signature
                         (a plain module holding the variables and that function: load the
                         Keras model from model.keras, serve or convert from here)
    labels.txt           one class per line in output order (``wnid<TAB>text`` for ImageNet-style
                         sets, ``category_id<TAB>name`` for detection), as the Examples had it
    preprocessing.json   what a caller must do to pixels before the network sees them
    history.json         the training history, one list per metric, one value per epoch

``preprocessing.json`` has ``task``, ``input_size`` ``[height, width]``, ``mean`` and ``std``
(applied as ``(pixels / 255 - mean) / std`` on RGB), ``resize`` (the ``tf.image.resize``
method), ``crop_fraction`` (the evaluation-time center crop; 1.0 means none), and for
detectors ``category_ids`` (output index -> dataset category id) and ``decoding`` (the
detector's decoding settings). Evaluate and export read it instead of guessing.

The Keras model takes float32 preprocessed images ``(N, H, W, 3)``; the SavedModel's
``serving_default`` takes the same tensor under the name ``images`` and returns float32.

Errors are :class:`ModelDirError` (a ``ValueError``) naming the directory and what is wrong;
the stages turn them into their user-facing errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
LABELS_FILE = "labels.txt"
PREPROCESSING_FILE = "preprocessing.json"
HISTORY_FILE = "history.json"
SERVING_INPUT = "images"
TASKS = ("classification", "detection")
RESIZE_METHODS = ("bilinear", "bicubic", "area", "nearest", "lanczos3", "gaussian")

# ImageNet channel statistics (RGB, on pixels scaled to [0, 1]), as torchvision and Keras
# Applications' "torch" mode use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModelDirError(ValueError):
    """A directory that is not a complete, readable Model artifact, or bad save arguments."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the network expects of its input; the contents of ``preprocessing.json``.

    Attributes:
      task: ``"classification"`` or ``"detection"``.
      input_size: ``(height, width)`` of the network's input.
      mean, std: per-channel RGB statistics: the network sees ``(pixels / 255 - mean) / std``.
      resize: the ``tf.image.resize`` method used to reach ``input_size``.
      crop_fraction: evaluation-time center crop, as a fraction of the shorter side, taken
        before the resize (0.875 is the 224/256 convention of Szegedy et al., 2015); 1.0 keeps
        the whole image (the detection convention).
      category_ids: detectors only: the dataset category id of each output class.
      decoding: detectors only: the settings that turn the network's outputs into boxes.
    """

    task: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "bilinear"
    crop_fraction: float = 0.875
    category_ids: tuple[int, ...] | None = None
    decoding: Mapping[str, Any] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ModelDirError(f"Received: task={self.task!r}; task must be one of {TASKS}")
        if len(self.input_size) != 2 or any(int(s) < 1 for s in self.input_size):
            raise ModelDirError(
                f"Received: input_size={self.input_size!r}; expected [height, width] >= 1"
            )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != 3 or not all(math.isfinite(float(v)) for v in value):
                raise ModelDirError(f"Received: {name}={value!r}; expected 3 finite numbers")
        if any(float(s) <= 0 for s in self.std):
            raise ModelDirError(f"Received: std={self.std!r}; every std must be > 0")
        if self.resize not in RESIZE_METHODS:
            raise ModelDirError(
                f"Received: resize={self.resize!r}; resize must be one of {RESIZE_METHODS}"
            )
        if not 0.0 < float(self.crop_fraction) <= 1.0:
            raise ModelDirError(
                f"Received: crop_fraction={self.crop_fraction}; it must be in (0, 1]"
            )
        if self.task == "detection" and self.category_ids is None:
            raise ModelDirError("Received: category_ids=None; a detector needs its category ids")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "task": self.task,
            "input_size": [int(s) for s in self.input_size],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "resize": self.resize,
            "crop_fraction": float(self.crop_fraction),
        }
        if self.category_ids is not None:
            data["category_ids"] = [int(c) for c in self.category_ids]
        if self.decoding is not None:
            data["decoding"] = json.loads(json.dumps(dict(self.decoding)))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessing:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelDirError(f"preprocessing: unknown key {unknown[0]!r}")
        missing = [k for k in ("task", "input_size") if k not in data]
        if missing:
            raise ModelDirError(f"preprocessing: required key {missing[0]!r} is missing")
        values = dict(data)
        values["input_size"] = tuple(int(s) for s in values["input_size"])
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if values.get("category_ids") is not None:
            values["category_ids"] = tuple(int(c) for c in values["category_ids"])
        return cls(**values)

    def normalize(self, pixels):
        """``(pixels / 255 - mean) / std`` on float or uint8 RGB pixels in [0, 255]."""
        import tensorflow as tf

        pixels = tf.cast(pixels, tf.float32)
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)
        return (pixels / 255.0 - mean) / std


@dataclasses.dataclass(frozen=True)
class ModelDir:
    """A Model artifact read back: its small files eagerly, the networks on demand."""

    directory: Path
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    history: dict[str, Any]

    @property
    def keras_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def saved_model_path(self) -> Path:
        return self.directory / SAVED_MODEL_DIR

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def label_names(self) -> list[str]:
        """The human-readable name of each class (the text after the tab, if any)."""
        return [line.split("\t", 1)[-1] for line in self.labels]

    def load_keras(self, compile: bool = False):
        """The tf_keras model (custom layers come from the ``edgeline`` package)."""
        import edgeline.models  # noqa: F401  (registers the custom layers)

        keras = _keras()
        _import_custom_layers()
        try:
            return keras.models.load_model(str(self.keras_path), compile=compile)
        except Exception as err:  # noqa: BLE001  (a damaged .keras zip: BadZipFile, OSError...)
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise ModelDirError(f"{self.keras_path}: cannot load the Keras model "
                                f"({type(err).__name__}: {first})") from None

    def load_saved_model(self):
        import tensorflow as tf

        return tf.saved_model.load(str(self.saved_model_path))


def _keras():
    import tf_keras

    import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

    return tf_keras


def _import_custom_layers() -> None:
    """Modules whose import registers serializable layers; missing ones are skipped."""
    import importlib
    import importlib.util

    for name in ("edgeline.models.layers", "edgeline.models.detector"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def _serving_module(model, input_size: Sequence[int]):
    """A ``tf.Module`` holding the network's variables and ``serving_default``: float32
    images in, a dict of float32 outputs out.

    The outputs are cast to float32 so a model built under a mixed-precision policy serves the
    same dtypes as a float32 one. A plain module rather than Keras' own SavedModel format:
    that one traces every layer's call functions as well, which takes minutes for a large
    network, and the Keras model is already in ``model.keras``.
    """
    import tensorflow as tf

    spec = tf.TensorSpec([None, int(input_size[0]), int(input_size[1]), 3], tf.float32,
                         name=SERVING_INPUT)
    names = list(getattr(model, "output_names", None) or [])

    def serve(images):
        outputs = model(images, training=False)
        if isinstance(outputs, Mapping):
            return {str(k): tf.cast(v, tf.float32) for k, v in outputs.items()}
        if isinstance(outputs, list | tuple):
            keys = names if len(names) == len(outputs) else [
                f"output_{i}" for i in range(len(outputs))]
            return {k: tf.cast(v, tf.float32) for k, v in zip(keys, outputs)}
        return {"outputs": tf.cast(outputs, tf.float32)}

    module = tf.Module(name="serving")
    module.model_variables = list(model.variables)
    module.serve = tf.function(serve, input_signature=[spec], autograph=False)
    return module


def save_model_dir(
    directory: str | os.PathLike,
    *,
    model,
    labels: Sequence[str],
    preprocessing: Preprocessing,
    history: Mapping[str, Any] | None = None,
) -> ModelDir:
    """Writes a Model artifact into ``directory`` (created if needed; existing files of the
    layout are replaced).

    ``model`` should be the float32 network (the train stage rebuilds a mixed-precision model
    under the float32 policy before saving); it is saved without its optimizer.
    """
    directory = Path(directory)
    labels = [str(label) for label in labels]
    if not labels or any("\n" in label or not label.strip() for label in labels):
        raise ModelDirError(f"Received: labels={labels[:3]!r}...; expected non-empty lines")
    if preprocessing.task == "detection" and len(preprocessing.category_ids or ()) != len(
        labels
    ):
        raise ModelDirError(
            f"Received: {len(labels)} labels and {len(preprocessing.category_ids or ())} "
            "category_ids; a detector needs one category id per label"
        )
    directory.mkdir(parents=True, exist_ok=True)
    keras_path = directory / MODEL_FILE
    if keras_path.exists():
        keras_path.unlink()
    model.save(str(keras_path), save_format="keras")
    saved_model_path = directory / SAVED_MODEL_DIR
    if saved_model_path.exists():
        shutil.rmtree(saved_model_path)
    import tensorflow as tf

    module = _serving_module(model, preprocessing.input_size)
    tf.saved_model.save(module, str(saved_model_path),
                        signatures={"serving_default": module.serve})
    (directory / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    _write_json(directory / PREPROCESSING_FILE, preprocessing.to_json())
    _write_json(directory / HISTORY_FILE, _plain(history or {}))
    return load_model_dir(directory)


def load_model_dir(directory: str | os.PathLike) -> ModelDir:
    """Reads a Model artifact; raises :class:`ModelDirError` naming what is missing or bad."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"{directory}: not a directory (expected a Model artifact)")
    for name in (MODEL_FILE, LABELS_FILE, PREPROCESSING_FILE, HISTORY_FILE):
        if not (directory / name).is_file():
            raise ModelDirError(f"{directory}: not a Model artifact ({name} is missing)")
    if not (directory / SAVED_MODEL_DIR / "saved_model.pb").is_file():
        raise ModelDirError(
            f"{directory}: not a Model artifact ({SAVED_MODEL_DIR}/saved_model.pb is missing)"
        )
    labels = tuple(
        line for line in (directory / LABELS_FILE).read_text(encoding="utf-8").splitlines()
        if line.strip()
    )
    preprocessing = Preprocessing.from_json(_read_json(directory / PREPROCESSING_FILE))
    if preprocessing.category_ids is not None and len(preprocessing.category_ids) != len(labels):
        raise ModelDirError(
            f"{directory}: {len(labels)} labels but {len(preprocessing.category_ids)} "
            "category_ids in preprocessing.json"
        )
    history = _read_json(directory / HISTORY_FILE)
    if not isinstance(history, dict):
        raise ModelDirError(f"{directory / HISTORY_FILE}: expected a JSON object")
    return ModelDir(directory=directory, labels=labels, preprocessing=preprocessing,
                    history=history)


def is_model_dir(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` has the Model layout (without loading anything heavy)."""
    directory = Path(directory)
    return (directory / MODEL_FILE).is_file() and (directory / PREPROCESSING_FILE).is_file()


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise ModelDirError(f"{path}: not valid JSON (line {err.lineno})") from None


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, allow_nan=True)
        f.write("\n")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays inside a history become plain JSON numbers and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
