"""The CLI's contract: --help everywhere, exit code 2 and one line for bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _edgeline(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_help_lists_the_commands():
    result = _edgeline("--help")
    assert result.returncode == 0
    for command in ("run", "runs", "models"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "body, expected",
    [
        ("name: x\nsteps:\n  a:\n    stage: nope\n", "a.stage: unknown stage 'nope'"),
        ("name: x\nbogus: 1\nsteps: {}\n", "bogus: unknown key (received 1)"),
        ("name: x\nsteps: [\n", "not valid YAML"),
    ],
)
def test_bad_config_is_exit_2_and_one_line(tmp_path, body, expected):
    config = tmp_path / "bad.yaml"
    config.write_text(body)
    result = _edgeline("run", str(config), "--runs-dir", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_missing_config_and_usage_errors_are_exit_2(tmp_path):
    result = _edgeline("run", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "config file does not exist" in result.stderr
    result = _edgeline("run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    result = _edgeline("runs", "show", "--runs-dir", str(tmp_path / "none"))
    assert result.returncode == 2 and "no runs directory" in result.stderr
