"""One interface to run every form of model: a Keras model, a SavedModel, a ``.tflite`` file.

    predictor = load_predictor("runs/.../model.tflite")      # or a .keras file, a SavedModel
    outputs = predict_batches(predictor, images, batch_size=32)  # {name: (N, ...) float32}

Every predictor takes float32 images ``(N, H, W, 3)`` (already preprocessed, as the model's
``preprocessing.json`` says) and returns a dict of float32 numpy arrays, one per model output,
so compressed and exported models are judged by the same code as the original.

The ``.tflite`` predictor runs in the shared LiteRT runner (:mod:`edgeline.common.litert`),
which quantizes integer inputs and dequantizes integer outputs with each tensor's own
``(scale, zero_point)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from edgeline.common.litert import LiteRTModel
from edgeline.pipeline.errors import UserError

FORMS = ("keras", "saved_model", "tflite")


class Predictor:
    """A model that maps a batch of images to a dict of numpy outputs."""

    form: str = ""

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def input_size(self) -> tuple[int, int] | None:
        """``(height, width)`` the model takes, when it declares one."""
        return None


def _as_output_dict(outputs, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """A model's output (tensor, list or dict) -> ``{name: float32 numpy}``."""
    if isinstance(outputs, dict):
        return {str(k): np.asarray(v, np.float32) for k, v in outputs.items()}
    if isinstance(outputs, list | tuple):
        names = list(names or [])
        keys = names if len(names) == len(outputs) else [f"output_{i}" for i in range(len(outputs))]
        return {k: np.asarray(v, np.float32) for k, v in zip(keys, outputs)}
    return {"outputs": np.asarray(outputs, np.float32)}


class KerasPredictor(Predictor):
    """A tf_keras model in inference mode (``training=False``)."""

    form = "keras"

    def __init__(self, model):
        self.model = model

    @property
    def input_size(self):
        shape = self.model.input_shape
        return (int(shape[1]), int(shape[2])) if shape[1] and shape[2] else None

    def predict(self, images):
        import tensorflow as tf

        outputs = self.model(tf.constant(images, tf.float32), training=False)
        return _as_output_dict(outputs, getattr(self.model, "output_names", None))


class SavedModelPredictor(Predictor):
    """A SavedModel's serving signature (``serving_default`` unless told otherwise)."""

    form = "saved_model"

    def __init__(self, path: str | os.PathLike, signature: str = "serving_default"):
        import tensorflow as tf

        self.path = Path(path)
        try:
            self._loaded = tf.saved_model.load(str(self.path))  # keeps the variables alive
        except Exception as err:  # noqa: BLE001  (protobuf, TF and OS errors alike)
            # A damaged saved_model.pb or variables file: protobuf's DecodeError, TF's
            # DataLossError or NotFoundError, or OSError, depending on which byte broke.
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UserError(f"{self.path}: not a readable SavedModel ({type(err).__name__}"
                            f"{': ' + first[:200] if first else ''})") from None
        if signature not in self._loaded.signatures:
            raise UserError(
                f"{self.path}: the SavedModel has no signature {signature!r} "
                f"(received signatures: {sorted(self._loaded.signatures)})"
            )
        self._function = self._loaded.signatures[signature]
        _, kwargs = self._function.structured_input_signature
        if len(kwargs) != 1:
            raise UserError(
                f"{self.path}: signature {signature!r} takes {len(kwargs)} inputs; "
                "expected one image tensor"
            )
        (self._input_name, self._input_spec), = kwargs.items()

    @property
    def input_size(self):
        shape = self._input_spec.shape
        return (int(shape[1]), int(shape[2])) if shape[1] and shape[2] else None

    def predict(self, images):
        import tensorflow as tf

        outputs = self._function(**{self._input_name: tf.constant(images, tf.float32)})
        return _as_output_dict(dict(sorted(outputs.items())))


