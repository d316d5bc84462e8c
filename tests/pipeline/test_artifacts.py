"""Staging directories: a sweep removes what a killed writer left, never a live writer's."""

from __future__ import annotations

import subprocess
import sys

from edgeline.pipeline.artifacts import sweep_stale


def test_sweep_removes_dead_writers_and_keeps_live_ones(tmp_path):
    artifacts = tmp_path / "artifacts" / "train"
    artifacts.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = artifacts / f".abc.tmp-{dead}-0123abcd"
        legacy = artifacts / ".abd.tmp-0123abcd"  # a name from before pids were recorded
        in_flight = artifacts / f".abe.tmp-{live.pid}-0123abcd"
        for path in (stale, legacy, in_flight):
            (path / "model").mkdir(parents=True)
        sweep_stale(tmp_path / "artifacts")
        assert not stale.exists() and not legacy.exists()
        assert in_flight.exists()
    finally:
        live.kill()
        live.wait()


def test_a_new_staging_folder_removes_those_of_dead_writers_of_the_same_output(tmp_path):
    """What `edgeline train/compress/ingest --output DIR` leave when killed: the next
    command for DIR removes it; a live writer's folder and other outputs' stay."""
    from edgeline.pipeline.artifacts import publish, staging_dir

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = tmp_path / f".model.tmp-{dead}-0123abcd"
        swapped = tmp_path / f".model.tmp-{dead}-4567cdef-old"  # killed between two renames
        in_flight = tmp_path / f".model.tmp-{live.pid}-0123abcd"
        other = tmp_path / f".other.tmp-{dead}-0123abcd"
        for path in (killed, swapped, in_flight, other):
            (path / "weights").mkdir(parents=True)
        staging = staging_dir(tmp_path / "model")
        assert not killed.exists() and not swapped.exists()
        assert in_flight.exists() and other.exists() and staging.is_dir()
        (staging / "model.keras").write_text("new")
        publish(staging, tmp_path / "model", type="Model", producer="test", fingerprint="f",
                inputs={}, properties={}, metrics={})
        assert (tmp_path / "model" / "model.keras").read_text() == "new"
    finally:
        live.kill()
        live.wait()
