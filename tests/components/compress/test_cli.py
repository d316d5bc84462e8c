"""``edgeline compress``: --help, and bad input as exit code 2 with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _edgeline(*args):
    return subprocess.run([sys.executable, "-m", "edgeline", *args], capture_output=True,
                          text=True)


def test_help_explains_the_methods():
    result = _edgeline("compress", "--help")
    assert result.returncode == 0
    for word in ("bn_fold", "prune", "cluster", "qat", "distill", "frontier", "--examples"):
        assert word in result.stdout


@pytest.mark.parametrize("body, expected", [
    ("steps:\n  - {method: squash}\n", "compress.steps[0].method: expected one of"),
    ("steps:\n  - {method: prune, prune: {target_sparsity: 80}}\n", "target_sparsity=80"),
    ("steps:\n  - {method: qat}\n  - {method: prune}\n", "qat only as the last step"),
])
def test_bad_recipe_is_exit_2_and_one_line(tmp_path, body, expected):
    config = tmp_path / "recipe.yaml"
    config.write_text(body)
    result = _edgeline("compress", str(config), "--model", str(tmp_path), "--examples",
                       str(tmp_path), "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_a_directory_that_is_not_a_model_is_exit_2(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("steps:\n  - {method: bn_fold}\n")
    (tmp_path / "examples").mkdir()
    result = _edgeline("compress", str(config), "--model", str(tmp_path / "examples"),
                       "--examples", str(tmp_path / "examples"), "--output",
                       str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "not a Model artifact" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_edgeline_did_not_write_is_never_deleted(tmp_path, overwrite):
    """compress once deleted --output before it started, whatever the folder held."""
    config = tmp_path / "recipe.yaml"
    config.write_text("steps:\n  - {method: bn_fold}\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = _edgeline("compress", str(config), "--model", str(model), "--examples",
                       str(tmp_path), "--output", str(mine), *overwrite)
    assert result.returncode == 2, result.stderr
    assert "holds no edgeline artifact" in result.stderr and "Traceback" not in result.stderr
    assert (mine / "notes.txt").read_text() == "keep me"
