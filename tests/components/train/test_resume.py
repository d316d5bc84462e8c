"""Acceptance 6: kill -9 during training, rerun the same command, and the run resumes from
its last finished epoch and ends where an uninterrupted run ends (deterministic mode)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import train_helpers

from edgeline.components.train import loop

CONFIG = """\
# The train step of a pipeline, run alone with `edgeline train`.
name: resume
seed: 21
deterministic: true
steps:
  classifier:
    stage: train
    model: cnn
    model_options: {stage_widths: [8, 16]}
    epochs: 5
    batch_size: 8
    data: {input_size: [32, 32], shuffle_buffer: 64}
    optimizer: {name: sgd, learning_rate: 0.05, momentum: 0.9}
    ema_decay: 0.9
    progress: epoch
"""


def _command(config: Path, examples: Path, output: Path, cache: Path) -> list[str]:
    return [train_helpers.PYTHON, "-m", "edgeline", "train", str(config), "--examples",
            str(examples), "--output", str(output), "--cache-dir", str(cache)]


def _backups(cache: Path) -> list[Path]:
    return list(cache.glob("train/*/backup-train"))


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(
        classification_examples, tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text(CONFIG)
    env = train_helpers.subprocess_env()
    cache = tmp_path / "cache"
    command = _command(config, classification_examples, tmp_path / "resumed", cache)

    victim = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    finished_epochs = 0
    while time.time() < deadline and victim.poll() is None:
        backups = _backups(cache)
        if backups:
            finished_epochs = loop.resume_epoch(backups[0], 0)
            if finished_epochs >= 2:
                break
        time.sleep(0.2)
    assert victim.poll() is None, victim.communicate()[0][-2000:]
    assert finished_epochs >= 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming phase train at epoch {finished_epochs + 1}" in rerun.stderr
    # Only the unfinished epochs ran again.
    epoch_lines = [line for line in rerun.stderr.splitlines() if line.startswith("train: epoch ")]
    assert len(epoch_lines) == 5 - finished_epochs, rerun.stderr[-3000:]
    assert not _backups(cache)  # the resumable state is gone once the model is published

    # In a runs directory of its own: beside the resumed one, it would be its cache hit.
    reference = subprocess.run(
        [*_command(config, classification_examples, tmp_path / "reference", tmp_path / "c2"),
         "--runs-dir", str(tmp_path / "reference-runs")],
        env=env, capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]

    resumed = json.loads((tmp_path / "resumed" / "artifact.json").read_text())
    uninterrupted = json.loads((tmp_path / "reference" / "artifact.json").read_text())
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["properties"]["resumed_from_epoch"] == finished_epochs
    history = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert history == json.loads((tmp_path / "reference" / "history.json").read_text())
    assert history["epoch"] == [0, 1, 2, 3, 4]
    for a, b in zip(train_helpers.weights_of(tmp_path / "resumed"),
                    train_helpers.weights_of(tmp_path / "reference")):
        np.testing.assert_array_equal(a, b)
