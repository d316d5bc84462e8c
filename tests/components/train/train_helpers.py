"""Helpers of the train tests (imported by conftest.py and by child processes).

Small real TFRecords for the train tests, written with the records contract's builders.

Classification: three classes told apart by which colour channel dominates, under pixel
noise; a few examples are stored as PNG and as grayscale JPEG, as ingest may leave them.
Detection: up to three axis-aligned rectangles of two categories with non-contiguous COCO ids
(3 and 7), with COCO ground truth for each split as ingest writes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import edgeline  # noqa: F401
from edgeline.pipeline import records

HERE = Path(__file__).resolve().parent
TINY_MODEL = "train_test_tiny"


def tiny_classifier(*, num_classes, input_shape, name, width: int = 8):
    """Two strided convolutions and a linear head; no batch norm, no dropout, so distributed
    and single-device training compute the same function."""
    import tf_keras as keras

    inputs = keras.Input(shape=input_shape, name="images")
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def register_tiny_model() -> str:
    from edgeline.models import registry

    if TINY_MODEL not in registry.names():
        registry.register(
            TINY_MODEL, tiny_classifier, default_input_shape=(32, 32, 3), default_num_classes=3,
            task="classification", description="train tests: a two-layer CNN", min_input_size=8,
        )
    return TINY_MODEL


def _jpeg(pixels: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    image.save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _write_shards(directory: Path, split: str, examples: list, shards: int) -> None:
    import tensorflow as tf

    for index in range(shards):
        path = directory / records.shard_name(split, index, shards)
        with tf.io.TFRecordWriter(str(path)) as writer:
            for example in examples[index::shards]:
                writer.write(example.SerializeToString())


def write_classification_examples(
    directory: Path, *, num_classes: int = 3, train: int = 48, validation: int = 24,
    size: tuple[int, int] = (40, 48), shards: int = 2, seed: int = 0,
) -> Path:
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("validation", validation)):
        examples = []
        for i in range(count):
            label = i % num_classes
            pixels = rng.randint(0, 90, size=(*size, 3))
            pixels[..., label % 3] += 150  # the dominant channel is the label
            pixels = np.clip(pixels, 0, 255).astype(np.uint8)
            if split == "train" and i == 1:
                encoded, fmt = _jpeg(pixels, fmt="PNG"), "png"
            elif split == "train" and i == 2:
                encoded, fmt = _jpeg(pixels, mode="L"), "jpeg"
            else:
                encoded, fmt = _jpeg(pixels), "jpeg"
            examples.append(records.classification_example(
                encoded=encoded, height=size[0], width=size[1], filename=f"{split}_{i}.jpg",
                source_id=f"{split}_{i}", sha256=hashlib.sha256(encoded).hexdigest(),
                label=label, synset=f"n{label:08d}", text=f"class {label}", image_format=fmt,
            ))
        _write_shards(directory, split, examples, shards)
    (directory / "labels.txt").write_text(
        "".join(f"n{k:08d}\tclass {k}\n" for k in range(num_classes))
    )
    return directory


DETECTION_CATEGORIES = ((3, "red box", (220, 30, 30)), (7, "blue box", (30, 30, 220)))


def write_detection_examples(
    directory: Path, *, train: int = 32, validation: int = 16, size: int = 64, shards: int = 2,
    seed: int = 0,
) -> Path:
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True, exist_ok=True)
    image_id = 1
    annotation_id = 1
    for split, count in (("train", train), ("validation", validation)):
        examples = []
        coco = {"images": [], "annotations": [],
                "categories": [{"id": c, "name": n} for c, n, _ in DETECTION_CATEGORIES]}
        for _i in range(count):
            pixels = rng.randint(90, 160, size=(size, size, 3)).astype(np.uint8)
            boxes, labels, texts, areas = [], [], [], []
            for _ in range(rng.randint(1, 4)):
                category, text, color = DETECTION_CATEGORIES[rng.randint(2)]
                h, w = rng.randint(12, 30), rng.randint(12, 30)
                y, x = rng.randint(0, size - h), rng.randint(0, size - w)
                pixels[y:y + h, x:x + w] = color
                boxes.append((x / size, y / size, (x + w) / size, (y + h) / size))
                labels.append(category)
                texts.append(text)
                areas.append(float(w * h))
                coco["annotations"].append({
                    "id": annotation_id, "image_id": image_id, "category_id": category,
                    "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                    "iscrowd": 0,
                })
                annotation_id += 1
            encoded = _jpeg(pixels)
            coco["images"].append({"id": image_id, "file_name": f"{image_id}.jpg",
                                   "height": size, "width": size})
            examples.append(records.detection_example(
                encoded=encoded, height=size, width=size, filename=f"{image_id}.jpg",
                source_id=str(image_id), sha256=hashlib.sha256(encoded).hexdigest(),
                xmin=[b[0] for b in boxes], ymin=[b[1] for b in boxes],
                xmax=[b[2] for b in boxes], ymax=[b[3] for b in boxes], labels=labels,
                texts=texts, is_crowd=[0] * len(boxes), areas=areas,
            ))
            image_id += 1
        _write_shards(directory, split, examples, shards)
        (directory / f"{split}_annotations.json").write_text(json.dumps(coco))
    (directory / "labels.txt").write_text(
        "".join(f"{c}\t{n}\n" for c, n, _ in DETECTION_CATEGORIES)
    )
    return directory



def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that imports this module."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


PYTHON = sys.executable


def tiny_options(**overrides):
    """Train options for the tiny model on the 40x48 examples, a few quick steps."""
    from edgeline.components.train.options import DataOptions, OptimizerOptions, TrainOptions

    values = dict(
        model=register_tiny_model(), epochs=2, batch_size=8,
        data=DataOptions(input_size=(32, 32), shuffle_buffer=64),
        optimizer=OptimizerOptions(name="sgd", learning_rate=0.1, momentum=0.9),
        progress="off", tensorboard=False,
    )
    values.update(overrides)
    return TrainOptions(**values)


def weights_of(model_dir) -> list:
    from edgeline.models import io

    return io.load_model_dir(model_dir).load_keras().get_weights()


def compare_mirrored_with_one_device(examples: str, workdir: str) -> None:
    """Child process: split the CPU into two logical devices (before TensorFlow initializes
    them), train the same steps on one device and mirrored over both, print the largest
    weight difference as JSON."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    from edgeline.components.train import core

    results = {}
    for kind in ("one_device", "mirrored"):
        options = tiny_options(distribution=kind, **DISTRIBUTED_STEPS)
        result = core.run(options=options, examples_dir=examples,
                          output_dir=Path(workdir) / kind, work_dir=Path(workdir) / f"w-{kind}",
                          seed=5, deterministic=True, log=lambda message: None)
        results[kind] = result
    one, mirrored = (weights_of(results[k].model_dir.directory) for k in ("one_device", "mirrored"))
    print(json.dumps({
        "replicas": results["mirrored"].properties["replicas"],
        "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(one, mirrored)),
        "max_abs_change": max(float(np.abs(a).max()) for a in one),
    }))


def run_cli(argv: list[str]) -> None:
    """Child process: the real ``edgeline`` CLI, with the tiny test model registered."""
    register_tiny_model()
    from edgeline.cli import main

    sys.exit(main(argv))


def free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


DISTRIBUTED_STEPS = dict(epochs=1, steps_per_epoch=4, keep_best=False)


def train_worker(examples: str, output: str, work: str) -> None:
    """Child process: one worker of a MultiWorkerMirroredStrategy cluster (TF_CONFIG)."""
    from edgeline.components.train import core

    options = tiny_options(distribution="multi_worker", **DISTRIBUTED_STEPS)
    result = core.run(options=options, examples_dir=examples, output_dir=Path(output),
                      work_dir=Path(work), seed=5, deterministic=True, log=lambda message: None)
    print(json.dumps({"replicas": result.properties["replicas"],
                      "strategy": result.properties["strategy"]}))
