"""``edgeline predict`` on real small models and real picture files: every form of a
classifier and a detector, unreadable files among good ones, and a bare .tflite whose labels
are in its metadata."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgeline.components.predict import core
from edgeline.components.predict.loading import load_image_model
from edgeline.components.predict.options import PredictOptions
from edgeline.components.predict.sources import expand_sources

from .conftest import COLOUR_LABELS, read_predictions  # noqa: TID252  (fixtures' helpers beside this file)

COLOUR_NAMES = [line.split("\t")[1] for line in COLOUR_LABELS]


def _predict(model, sources, output, **options):
    return core.run(model_path=model, sources=[str(s) for s in sources],
                    options=PredictOptions(**options), output_dir=output, quiet=True)


def test_classifier_forms_give_the_same_top_labels(colour_classifier, colour_images, tmp_path):
    """The Model artifact, its SavedModel, its float32 .tflite (float input, normalized here)
    and its int8 .tflite (int8 input) name the same colours, which are the pictures'
    colours."""
    rows = {}
    colour_classifier = {**colour_classifier,
                         "saved_model": colour_classifier["model_dir"] / "saved_model"}
    for form in ("model_dir", "saved_model", "float", "int8"):
        result = _predict(colour_classifier[form], [colour_images["folder"]], tmp_path / form,
                          top_k=2)
        assert (result.predicted, result.skipped, result.annotated) == (12, [], 0)
        rows[form] = {row["file_name"]: row for row in read_predictions(tmp_path / form)}
    keras_rows = rows["model_dir"]
    assert {name: row["labels"][0] for name, row in keras_rows.items()} == colour_images["truth"]
    for name, row in keras_rows.items():
        assert len(row["labels"]) == len(row["class_ids"]) == len(row["scores"]) == 2
        assert row["labels"] == [COLOUR_NAMES[i] for i in row["class_ids"]]
        assert row["scores"][0] >= row["scores"][1] and 0.0 < sum(row["scores"]) <= 1.0 + 1e-6
        # The SavedModel, and the float32 .tflite (a softmax appended): the same network on
        # the same input.
        assert rows["saved_model"][name]["labels"] == row["labels"]
        assert np.allclose(rows["saved_model"][name]["scores"], row["scores"], atol=1e-5)
        assert rows["float"][name]["class_ids"] == row["class_ids"]
        assert np.allclose(rows["float"][name]["scores"], row["scores"], atol=1e-4)
        # int8: the same top-1; probabilities within a few quantization steps.
        assert rows["int8"][name]["class_ids"][0] == row["class_ids"][0]
        assert abs(rows["int8"][name]["scores"][0] - row["scores"][0]) < 0.05


def test_bare_tflite_takes_its_labels_from_its_metadata(colour_classifier, colour_images,
                                                         tmp_path):
    """A .tflite alone (uint8 pixels in): no export.json, labels.txt read from the zip of
    associated files that the export's TFLite Model Metadata appended to the flatbuffer."""
    bare = tmp_path / "bare" / "colours.tflite"
    bare.parent.mkdir()
    shutil.copyfile(colour_classifier["int8_pixels"], bare)
    with zipfile.ZipFile(bare) as packed:  # written by the export stage, not by this test
        assert packed.namelist() == ["labels.txt"]
    model = load_image_model(bare)
    assert (model.form, model.task, model.takes_pixels) == ("tflite", "classification", True)
    assert model.labels == ("red", "green", "blue")
    assert any("Metadata" in note for note in model.notes)
    _predict(bare, [colour_images["folder"]], tmp_path / "out", top_k=1)
    top = {row["file_name"]: row["labels"][0] for row in read_predictions(tmp_path / "out")}
    # No center crop for a bare file (nothing says there is one); a uniform colour is the
    # same colour either way.
    assert top == colour_images["truth"]
    without = tmp_path / "plain" / "colours.tflite"
    without.parent.mkdir()
    shutil.copyfile(colour_classifier["int8_pixels_no_metadata"], without)
    assert load_image_model(without).labels == ()  # class indices are the labels


def test_a_float_input_with_no_normalization_beside_it_is_refused(colour_classifier, tmp_path):
    bare = tmp_path / "float.tflite"
    shutil.copyfile(colour_classifier["float"], bare)
    with pytest.raises(core.UserError, match="says how pixels are normalized"):
        load_image_model(bare)


def _by_image(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["file_name"], []).append(row)
    return {name: sorted(found, key=lambda r: -r["score"]) for name, found in grouped.items()}


