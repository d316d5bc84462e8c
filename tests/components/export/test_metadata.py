"""TFLite Model Metadata in exported files, checked by MediaPipe Tasks itself: every classifier
and detector form the export stage writes loads in ``ImageClassifier`` / ``ObjectDetector`` as
it is and agrees with LiteRT, and the metadata leaves LiteRT's outputs as they were.

MediaPipe runs in the mobile environment (``.venv/mobile``, made by ``make setup``), through
``mediapipe_tasks.py`` beside this file."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common import litert
from edgeline.components.export import core, metadata
from edgeline.components.export.data import load_images
from edgeline.components.export.options import ExportOptions

from .conftest import SHAPE_CLASSES  # noqa: TID252  (fixtures' helpers beside this file)

MEDIAPIPE_TASKS = Path(__file__).with_name("mediapipe_tasks.py")
CLASSIFIER_IMAGES = 100
DETECTOR_IMAGES = 40
DETECTOR_THRESHOLD = 0.3


def run_mediapipe(model: Path, task: str, images: list[Path], tmp_path: Path,
                  score_threshold: float = 0.0) -> list:
    job = tmp_path / "mediapipe_job.json"
    job.write_text(json.dumps({"model": os.fspath(model), "task": task,
                               "images": [os.fspath(p) for p in images],
                               "score_threshold": score_threshold}))
    done = subprocess.run([os.fspath(metadata.mobile_python()), os.fspath(MEDIAPIPE_TASKS),
                           os.fspath(job)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def write_pngs(pixels: np.ndarray, directory: Path) -> list[Path]:
    """Lossless files at the model's input size, so that MediaPipe resizes nothing."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{i:04d}.png" for i in range(len(pixels))]
    for path, image in zip(paths, pixels):
        Image.fromarray(image).save(path)
    return paths


def export(model_dir, examples, output: Path, **options) -> core.ExportResult:
    settings = dict(representative_size=100, parity_size=50, measure_latency=False)
    return core.run(model_dir=model_dir, output_dir=output, examples_dir=examples,
                    options=ExportOptions(**{**settings, **options}))


# -- classifiers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier_images(shapes_examples, tmp_path_factory):
    pixels = shapes_examples["validation"][0][:CLASSIFIER_IMAGES]
    return pixels, write_pngs(pixels, tmp_path_factory.mktemp("classifier_pngs"))


@pytest.fixture(scope="module")
def scalar_normalized_cnn(trained_cnn, tmp_path_factory):
    """The trained CNN saved with one mean and std for all channels (0.5, 0.5), the only
    normalization MediaPipe Tasks applies to a float input: its accuracy is beside the point,
    MediaPipe and LiteRT see the same inputs."""
    from edgeline.models import io as model_io

    from .conftest import save_classifier  # noqa: TID252

    directory = tmp_path_factory.mktemp("scalar_normalized_cnn")
    save_classifier(directory, trained_cnn["model"], model_io.Preprocessing(
        task="classification", input_size=(32, 32), crop_fraction=1.0, mean=(0.5,) * 3,
        std=(0.5,) * 3))
    return directory


@pytest.mark.parametrize("inside", [True, False], ids=["pixels-in", "floats-in"])
@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_every_classifier_form_runs_in_mediapipe_image_classifier(
        quantize, inside, trained_cnn, scalar_normalized_cnn, shapes_examples,
        classifier_images, tmp_path):
    model_dir = trained_cnn["directory"] if inside else scalar_normalized_cnn
    result = export(model_dir, shapes_examples["directory"], tmp_path / "export",
                    quantize=quantize, include_preprocessing=inside, check_parity=inside)
    assert metadata.mediapipe_refuses(result.report["metadata"]) is None
    pixels, paths = classifier_images
    runtime = litert.LiteRTModel(result.tflite_path.read_bytes())
    inputs = pixels if inside else np.asarray(
        core.normalize(pixels, core.read_model_dir(model_dir).preprocessing))
    (probabilities,) = runtime.predict(inputs)
    rows = run_mediapipe(result.tflite_path, "classification", paths, tmp_path)
    # Category names come from the labels file inside the .tflite.
    assert all(name == SHAPE_CLASSES[index] for row in rows for name, index, _ in row)
    top1_litert = np.argmax(probabilities, axis=-1)
    agreement = np.mean([row[0][1] == expected for row, expected in zip(rows, top1_litert)])
    print(f"\n{quantize} {'pixels' if inside else 'floats'} in: MediaPipe top-1 = LiteRT's on "
          f"{agreement:.1%} of {len(rows)} held-out images")
    assert len(rows) == CLASSIFIER_IMAGES and agreement >= 0.99


