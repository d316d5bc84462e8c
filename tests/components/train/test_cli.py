"""`edgeline train`: help, bad input as one line with exit code 2, a run to an artifact."""

from __future__ import annotations

import json

import pytest
import train_helpers

from edgeline.cli import main

OPTIONS = """\
model: {model}
epochs: 1
steps_per_epoch: 2
batch_size: 8
data: {{input_size: [32, 32], shuffle_buffer: 64}}
progress: 'off'
"""


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for words in ("--examples", "--output", "--cache-dir", "mixed_precision", "multi_worker",
                  "freeze_backbone_epochs"):
        assert words in text


@pytest.mark.parametrize(
    "body, extra, message",
    [("epochs: 0\n", [], "train: Received: epochs=0"),
     ("epochz: 1\n", [], "train.epochz: unknown key"),
     ("steps:\n  a: {stage: train}\n  b: {stage: train}\n", [], "2 train steps (a, b)"),
     ("steps:\n  a: {stage: train}\n", ["--step", "c"], "--step c: no train step"),
     ("epochs: 1\n", ["--set", "optimizer.name=lamb"], "train.optimizer.name: expected one of")],
)
def test_bad_config_is_one_line_and_exit_code_2(body, extra, message, tmp_path, capsys,
                                                 classification_examples):
    config = tmp_path / "train.yaml"
    config.write_text(body)
    code = main(["train", str(config), "--examples", str(classification_examples),
                 "--output", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_examples_directory(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 1\n")
    assert main(["train", str(config), "--examples", str(tmp_path / "none"), "--output",
                 str(tmp_path / "out")]) == 2
    assert "--examples: not a directory" in capsys.readouterr().err


def test_train_publishes_a_model_artifact(tmp_path, capsys, classification_examples,
                                          tiny_model):
    config = tmp_path / "train.yaml"
    config.write_text(OPTIONS.format(model=tiny_model))
    output = tmp_path / "model"
    code = main(["train", str(config), "--examples", str(classification_examples), "--output",
                 str(output), "--set", "optimizer.learning_rate=0.05", "--seed", "2"])
    assert code == 0, capsys.readouterr().err
    assert f"model: {output}" in capsys.readouterr().out
    artifact = json.loads((output / "artifact.json").read_text())
    assert artifact["type"] == "Model" and "val_top1" in artifact["metrics"]
    assert "model.keras" in artifact["files"]
    assert not list((tmp_path / ".train-cache" / "train").iterdir())
    assert train_helpers.weights_of(output)

    # The same --output again: refused without --overwrite, replaced with it.
    first = (output / "artifact.json").read_text()
    rerun = ["train", str(config), "--examples", str(classification_examples), "--output",
             str(output), "--seed", "3"]
    assert main(rerun) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (output / "artifact.json").read_text() == first
    assert main([*rerun, "--overwrite"]) == 0
    assert (output / "artifact.json").read_text() != first
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("as_dot", [False, True])
def test_a_folder_edgeline_did_not_write_is_never_replaced(tmp_path, capsys, monkeypatch,
                                                           classification_examples, overwrite,
                                                           as_dot):
    """`--output .` in a checkout once deleted the checkout (sources, .git, .venv)."""
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / "train.py").write_text("print('mine')\n")
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 1\n")
    if as_dot:
        monkeypatch.chdir(checkout)
    output = "." if as_dot else str(checkout)
    code = main(["train", str(config), "--examples", str(classification_examples), "--output",
                 output, *overwrite])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "holds no edgeline artifact" in err
    assert sorted(p.name for p in checkout.iterdir()) == [".git", "train.py"]
    assert (checkout / "train.py").read_text() == "print('mine')\n"
    assert (checkout / ".git" / "HEAD").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name == ".train-cache"]
