"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: real third-party data (see its PROVENANCE.md). CI has it beside the
    clone, so a missing folder is a failure, not a skip."""
    assert SHARED_DATA.is_dir(), f"expected the shared data at {SHARED_DATA}"
    return SHARED_DATA


def pytest_configure(config):
    # Two cores: keep TensorFlow from oversubscribing them when pytest-xdist runs workers.
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
