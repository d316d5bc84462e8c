"""The train core on small real TFRecords: artifact, determinism, NaN, precision, XLA,
transfer learning, detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
import train_helpers

import edgeline  # noqa: F401
from edgeline.components.train import callbacks, core
from edgeline.components.train.options import (
    DataOptions,
    OptimizerOptions,
    ScheduleOptions,
    TransferOptions,
)
from edgeline.models import io
from edgeline.pipeline.errors import UserError


def _run(examples, tmp_path, name, *, seed=3, deterministic=True, **overrides):
    options = train_helpers.tiny_options(**overrides)
    return core.run(options=options, examples_dir=examples, output_dir=tmp_path / name,
                    work_dir=tmp_path / f"work-{name}", seed=seed, deterministic=deterministic,
                    log=lambda message: None)


def test_the_artifact_holds_model_labels_preprocessing_and_history(trained,
                                                                   classification_examples):
    model_dir = io.load_model_dir(trained.model_dir.directory)
    assert model_dir.labels == tuple(
        (classification_examples / "labels.txt").read_text().splitlines())
    assert model_dir.preprocessing.to_json() == {
        "task": "classification", "input_size": [32, 32], "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225], "resize": "bilinear", "crop_fraction": 0.875}
    history = model_dir.history
    assert history["epoch"] == [0, 1] and len(history["val_top1"]) == 2
    assert history["phase"] == ["train", "train"]
    # Three colour classes: well above the 1/3 of chance after two short epochs. Seeds 3
    # (this fixture's), 4, 5: 1.000 / 1.000 / 1.000 (both epochs, each seed).
    assert trained.metrics["val_top1"] >= 0.8
    assert trained.properties["steps_per_epoch"] == 6 and trained.properties["replicas"] == 1
    assert (trained.model_dir.directory / "tensorboard" / "validation").is_dir()
    # The artifact holds the kept epoch's weights and says which it was.
    best = trained.properties["best_epoch"]
    assert trained.metrics["val_top1"] == pytest.approx(history["val_top1"][best], abs=1e-6)


def test_tensorboard_events_hold_the_epoch_scalars(trained):
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    directory = trained.model_dir.directory / "tensorboard" / "validation"
    tags = set()
    for path in directory.iterdir():
        for record in tf.data.TFRecordDataset(str(path)):
            event = event_pb2.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    assert {"epoch_loss", "epoch_top1"} <= tags


def test_same_seed_gives_identical_weights(classification_examples, tiny_model, tmp_path):
    """Acceptance 5: deterministic mode, two trainings with the same seed."""
    first = _run(classification_examples, tmp_path, "a", seed=11, steps_per_epoch=3)
    second = _run(classification_examples, tmp_path, "b", seed=11, steps_per_epoch=3)
    a, b = (train_helpers.weights_of(r.model_dir.directory) for r in (first, second))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert first.history["loss"] == second.history["loss"]
    assert first.history["loss"][1] < first.history["loss"][0]  # it did train


def test_nan_loss_stops_with_a_clear_message(classification_examples, tiny_model, tmp_path):
    with pytest.raises(UserError, match=r"the loss became (nan|inf) at epoch 1, step \d+; lower "
                                        r"optimizer.learning_rate \(received 1e\+30\)"):
        _run(classification_examples, tmp_path, "nan",
             optimizer=OptimizerOptions(name="sgd", learning_rate=1e30, momentum=0.0))


def test_mixed_bfloat16_under_xla_trains_with_finite_loss_and_saves_float32(
        classification_examples, tiny_model, tmp_path):
    """The CPU stand-ins of the GPU paths: the mixed_bfloat16 policy, and jit_compile=True."""
    import tf_keras as keras

    result = _run(classification_examples, tmp_path, "bf16", mixed_precision="auto", epochs=1,
                  steps_per_epoch=3, jit_compile=True)
    assert result.properties["precision_policy"] == "mixed_bfloat16"
    assert np.isfinite(result.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    model = io.load_model_dir(result.model_dir.directory).load_keras()
    assert {w.dtype.name for w in model.weights} == {"float32"}
    assert model.layers[-1].compute_dtype == "float32"


def test_frozen_backbone_keeps_the_source_weights(classification_examples, tiny_model,
                                                  trained, tmp_path):
    """Acceptance 8: fine-tuned from another run's model, the frozen phase leaves the
    backbone exactly as it was and trains the head; the next phase trains everything."""
    source = train_helpers.weights_of(trained.model_dir.directory)
    frozen = _run(classification_examples, tmp_path, "frozen", epochs=1, steps_per_epoch=3,
                  transfer=TransferOptions(initial_model=str(trained.model_dir.directory),
                                           freeze_backbone_epochs=1))
    after = train_helpers.weights_of(frozen.model_dir.directory)
    # conv1 kernel, conv1 bias, conv2 kernel, conv2 bias: the backbone; then the classifier.
    for before, now in zip(source[:4], after[:4]):
        np.testing.assert_array_equal(before, now)
    assert not np.array_equal(source[4], after[4])

    fine_tuned = _run(classification_examples, tmp_path, "fine_tuned", epochs=2,
                      steps_per_epoch=3, keep_best=False,
                      schedule=ScheduleOptions(name="constant"), transfer=TransferOptions(initial_model=str(trained.model_dir.directory),
                                               freeze_backbone_epochs=1,
                                               fine_tune_learning_rate_scale=0.5))
    assert fine_tuned.history["phase"] == ["frozen", "fine_tune"]
    # The fine-tune phase runs at half the rate.
    assert fine_tuned.history["learning_rate"] == pytest.approx([0.1, 0.05])
    tuned = train_helpers.weights_of(fine_tuned.model_dir.directory)
    assert not np.array_equal(source[0], tuned[0])


def test_freezing_needs_starting_weights(classification_examples, tiny_model, tmp_path):
    with pytest.raises(UserError, match="freeze_backbone_epochs=1 needs starting weights"):
        _run(classification_examples, tmp_path, "x",
             transfer=TransferOptions(freeze_backbone_epochs=1))


def test_batch_larger_than_the_split_is_a_user_error(classification_examples, tiny_model,
                                                     tmp_path):
    with pytest.raises(UserError, match="batch_size=64 is larger than the 48 training"):
        _run(classification_examples, tmp_path, "x", batch_size=64)


def test_unknown_model_lists_the_known_ones():
    # Refused when the options are made (a config is checked before any step runs).
    with pytest.raises(ValueError, match="model='resnet51'; unknown model. Known models: .*resnet50"):
        train_helpers.tiny_options(model="resnet51")


@pytest.mark.slow
def test_detector_trains_and_reports_box_map(detection_examples, tmp_path):
    result = core.run(
        options=train_helpers.tiny_options(
            model="mobilenet_v2_detector",
            model_options={"backbone_width_multiplier": 0.35, "fpn_channels": 16,
                           "head_channels": 16, "head_depth": 1},
            epochs=2, data=DataOptions(input_size=(64, 64), max_boxes=10),
            optimizer=OptimizerOptions(name="adam", learning_rate=0.003),
            decoding={"score_threshold": 0.001}),
        examples_dir=detection_examples, output_dir=tmp_path / "det", work_dir=tmp_path / "w",
        seed=1, deterministic=True, log=lambda message: None)
    assert {"val_loss", "box_map", "box_map_50"} <= set(result.metrics)
    assert 0.0 <= result.metrics["box_map"] <= 1.0
    assert result.history["loss"][-1] < result.history["loss"][0]
    preprocessing = json.loads((result.model_dir.directory / "preprocessing.json").read_text())
    assert preprocessing["category_ids"] == [3, 7] and preprocessing["crop_fraction"] == 1.0
    assert preprocessing["decoding"]["score_threshold"] == 0.001
    assert preprocessing["decoding"]["input_size"] == [64, 64]


def test_a_crash_after_the_last_epoch_restores_instead_of_training(
        classification_examples, tiny_model, trained, tmp_path, monkeypatch):
    """Killed after fit's last backup but before the phase was marked done: the rerun
    restores the backup (and swaps in the weight average, as fit would have) without
    training, and ends with the uninterrupted run's weights."""
    real_save = callbacks.save_weights

    def crash_on_the_phase_marker(model, path, writer):
        if path.name.startswith("phase-"):
            raise KeyboardInterrupt("simulated crash")
        real_save(model, path, writer)

    monkeypatch.setattr(callbacks, "save_weights", crash_on_the_phase_marker)
    with pytest.raises(KeyboardInterrupt):
        _run(classification_examples, tmp_path, "crashed", ema_decay=0.9, tensorboard=True)
    monkeypatch.setattr(callbacks, "save_weights", real_save)
    messages = []
    options = train_helpers.tiny_options(ema_decay=0.9, tensorboard=True)
    rerun = core.run(options=options, examples_dir=classification_examples,
                     output_dir=tmp_path / "crashed", work_dir=tmp_path / "work-crashed",
                     seed=3, deterministic=True, log=messages.append)
    assert any("had finished; restored it" in m for m in messages)
    assert rerun.history == trained.history
    for a, b in zip(train_helpers.weights_of(rerun.model_dir.directory),
                    train_helpers.weights_of(trained.model_dir.directory)):
        np.testing.assert_array_equal(a, b)