class TFLitePredictor(Predictor):
    """A ``.tflite`` flatbuffer in the shared LiteRT runner (:class:`LiteRTModel`).

    Batches run in one invocation when the input has a free batch dimension
    (``shape_signature[0] == -1``); otherwise image by image (a fixed batch of 1, as the TFLite
    converter usually emits). Outputs are keyed by their signature names.
    """

    form = "tflite"

    def __init__(self, path_or_content: str | os.PathLike | bytes, *, num_threads: int = 1):
        self._runtime = LiteRTModel(path_or_content, num_threads=num_threads)
        inputs = self._runtime.input_details
        if len(inputs) != 1:
            raise UserError(f"the .tflite model takes {len(inputs)} inputs; expected one image")
        self._input = inputs[0]
        self._output_names = self._runtime.output_names
        self.batchable = self._runtime.batchable

    @property
    def input_size(self):
        shape = self._input["shape"]
        return (int(shape[1]), int(shape[2]))

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _invoke(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._runtime.invoke(images)
        return {name: np.asarray(values, np.float32)
                for name, values in zip(self._output_names, outputs)}

    def predict(self, images):
        images = np.asarray(images, np.float32)  # (N, H, W, 3)
        if self.batchable:
            return self._invoke(images)
        if self._input["shape"][0] != 1:
            raise UserError(
                f"the .tflite model has a fixed batch of {self._input['shape'][0]}; expected 1 "
                "or a free batch dimension"
            )
        per_image = [self._invoke(images[i : i + 1]) for i in range(len(images))]
        return {key: np.concatenate([p[key] for p in per_image]) for key in per_image[0]}


def detect_form(path: str | os.PathLike) -> str:
    """The form of the model at ``path``: ``keras``, ``saved_model`` or ``tflite``.

    A ``.tflite`` file or a directory holding ``model.tflite`` (a TFLiteModel artifact) is
    ``tflite``; a ``.keras`` file or a Model artifact directory (``model.keras``) is ``keras``;
    a directory with ``saved_model.pb`` is ``saved_model``.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix == ".tflite":
            return "tflite"
        if path.suffix in (".keras", ".h5"):
            return "keras"
    elif path.is_dir():
        if (path / "model.tflite").is_file():
            return "tflite"
        if (path / "model.keras").is_file():
            return "keras"
        if (path / "saved_model.pb").is_file():
            return "saved_model"
    raise UserError(
        f"Received: model={os.fspath(path)!r}; expected a .tflite file, a .keras file, a "
        "SavedModel directory, a Model artifact or a TFLiteModel artifact"
    )


def model_file(path: str | os.PathLike, form: str) -> Path:
    """The file or directory that holds the network of ``form`` at ``path`` (an artifact
    directory is resolved to its ``model.tflite``, ``model.keras`` or ``saved_model/``)."""
    path = Path(path)
    if path.is_dir():
        inside = {"tflite": path / "model.tflite", "keras": path / "model.keras",
                  "saved_model": path / "saved_model"}[form]
        if inside.exists():
            return inside
        if form == "saved_model" and (path / "saved_model.pb").is_file():
            return path
        raise UserError(f"Received: model={os.fspath(path)!r}; it holds no {form} model")
    return path


def load_predictor(path: str | os.PathLike, form: str = "auto", *, num_threads: int = 1
                   ) -> Predictor:
    """A :class:`Predictor` for the model at ``path``; ``form="auto"`` detects it."""
    if form == "auto":
        form = detect_form(path)
    if form not in FORMS:
        raise UserError(f"Received: form={form!r}; form must be 'auto' or one of {FORMS}")
    location = model_file(path, form)
    if form == "tflite":
        return TFLitePredictor(location, num_threads=num_threads)
    if form == "saved_model":
        return SavedModelPredictor(location)
    return KerasPredictor(_load_keras(location))


def _load_keras(path: Path):
    import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
    import edgeline.models  # noqa: F401  (registers the custom layers)

    if path.parent.joinpath("preprocessing.json").is_file():
        from edgeline.models.io import ModelDirError, load_model_dir

        try:
            return load_model_dir(path.parent).load_keras()
        except ModelDirError as err:
            raise UserError(str(err)) from None
    import tf_keras as keras

    try:
        return keras.models.load_model(str(path), compile=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot load the Keras model ({err})") from None


def predict_batches(
    predictor: Predictor,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``predictor`` over ``images`` ``(N, H, W, 3)`` in batches; outputs concatenated."""
    if batch_size < 1:
        raise ValueError(f"Received: batch_size={batch_size}; batch_size must be >= 1")
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        parts.append(predictor.predict(batch))
        if on_batch is not None:
            on_batch(len(batch))
    if not parts:
        raise UserError("Received: 0 images; nothing to predict")
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