def test_per_channel_normalization_is_named_as_what_mediapipe_refuses(
        trained_cnn, classifier_images, tmp_path):
    """ImageNet's per-channel mean and std are written as they are (the TFLite Task Library
    applies them); MediaPipe refuses such a float input, and the export says so and how to
    get a file it loads."""
    result = export(trained_cnn["directory"], None, tmp_path / "export", check_parity=False)
    reason = metadata.mediapipe_refuses(result.report["metadata"])
    assert reason is not None and "--include-preprocessing" in reason
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": os.fspath(result.tflite_path), "task": "classification",
                               "images": [os.fspath(classifier_images[1][0])],
                               "score_threshold": 0.0}))
    done = subprocess.run([os.fspath(metadata.mobile_python()), os.fspath(MEDIAPIPE_TASKS),
                           os.fspath(job)], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "Per-channel image normalization" in done.stderr


def test_metadata_leaves_the_model_as_it_was(trained_cnn, shapes_examples, classifier_images,
                                             tmp_path):
    """LiteRT gives the same outputs with and without metadata, the same config gives the
    same bytes, and export.json records what was written."""
    directory, examples = trained_cnn["directory"], shapes_examples["directory"]
    plain = export(directory, examples, tmp_path / "plain", quantize="int8",
                   include_preprocessing=True, metadata=False)
    first = export(directory, examples, tmp_path / "first", quantize="int8",
                   include_preprocessing=True)
    second = export(directory, examples, tmp_path / "second", quantize="int8",
                    include_preprocessing=True)
    pixels, _ = classifier_images
    outputs = [litert.LiteRTModel(r.tflite_path.read_bytes()).predict(pixels)[0]
               for r in (plain, first)]
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert first.tflite_path.read_bytes() == second.tflite_path.read_bytes()
    with zipfile.ZipFile(first.tflite_path) as packed:  # the label file rides in the model
        assert packed.read("labels.txt").decode().split("\n")[:4] == list(SHAPE_CLASSES)
    written = first.report["metadata"]
    assert written["name"] == "cnn image classifier"
    assert "4 classes (disc, square" in written["description"]
    (image,) = written["subgraph_metadata"][0]["input_tensor_metadata"]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    assert plain.report["metadata"] is None


def test_metadata_from_the_config(trained_cnn, shapes_examples, tmp_path):
    result = export(trained_cnn["directory"], shapes_examples["directory"], tmp_path,
                    check_parity=False, model_name="Shapes", model_description="Four shapes.",
                    model_version="v7", model_license="Apache-2.0")
    written = result.report["metadata"]
    assert (written["name"], written["description"], written["version"],
            written["license"]) == ("Shapes", "Four shapes.", "v7", "Apache-2.0")
    # Float input: the app normalizes 0-255 pixels as the graph expects.
    (image,) = written["subgraph_metadata"][0]["input_tensor_metadata"]
    options = image["process_units"][0]["options"]  # ImageNet's, per channel
    np.testing.assert_allclose(options["mean"], [123.675, 116.28, 103.53])
    np.testing.assert_allclose(options["std"], [58.395, 57.12, 57.375])


def test_no_mobile_environment_is_one_line(trained_cnn, tmp_path, monkeypatch):
    monkeypatch.setenv(metadata.MOBILE_PYTHON, os.fspath(tmp_path / "none" / "python"))
    with pytest.raises(core.UserError, match="--no-metadata") as raised:
        export(trained_cnn["directory"], None, tmp_path / "out", check_parity=False)
    assert "\n" not in str(raised.value)


# -- detectors --------------------------------------------------------------------------------


@pytest.mark.slow  # the demo detector (shared, about two CPU minutes to train)
@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_every_detector_form_runs_in_mediapipe_object_detector(
        quantize, demo_detector, demo_detection_examples, tmp_path):
    result = export(demo_detector.model_dir.directory, demo_detection_examples,
                    tmp_path / "export", quantize=quantize)
    preprocessing = core.read_model_dir(demo_detector.model_dir.directory).preprocessing
    pixels = load_images(demo_detection_examples, task="detection", split="validation",
                         preprocessing=preprocessing, count=DETECTOR_IMAGES).pixels
    paths = write_pngs(pixels, tmp_path / "pngs")
    boxes, classes, scores, counts = litert.LiteRTModel(result.tflite_path.read_bytes()).predict(
        pixels)
    found = run_mediapipe(result.tflite_path, "detection", paths, tmp_path,
                          score_threshold=DETECTOR_THRESHOLD)
    labels = (result.directory / core.LABELS_FILE).read_text().split("\n")
    height, width = pixels.shape[1:3]
    expected = missed = 0
    for i, detections in enumerate(found):
        for k in range(int(counts[i])):
            if scores[i, k] < DETECTOR_THRESHOLD:
                continue
            expected += 1
            ymin, xmin, ymax, xmax = boxes[i, k] * [height, width, height, width]
            # MediaPipe gives integer pixels: origin and size, each within one pixel.
            want = np.array([xmin, ymin, xmax - xmin, ymax - ymin])
            if not any(name == labels[int(classes[i, k])] and abs(score - scores[i, k]) <= 1e-3
                       and np.all(np.abs(np.array(box) - want) <= 1.0)
                       for name, score, *box in detections):
                missed += 1
                print(f"image {i}: LiteRT {labels[int(classes[i, k])]} {scores[i, k]:.6f} "
                      f"{want.round(2).tolist()}; MediaPipe {detections}")
    print(f"\n{quantize}: MediaPipe found {expected - missed} of LiteRT's {expected} detections "
          f"above {DETECTOR_THRESHOLD} on {len(found)} images")
    assert expected >= len(found)  # a real detector: about one object an image or more
    assert missed == 0
    assert sum(map(len, found)) == expected  # and nothing else



def readme_mediapipe_lines(repo_root: Path) -> list[str]:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- mediapipe-lines -->\n```python\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


@pytest.mark.slow  # the demo detector (shared, about two CPU minutes to train)
def test_the_readme_mediapipe_lines_load_an_exported_detector(
        repo_root, demo_detector, demo_detection_examples, tmp_path):
    """The README's lines are the ones `edgeline export` prints, and they run as they are."""
    lines = readme_mediapipe_lines(repo_root)
    assert lines == metadata.mediapipe_lines("detection", "model.tflite", "photo.jpg")
    result = export(demo_detector.model_dir.directory, demo_detection_examples,
                    tmp_path / "export", quantize="int8")
    (tmp_path / "model.tflite").write_bytes(result.tflite_path.read_bytes())
    preprocessing = core.read_model_dir(demo_detector.model_dir.directory).preprocessing
    pixels = load_images(demo_detection_examples, task="detection", split="validation",
                         preprocessing=preprocessing, count=1).pixels
    Image.fromarray(pixels[0]).save(tmp_path / "photo.jpg", quality=95)
    done = subprocess.run([os.fspath(metadata.mobile_python()), "-c", "\n".join(lines)],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = (result.directory / core.LABELS_FILE).read_text().split()
    assert "Detection(bounding_box=BoundingBox(" in done.stdout
    assert any(f"category_name='{name}'" in done.stdout for name in labels)
    assert "Exception ignored" not in done.stderr  # the task closes cleanly
