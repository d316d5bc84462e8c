"""``edgeline ingest``: a faulty set fully accounted for, and bad invocations as one line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import tensorflow as tf

import edgeline  # noqa: F401
from edgeline.components.ingest import cli
from edgeline.pipeline import records


def run_cli(argv: list[str]) -> int:
    """The ingest subcommands on a parser of their own (the handler is the real one)."""
    parser = argparse.ArgumentParser(prog="edgeline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_each_fault_is_fixed_or_rejected_and_counted(fault_set, tmp_path, capsys):
    """Acceptance 4: three fixed, three rejected with reasons, seen == written + rejected."""
    source, outcomes = fault_set
    output = tmp_path / "out"
    code = run_cli(["ingest", "imagenet", str(source), "--output", str(output),
                    "--train-shards", "3", "--workers", "1", "--no-progress"])
    assert code == 0
    artifact = json.loads((output / "artifact.json").read_text())
    assert artifact["type"] == "Examples"
    train = artifact["properties"]["splits"]["train"]
    assert (train["seen"], train["written"], train["fixed"], train["rejected"]) == (8, 5, 3, 3)
    assert train["seen"] == train["written"] + train["rejected"]
    assert artifact["properties"]["task"] == "classification"
    assert artifact["properties"]["num_classes"] == 2
    assert {"labels.txt", "rejected.jsonl", "train-00000-of-00003.tfrecord"} <= set(
        artifact["files"])

    rejected = [json.loads(line) for line in (output / "rejected.jsonl").open()]
    reasons = {row["path"].rsplit("/", 1)[1]: row["reason"] for row in rejected}
    assert set(reasons) == {n for n, o in outcomes.items() if o == "rejected"}
    assert reasons["empty.JPEG"] == "empty file"
    assert reasons["text.JPEG"].startswith("not an image")
    assert reasons["truncated.JPEG"].startswith("truncated JPEG")
    fixed = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)["fix"]
             for line in (output / "fixed.jsonl").open()}
    assert set(fixed) == {n for n, o in outcomes.items() if o == "fixed"}
    assert "PNG" in fixed["png.JPEG"] and "CMYK" in fixed["cmyk.JPEG"]
    assert "grayscale" in fixed["gray.JPEG"]

    written = {}
    for serialized in tf.data.TFRecordDataset(records.shard_paths(output, "train")):
        row = records.parse_classification(serialized)
        assert tf.io.decode_jpeg(row[records.ENCODED], channels=0).shape[-1] == 3
        written[row[records.FILENAME].numpy().decode()] = row[records.ENCODED].numpy()
    assert set(written) == {n for n, o in outcomes.items() if o != "rejected"}
    for name in ("clean_a.JPEG", "clean_b.JPEG"):
        wnid = "n01440764" if name == "clean_a.JPEG" else "n01443537"
        assert written[name] == (source / "train" / wnid / name).read_bytes()
    assert "rejected" in capsys.readouterr().out


def test_output_folder_is_not_overwritten_by_accident(fault_set, tmp_path):
    from edgeline.pipeline.errors import UserError

    source, _ = fault_set
    output = tmp_path / "out"
    output.mkdir()
    (output / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        run_cli(["ingest", "imagenet", str(source), "--output", str(output)])
    with pytest.raises(UserError, match="holds no edgeline artifact"):
        run_cli(["ingest", "imagenet", str(source), "--output", str(output), "--overwrite"])
    assert (output / "precious.txt").read_text() == "keep me"


def test_beam_flags_pass_through_and_misspelt_ones_are_refused():
    parser = argparse.ArgumentParser(prog="edgeline")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ingest", "imagenet", "SRC", "--output", "o", "--runner",
                              "DataflowRunner", "--project", "p", "--region=europe-west4"])
    assert args.source == "SRC" and args.runner == "DataflowRunner"
    assert args.beam_args == ["--project", "p", "--region=europe-west4"]
    from edgeline.components.ingest.beam_pipeline import pipeline_options, unknown_beam_flags

    assert unknown_beam_flags(args.beam_args) == []
    assert unknown_beam_flags(["--projcet", "p"]) == ["--projcet", "p"]
    assert unknown_beam_flags(["--project", "p", "stray"]) == ["stray"]
    options = pipeline_options(2, "DirectRunner", ["--direct_num_workers", "9"])
    assert options.get_all_options()["direct_num_workers"] == 2
    assert options.get_all_options()["direct_running_mode"] == "multi_processing"


def _edgeline(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeline", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing_source", "source_not_found", "empty_folder",
                                  "unknown_classes", "unknown_beam_flag"])
def test_bad_invocations_exit_2_with_one_line(case, tmp_path, fault_set):
    """Acceptance 7."""
    source, _ = fault_set
    output = str(tmp_path / "out")
    if case == "missing_source":
        argv, expected = ["ingest", "imagenet", "--output", output], "SOURCE"
    elif case == "source_not_found":
        argv, expected = ["ingest", "imagenet", "nowhere", "--output", output], "nowhere"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        argv, expected = ["ingest", "imagenet", str(tmp_path / "empty"), "--output", output], (
            "no ImageNet data")
    elif case == "unknown_classes":
        (source / "val").mkdir()
        (source / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
        labels = tmp_path / "labels.csv"
        labels.write_text("filename,wnid\nILSVRC2012_val_00000001.JPEG,n99999999\n")
        argv = ["ingest", "imagenet", str(source), "--output", output, "--val-labels",
                str(labels)]
        expected = "n99999999"
    else:
        argv = ["ingest", "imagenet", str(source), "--output", output, "--num-wrokers", "2"]
        expected = "--num-wrokers"
    result = _edgeline(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_coco_command_writes_examples_and_the_ground_truth(tmp_path, shared_data):
    small = shared_data / "coco" / "small"
    output = tmp_path / "out"
    code = run_cli(["ingest", "coco", "--images", str(small), "--annotations",
                    str(small / "gt_dataset.json"), "--split", "validation", "--output",
                    str(output), "--val-shards", "2", "--workers", "1", "--no-progress"])
    assert code == 0
    artifact = json.loads((output / "artifact.json").read_text())
    assert artifact["properties"]["task"] == "detection"
    assert artifact["properties"]["splits"]["validation"]["written"] == 3
    truth = json.loads((small / "gt_dataset.json").read_text())
    saved = json.loads((output / "validation_annotations.json").read_text())
    assert saved["annotations"] == truth["annotations"]  # segmentation and all, for evaluate
    assert (output / "labels.txt").read_text().splitlines() == [
        "1\tcloud", "2\theart", "3\tarrow", "4\tstar"]
    by_id = {}
    for serialized in tf.data.TFRecordDataset(records.shard_paths(output, "validation")):
        row = records.parse_detection(serialized)
        by_id[int(row[records.SOURCE_ID])] = row[records.FILENAME].numpy().decode()
    assert by_id == {i["id"]: i["file_name"] for i in truth["images"]}
