"""Fixtures of the train tests; the helpers live in train_helpers.py so that child
processes can import them too."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_helpers  # noqa: E402


@pytest.fixture(scope="session")
def classification_examples(tmp_path_factory) -> Path:
    return train_helpers.write_classification_examples(tmp_path_factory.mktemp("cls_examples"))


@pytest.fixture(scope="session")
def detection_examples(tmp_path_factory) -> Path:
    return train_helpers.write_detection_examples(tmp_path_factory.mktemp("det_examples"))


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return train_helpers.register_tiny_model()


@pytest.fixture(scope="session")
def trained(classification_examples, tiny_model, tmp_path_factory):
    """One small training shared by several tests (weight average on, two epochs); the
    options and seed of test_core.py's ``_run``."""
    from edgeline.components.train import core

    directory = tmp_path_factory.mktemp("trained")
    options = train_helpers.tiny_options(ema_decay=0.9, tensorboard=True)
    return core.run(options=options, examples_dir=classification_examples,
                    output_dir=directory / "model", work_dir=directory / "work-model", seed=3,
                    deterministic=True, log=lambda message: None)
