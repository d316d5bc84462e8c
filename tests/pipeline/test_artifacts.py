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
