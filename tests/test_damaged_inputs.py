"""Damaged artifacts given to a standalone command: one line naming the file, exit code 2.

Issue "Nothing lost, nothing hung", items 10-12. A shard truncated inside a record ended
`edgeline evaluate/train/export` in a TensorFlow DataLossError traceback; one cut cleanly
between records was read short without a word (evaluate scored 200 of 300 images, train
recorded examples that did not exist); a damaged SavedModel gave `evaluate --form
saved_model` a traceback. Every command now checks an input artifact's manifest (the size and
SHA-256 of each file, as the runner does for what it reuses) before reading it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from edgeline.cli import main
from edgeline.pipeline import records
from edgeline.pipeline.artifacts import publish, staging_dir

sys.path.insert(0, str(Path(__file__).resolve().parent / "components" / "train"))

import train_helpers  # noqa: E402

pytestmark = pytest.mark.slow  # trains a tiny model once (seconds)

TRAIN_OPTIONS = """\
model: {model}
epochs: 1
batch_size: 8
data: {{input_size: [32, 32], shuffle_buffer: 64}}
progress: 'off'
tensorboard: false
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A published Examples artifact and a Model artifact trained on it (both with their
    artifact.json manifest), made through the real commands."""
    root = tmp_path_factory.mktemp("damaged")
    examples = train_helpers.write_classification_examples(root / "shards", train=48,
                                                           validation=24)
    final = root / "examples"
    staging = staging_dir(final)
    shutil.copytree(examples, staging, dirs_exist_ok=True)
    publish(staging, final, type="Examples", producer="test:ingest", fingerprint="e" * 64,
            inputs={}, properties={"task": "classification"}, metrics={})
    config = root / "train.yaml"
    config.write_text(TRAIN_OPTIONS.format(model=train_helpers.register_tiny_model()))
    assert main(["train", str(config), "--examples", str(final), "--output",
                 str(root / "model")]) == 0
    return {"root": root, "examples": final, "model": root / "model", "config": config}


def _copy(path: Path, tmp_path: Path) -> Path:
    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    return copy


def _truncate_inside_a_record(shard: Path) -> None:
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])


def _cut_between_records(shard: Path) -> None:
    kept = list(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator())[:-2]
    with tf.io.TFRecordWriter(str(shard)) as writer:
        for record in kept:
            writer.write(record)


def _commands(inputs: dict, tmp_path: Path) -> dict[str, list[str]]:
    out = str(tmp_path / "out")
    return {
        "train": ["train", str(inputs["config"]), "--examples", str(inputs["examples"]),
                  "--output", out],
        "evaluate": ["evaluate", str(inputs["model"]), str(inputs["examples"]), "--output", out],
        "export": ["export", "tflite", str(inputs["model"]), "--examples",
                   str(inputs["examples"]), "--output", out, "--quantize", "int8",
                   "--no-latency"],
    }


@pytest.mark.parametrize("damage", [_truncate_inside_a_record, _cut_between_records])
@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_a_damaged_shard_is_refused_naming_it(published, tmp_path, capsys, damage, command):
    examples = _copy(published["examples"], tmp_path)
    shard = Path(records.shard_paths(examples, "validation")[0])
    damage(shard)
    inputs = {**published, "examples": examples}
    code = main(_commands(inputs, tmp_path)[command])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{shard.name} has" in err and "is damaged" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing published from damaged input


@pytest.mark.parametrize("damaged_file", ["saved_model/saved_model.pb", "model.keras"])
def test_a_damaged_model_is_refused_naming_the_file(published, tmp_path, capsys, damaged_file):
    model = _copy(published["model"], tmp_path)
    target = model / damaged_file
    data = bytearray(target.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    target.write_bytes(bytes(data))
    code = main(["evaluate", str(model), str(published["examples"]), "--output",
                 str(tmp_path / "out"), "--form", "saved_model"])
    err = capsys.readouterr().err
    assert code == 2 and f"{damaged_file} does not match its sha256" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_damaged_saved_model_outside_any_artifact_is_one_line(published, tmp_path, capsys):
    """Without a manifest to check first, loading the damaged SavedModel still ends in one
    line, not a protobuf traceback."""
    model = _copy(published["model"], tmp_path)
    (model / "artifact.json").unlink()
    (model / "saved_model" / "saved_model.pb").write_bytes(b"not a protobuf" * 10)
    code = main(["evaluate", str(model), str(published["examples"]), "--output",
                 str(tmp_path / "out"), "--form", "saved_model"])
    err = capsys.readouterr().err
    assert code == 2 and "not a readable SavedModel" in err, err
    assert len(err.strip().splitlines()) == 1
