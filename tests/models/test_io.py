"""The Model artifact layout: written and read back by edgeline.models.io."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeline.models import io


def _small_model(num_classes: int = 3):
    import tf_keras as keras

    inputs = keras.Input((16, 24, 3), name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="classifier")(x))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = _small_model()
    # Non-trivial batch-norm statistics, so a round trip that dropped them would show.
    model.get_layer("bn").moving_mean.assign([0.5, -0.5, 1.0, 2.0])
    directory = tmp_path_factory.mktemp("model")
    preprocessing = io.Preprocessing(task="classification", input_size=(16, 24),
                                     mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    model_dir = io.save_model_dir(
        directory, model=model, labels=["n01\tcat", "n02\tdog", "n03\tfox"],
        preprocessing=preprocessing, history={"loss": [np.float32(1.5), 0.5], "epoch": [0, 1]},
    )
    return model, model_dir


def test_round_trip_keeps_network_labels_preprocessing_and_history(saved):
    model, model_dir = saved
    assert sorted(p.name for p in model_dir.directory.iterdir()) == [
        "history.json", "labels.txt", "model.keras", "preprocessing.json", "saved_model"]
    again = io.load_model_dir(model_dir.directory)
    assert again.labels == ("n01\tcat", "n02\tdog", "n03\tfox")
    assert again.label_names == ["cat", "dog", "fox"]
    assert again.num_classes == 3
    assert again.preprocessing.input_size == (16, 24)
    assert again.preprocessing.mean == (0.5, 0.5, 0.5)
    assert again.history == {"loss": [1.5, 0.5], "epoch": [0, 1]}
    images = np.random.RandomState(0).rand(2, 16, 24, 3).astype("float32")
    expected = model(images, training=False).numpy()
    np.testing.assert_allclose(again.load_keras()(images, training=False).numpy(), expected,
                               atol=1e-6)


def test_saved_model_serves_float32_images_by_name(saved):
    model, model_dir = saved
    serving = model_dir.load_saved_model().signatures["serving_default"]
    _, inputs = serving.structured_input_signature
    assert inputs["images"].shape.as_list() == [None, 16, 24, 3]
    images = np.random.RandomState(1).rand(3, 16, 24, 3).astype("float32")
    outputs = serving(images=images)["outputs"]
    assert outputs.dtype.name == "float32"
    np.testing.assert_allclose(outputs.numpy(), model(images, training=False).numpy(), atol=1e-6)


def test_preprocessing_json_has_the_contract_keys(saved):
    _, model_dir = saved
    data = json.loads((model_dir.directory / "preprocessing.json").read_text())
    assert data == {"task": "classification", "input_size": [16, 24], "mean": [0.5] * 3,
                    "std": [0.25] * 3, "resize": "bilinear", "crop_fraction": 0.875}


def test_normalize_is_pixels_over_255_minus_mean_over_std():
    preprocessing = io.Preprocessing(task="classification", input_size=(2, 2),
                                     mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pixels = np.full((1, 1, 3), 255, np.uint8)
    np.testing.assert_allclose(preprocessing.normalize(pixels).numpy()[0, 0], [1.0, 3.0, 1.0])


def test_detector_preprocessing_needs_one_category_id_per_label(tmp_path):
    with pytest.raises(io.ModelDirError, match="category_ids=None"):
        io.Preprocessing(task="detection", input_size=(64, 64))
    preprocessing = io.Preprocessing(task="detection", input_size=(16, 24), crop_fraction=1.0,
                                     category_ids=(3, 7), decoding={"iou_threshold": 0.5})
    assert io.Preprocessing.from_json(preprocessing.to_json()) == preprocessing
    with pytest.raises(io.ModelDirError, match="one category id per label"):
        io.save_model_dir(tmp_path, model=_small_model(), labels=["3\tcar"],
                          preprocessing=preprocessing)


@pytest.mark.parametrize(
    "changes, message",
    [({"task": "segmentation"}, "task='segmentation'"),
     ({"std": (0.1, 0.0, 0.1)}, "every std must be > 0"),
     ({"crop_fraction": 1.5}, "crop_fraction=1.5"),
     ({"resize": "cubic"}, "resize='cubic'")],
)
def test_bad_preprocessing_is_refused_with_the_value(changes, message):
    values = {"task": "classification", "input_size": (8, 8), **changes}
    with pytest.raises(io.ModelDirError, match=message):
        io.Preprocessing(**values)


def test_incomplete_directory_names_the_missing_file(saved, tmp_path):
    with pytest.raises(io.ModelDirError, match="not a directory"):
        io.load_model_dir(tmp_path / "nowhere")
    (tmp_path / "model.keras").write_bytes(b"")
    with pytest.raises(io.ModelDirError, match="labels.txt is missing"):
        io.load_model_dir(tmp_path)
    _, model_dir = saved
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(model_dir.directory, broken)
    (broken / "preprocessing.json").write_text("{not json")
    with pytest.raises(io.ModelDirError, match="not valid JSON"):
        io.load_model_dir(broken)