def _same_detection(row: dict, other: dict) -> bool:
    return (row["category_id"] == other["category_id"] and abs(row["score"] - other["score"])
            <= 1e-4 and np.allclose(row["bbox"], other["bbox"], atol=0.05))


def test_detector_forms_write_the_same_coco_rows(squares_detector, squares_images, tmp_path):
    """The Model artifact (raw outputs, decoded here with its own settings) and its float32
    .tflite (decoding inside) return the same detections: COCO rows in the original pictures'
    pixels, with the dataset's category ids, each with its file name and the stem as
    image_id; the int8 .tflite runs too. Every picture gets an annotated copy."""
    rows = {}
    for form in ("model_dir", "float", "int8"):
        result = _predict(squares_detector[form], [squares_images], tmp_path / form,
                          score_threshold=0.05)
        assert (result.predicted, result.skipped, result.annotated) == (8, [], 8)
        rows[form] = read_predictions(tmp_path / form)
    sizes = {path.name: Image.open(path).size for path in squares_images.iterdir()}
    ids = {row["file_name"]: row["image_id"] for row in rows["model_dir"]}
    assert ids == {**{f"{1000 + 3 * i}.jpg": 1000 + 3 * i for i in range(7)}, "street.jpg": "street"}
    for row in rows["model_dir"] + rows["int8"]:
        assert set(row) == {"image_id", "category_id", "bbox", "score", "file_name"}
        assert row["category_id"] in (7, 11)
        x, y, w, h = row["bbox"]
        width, height = sizes[row["file_name"]]
        assert 0 <= x and 0 <= y and x + w <= width + 1e-3 and y + h <= height + 1e-3
    assert max(r["bbox"][0] + r["bbox"][2] for r in rows["model_dir"]) > 2  # pixels
    keras_rows, float_rows = _by_image(rows["model_dir"]), _by_image(rows["float"])
    assert keras_rows.keys() == float_rows.keys() == sizes.keys()
    for name, found in keras_rows.items():
        assert len(found) == len(float_rows[name])
        # Matched row by row, not by rank: the untrained detector's scores are close enough
        # to tie, and ties may rank either way.
        for row in found:
            assert any(_same_detection(row, other) for other in float_rows[name]), row
    for path in squares_images.iterdir():
        drawn = Image.open(tmp_path / "int8" / path.name)
        assert drawn.size == sizes[path.name]
        # Detections at 0.05 and above were drawn: the copy is not the picture.
        assert np.abs(np.asarray(drawn, np.int16) - np.asarray(Image.open(path), np.int16)
                      ).max() > 100


def test_the_score_threshold_chooses_what_is_drawn_not_what_is_written(
        squares_detector, squares_images, tmp_path):
    low = _predict(squares_detector["float"], [squares_images], tmp_path / "low",
                   score_threshold=0.05)
    high = _predict(squares_detector["float"], [squares_images], tmp_path / "high",
                    score_threshold=1.0)
    assert low.rows and high.rows == low.rows  # predictions.json: what the model returns
    for path in squares_images.iterdir():  # nothing scores 1.0: the copies are the pictures
        drawn = np.asarray(Image.open(tmp_path / "high" / path.name), np.int16)
        assert np.abs(drawn - np.asarray(Image.open(path), np.int16)).max() <= 12  # JPEG


def test_sources_are_files_folders_and_globs_each_once(squares_images, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    given = expand_sources([squares_images / "1000.jpg", squares_images,
                            str(squares_images / "10*.jpg"), tmp_path / "missing.jpg",
                            str(tmp_path / "*.png")])
    names = [item.path.name for item in given]
    assert names[0] == "1000.jpg" and len(names) == len(set(names[:-2])) + 2 == 10
    assert [item.missing for item in given[-2:]] == ["no such file or directory",
                                                      "the pattern matches no file"]
    # A folder gives its pictures only; a file named on the command line is always given.
    assert [i.path.name for i in expand_sources([tmp_path])] == [tmp_path.name]
    assert expand_sources([tmp_path / "notes.txt"])[0].missing is None


def test_image_ids_are_integer_stems_else_the_stems_themselves():
    from edgeline.components.predict.sources import Given

    given = [Given(core.Path(name)) for name in ("cat.jpg", "1.jpg", "a/2.png", "b/2.png",
                                                  "dog.png")]
    assert core.image_ids(given) == ["cat", 1, 2, "2", "dog"]
