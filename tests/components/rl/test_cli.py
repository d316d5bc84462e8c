"""``edgeline rl train``: bad input is one line and exit code 2; kill -9 resumes; the runner
publishes a cached Policy artifact."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgeline.cli import main, stage_registry

CARTPOLE_STEP = {
    "stage": "rl",
    "algorithm": "dqn",
    "dqn": {
        "q_network": "dqn_mlp_100_50",
        "initial_collect_steps": 200,
        "epsilon_decay_steps": 1000,
        "replay_capacity": 5000,
    },
    "max_env_steps": 1600,
    "eval_interval": 500,
    "eval_episodes": 3,
    "checkpoint_interval": 200,
    "log_interval": 200,
    "parity_observations": 100,
}


def _write_config(path: Path, step: dict, name: str = "cartpole") -> Path:
    config = {"name": name, "seed": 3, "deterministic": True, "steps": {"dqn": step}}
    path.write_text(yaml.safe_dump(config))
    return path


def test_rl_is_a_registered_stage_publishing_policies():
    stage = stage_registry().get("rl")
    assert stage.artifact_type == "Policy"


def test_help_explains_the_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["rl", "train", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("stage: rl", "policy.tflite", "resumes", "--set", "eval_interval"):
        assert phrase in text


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({**CARTPOLE_STEP, "dqn": {"batch_size": 0}}, "Received: batch_size=0"),
        ({**CARTPOLE_STEP, "gamma": 0.9}, "dqn.gamma: unknown key"),
        ({**CARTPOLE_STEP, "environment": {"name": "CartPole-v7"}}, "unknown Gym id"),
        ({**CARTPOLE_STEP, "dqn": {"q_network": "dqn_resnet"}}, "not a Q-network preset"),
    ],
)
def test_bad_config_is_one_line_and_exit_code_2(tmp_path, capsys, step, message):
    config = _write_config(tmp_path / "bad.yaml", step)
    code = main(["rl", "train", str(config), "--runs-dir", str(tmp_path / "runs")])
    stderr = capsys.readouterr().err
    last_line = stderr.strip().splitlines()[-1]
    assert code == 2
    assert last_line.startswith("edgeline: error:") and message in last_line
    assert "Traceback" not in stderr


def test_a_config_without_rl_steps_is_refused(tmp_path, capsys):
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump({"steps": {"data": {"stage": "ingest"}}}))
    assert main(["rl", "train", str(config)]) == 2
    assert "no step with stage: rl (stages in the file: ingest)" in capsys.readouterr().err


def _latest_checkpoint_iteration(runs_dir: Path) -> int:
    numbers = [
        int(match.group(1))
        for path in runs_dir.glob("cache/rl/*/checkpoint/ckpt-*.index")
        if (match := re.search(r"ckpt-(\d+)\.index$", path.name))
    ]
    return max(numbers, default=-1)


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_run_resumes_from_the_last_checkpoint(tmp_path):
    # Acceptance 5: the real CLI in a subprocess, killed with SIGKILL once a checkpoint past
    # the start exists; the rerun continues from it instead of starting over.
    config = _write_config(tmp_path / "cartpole.yaml", CARTPOLE_STEP)
    runs_dir = tmp_path / "runs"
    command = [sys.executable, "-m", "edgeline", "rl", "train", str(config)]
    command += ["--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.time() + 300
        while _latest_checkpoint_iteration(runs_dir) < 200:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = _latest_checkpoint_iteration(runs_dir)
    assert 200 <= killed_at < 1400
    assert not list(runs_dir.glob("artifacts/rl/*/artifact.json"))  # nothing published

    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = re.search(r"resumed from the checkpoint at iteration (\d+), env step (\d+)",
                        rerun.stderr)
    assert resumed, rerun.stderr[-2000:]
    assert int(resumed.group(1)) >= killed_at and int(resumed.group(2)) > 200
    [artifact_json] = runs_dir.glob("artifacts/rl/*/artifact.json")
    artifact = json.loads(artifact_json.read_text())
    assert artifact["type"] == "Policy"
    assert artifact["metrics"]["resumed"] is True
    assert artifact["metrics"]["env_steps"] == 1600  # the budget, not budget + work redone
    history = json.loads((artifact_json.parent / "history.json").read_text())
    assert history["resumes"][0]["env_steps"] > 200
    env_steps = [row["env_steps"] for row in history["evaluations"]]
    assert env_steps == sorted(set(env_steps))  # one curve, no repeated stretch
    assert not list(runs_dir.glob("cache/rl/*/checkpoint"))  # removed once published

    # A second run of the same config is a cache hit.
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "dqn: cached" in again.stdout
