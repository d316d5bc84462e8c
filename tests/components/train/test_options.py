"""Train options: strict parsing and range checks before any work starts."""

from __future__ import annotations

import pytest

from edgeline.components.train.options import (
    AugmentationOptions,
    DataOptions,
    OptimizerOptions,
    ScheduleOptions,
    TrainOptions,
    TransferOptions,
)
from edgeline.pipeline.config import parse_dataclass
from edgeline.pipeline.errors import ConfigError


def test_a_yaml_mapping_becomes_nested_options():
    options = parse_dataclass(TrainOptions, {
        "model": "mobilenet_v2", "model_options": {"width_multiplier": 0.35},
        "epochs": 3, "data": {"input_size": [96, 96], "augmentation": {"horizontal_flip": False}},
        "optimizer": {"name": "rmsprop", "learning_rate": 0.01},
        "schedule": {"name": "step", "boundaries": [1, 2]}, "ema_decay": 0.99,
    }, "train")
    assert options.data.input_size == (96, 96)
    assert options.data.augmentation.horizontal_flip is False
    assert options.optimizer.name == "rmsprop"
    assert options.schedule.boundaries == (1.0, 2.0)
    assert options.model_options == {"width_multiplier": 0.35}


@pytest.mark.parametrize(
    "data, message",
    [({"epochs": 0}, "train: Received: epochs=0; epochs must be >= 1"),
     ({"optimizer": {"name": "lamb"}}, "train.optimizer.name: expected one of"),
     ({"optimizer": {"learning_rate": -1}}, "learning_rate=-1"),
     ({"ema_decay": 1.0}, "ema_decay=1.0"),
     ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
     ({"epochs": 2, "transfer": {"freeze_backbone_epochs": 3}}, "must be <= epochs (2)"),
     ({"schedule": {"name": "step"}}, "at least one epoch for the step schedule"),
     ({"data": {"crop_fraction": 0}}, "crop_fraction=0"),
     ({"data": {"augmentation": {"crop_area_range": [0.5, 0.1]}}}, "crop_area_range"),
     ({"monitor": "top1"}, "monitor='top1'"),
     ({"distribution": "tpu"}, "train.distribution: expected one of"),
     ({"epoch": 3}, "train.epoch: unknown key")],
)
def test_bad_values_name_the_key_and_the_value(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_dataclass(TrainOptions, data, "train")


def test_transfer_initial_model_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="path does not exist"):
        parse_dataclass(TrainOptions, {"transfer": {"initial_model": str(tmp_path / "no")}},
                        "train")
    options = parse_dataclass(TrainOptions, {"transfer": {"initial_model": str(tmp_path)}},
                              "train")
    assert options.transfer.initial_model == str(tmp_path)


def test_defaults_are_valid_and_importing_options_needs_no_tensorflow():
    import subprocess
    import sys

    for cls in (AugmentationOptions, DataOptions, OptimizerOptions, ScheduleOptions,
                TransferOptions, TrainOptions):
        cls()
    code = ("import sys, edgeline.components.train.options, edgeline.components.train.stage, "
            "edgeline.components.train.cli; print('tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
