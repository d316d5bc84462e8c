"""The COCO sets the evaluate tests score (the pycocotools reference is in tests/common)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def coco_data(shared_data) -> Path:
    return shared_data / "coco"
