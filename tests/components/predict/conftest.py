"""Small real models for the predict tests, and real image files to predict.

A colour classifier (a few Keras training steps) and an untrained single-stage detector, each
saved as a Model artifact through ``edgeline.models.io`` and exported by the export stage's
core (float32, and int8 calibrated on Examples written as real TFRecords), plus folders of
JPEG and PNG files of varying sizes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.pipeline import records

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))  # red, green, blue
COLOUR_LABELS = ("n001\tred", "n002\tgreen", "n003\tblue")
CLASSIFIER_SIZE = (24, 24)
DETECTOR_SIZE = (64, 64)
DETECTOR_LABELS = ("7\tsquare", "11\tbar")


def encode(pixels: np.ndarray, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, quality=92)
    return buffer.getvalue()


def colour_picture(rng: np.random.Generator, label: int) -> np.ndarray:
    """A noisy picture of one dominant colour, of a random size (so crop and resize run)."""
    height, width = int(rng.integers(28, 48)), int(rng.integers(28, 48))
    noise = rng.normal(0, 60, size=(height, width, 3))
    return np.clip(np.array(COLOURS[label]) + noise, 0, 255).astype(np.uint8)


def squares_picture(rng: np.random.Generator) -> np.ndarray:
    """Bright squares and bars on a dark ground, of a random size."""
    height, width = int(rng.integers(60, 100)), int(rng.integers(60, 100))
    pixels = rng.integers(0, 40, size=(height, width, 3)).astype(np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        box_h, box_w = (20, 20) if rng.random() < 0.5 else (10, 30)
        y, x = int(rng.integers(0, height - box_h)), int(rng.integers(0, width - box_w))
        pixels[y:y + box_h, x:x + box_w] = 230
    return pixels


def write_examples(directory: Path, pictures: list[np.ndarray], labels: list[int],
                   task: str) -> None:
    """One train shard of real tf.train.Examples (what int8 calibration reads)."""
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(directory / records.shard_name("train", 0, 1))) as writer:
        for index, (pixels, label) in enumerate(zip(pictures, labels)):
            common = dict(encoded=encode(pixels), height=pixels.shape[0],
                          width=pixels.shape[1], filename=f"{index}.jpg",
                          source_id=str(index + 1), sha256="")
            if task == "classification":
                example = records.classification_example(
                    **common, label=label, synset=COLOUR_LABELS[label].split("\t")[0],
                    text=COLOUR_LABELS[label].split("\t")[1])
            else:
                example = records.detection_example(
                    **common, xmin=[0.1], ymin=[0.1], xmax=[0.5], ymax=[0.5], labels=[0],
                    texts=["square"], is_crowd=[0], areas=[100.0])
            writer.write(example.SerializeToString())


def export(model_dir: Path, output_dir: Path, examples: Path, **options) -> Path:
    """The export stage's core, without the parity gate (these tests compare forms
    themselves): the .tflite path."""
    from edgeline.components.export import core
    from edgeline.components.export.options import ExportOptions

    result = core.run(model_dir=model_dir, output_dir=output_dir, examples_dir=examples,
                      options=ExportOptions(measure_latency=False, check_parity=False,
                                            representative_size=32, **options))
    return result.tflite_path


@pytest.fixture(scope="session")
def colour_images(tmp_path_factory) -> dict:
    """12 picture files (JPEG and PNG) and the colour each shows."""
    folder = tmp_path_factory.mktemp("colour_images")
    rng = np.random.default_rng(7)
    truth = {}
    for index in range(12):
        label = index % 3
        suffix, image_format = (".png", "PNG") if index % 4 == 0 else (".jpg", "JPEG")
        name = f"photo_{index:02d}{suffix}"
        (folder / name).write_bytes(encode(colour_picture(rng, label), image_format))
        truth[name] = COLOUR_LABELS[label].split("\t")[1]
    return {"folder": folder, "truth": truth}


@pytest.fixture(scope="session")
def colour_classifier(tmp_path_factory) -> dict:
    """A Model artifact that tells red, green and blue pictures apart (logits out), its
    float32 export (float input), its int8 export with int8 input and output, and its int8
    export with the preprocessing inside (uint8 pixels in)."""
    import tf_keras as keras

    from edgeline.models.io import Preprocessing, save_model_dir

    root = tmp_path_factory.mktemp("colour_classifier")
    rng = np.random.default_rng(1)
    labels = [index % 3 for index in range(96)]
    pictures = [colour_picture(rng, label) for label in labels]
    write_examples(root / "examples", pictures, labels, "classification")
    preprocessing = Preprocessing(task="classification", input_size=CLASSIFIER_SIZE)
    resized = np.stack([np.asarray(Image.fromarray(p).resize(CLASSIFIER_SIZE[::-1]))
                        for p in pictures])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((*CLASSIFIER_SIZE, 3)),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(COLOURS)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(preprocessing.normalize(resized).numpy(), np.array(labels), epochs=15,
              batch_size=16, verbose=0)
    model_dir = root / "model"
    save_model_dir(model_dir, model=model, labels=COLOUR_LABELS, preprocessing=preprocessing)
    examples = root / "examples"
    return {
        "model_dir": model_dir,
        "float": export(model_dir, root / "float", examples),
        "int8": export(model_dir, root / "int8", examples, quantize="int8", io_type="int8"),
        "int8_pixels": export(model_dir, root / "int8_pixels", examples, quantize="int8",
                              include_preprocessing=True),
        "int8_pixels_no_metadata": export(model_dir, root / "int8_pixels_no_metadata",
                                          examples, quantize="int8",
                                          include_preprocessing=True, metadata=False),
    }


@pytest.fixture(scope="session")
def squares_images(tmp_path_factory) -> Path:
    """8 pictures of squares and bars: seven named by an integer (COCO style), one not."""
    folder = tmp_path_factory.mktemp("squares_images")
    rng = np.random.default_rng(3)
    for index in range(8):
        name = "street.jpg" if index == 7 else f"{1000 + 3 * index}.jpg"
        (folder / name).write_bytes(encode(squares_picture(rng)))
    return folder


@pytest.fixture(scope="session")
def squares_detector(tmp_path_factory) -> dict:
    """The registry's single-stage detector, untrained (a prior of 0.3 makes it return boxes
    of every class, with scores made to vary, see below), as a Model artifact with category ids 7 and 11, and its float32 and int8
    exports (decoding inside, uint8 pixels in)."""
    import tf_keras as keras

    from edgeline.models import detector
    from edgeline.models.io import Preprocessing, save_model_dir

    root = tmp_path_factory.mktemp("squares_detector")
    rng = np.random.default_rng(2)
    write_examples(root / "examples", [squares_picture(rng) for _ in range(32)], [0] * 32,
                   "detection")
    keras.utils.set_random_seed(0)
    model = detector.build_detector(num_classes=2, input_shape=(*DETECTOR_SIZE, 3),
                                    backbone_width_multiplier=0.35, fpn_channels=16,
                                    head_channels=16, head_depth=0, prior_probability=0.3)
    # The prediction layers start at zero (every anchor scores the prior, 0.09: ties that
    # rank arbitrarily). Small random weights there make the scores depend on the picture,
    # so that forms are compared on distinct detections.
    init = np.random.default_rng(0)
    for variable in model.trainable_variables:
        if not np.any(variable.numpy()):
            variable.assign(init.normal(0, 0.3, variable.shape).astype(np.float32))
    preprocessing = Preprocessing(task="detection", input_size=DETECTOR_SIZE, crop_fraction=1.0,
                                  category_ids=(7, 11),
                                  decoding={"strides": [8, 16, 32], "score_threshold": 0.05,
                                            "max_detections": 20})
    model_dir = root / "model"
    save_model_dir(model_dir, model=model, labels=DETECTOR_LABELS, preprocessing=preprocessing)
    examples = root / "examples"
    return {
        "model_dir": model_dir,
        "float": export(model_dir, root / "float", examples),
        "int8": export(model_dir, root / "int8", examples, quantize="int8"),
    }


def read_predictions(folder: Path) -> list[dict]:
    return json.loads((folder / "predictions.json").read_text())
