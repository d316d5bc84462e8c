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


# -- issue 19: nothing lost, nothing hung ----------------------------------------------------
def _limited_memory() -> None:
    """In the child: at most 3 GB of data, so a reader that never stops fails fast instead of
    taking the machine's memory (RLIMIT_DATA counts anonymous mappings, Linux >= 4.7)."""
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))


def test_named_pipes_and_device_links_are_rejected_never_read(tmp_path, fault_set):
    """Item 6: a named pipe called x.JPEG hung ingest forever; a link to /dev/zero read until
    memory ran out."""
    import os

    source, outcomes = fault_set
    folder = source / "train" / "n01440764"
    os.mkfifo(folder / "x.JPEG")
    (folder / "zero.JPEG").symlink_to("/dev/zero")
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "edgeline", "ingest", "imagenet", str(source), "--output",
         str(output), "--train-shards", "2", "--workers", "1", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=_limited_memory)
    assert result.returncode == 0, result.stderr
    rejected = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)["reason"]
                for line in (output / "rejected.jsonl").open()}
    assert rejected["x.JPEG"] == "not a regular file (named pipe), not read"
    assert rejected["zero.JPEG"] == ("symbolic link to /dev/zero, outside the source "
                                     "(not followed)")
    train = json.loads((output / "artifact.json").read_text())["properties"]["splits"]["train"]
    assert (train["seen"], train["rejected"]) == (len(outcomes) + 2, 3 + 2)


def test_reading_refuses_what_is_not_a_regular_file(tmp_path):
    """Checked on the open file too: a file swapped for a pipe after listing is not read."""
    import os

    from edgeline.components.ingest.sources import FileRef, InputRefused, read_bytes

    os.mkfifo(tmp_path / "pipe")
    for path, kind in ((tmp_path / "pipe", "named pipe"), ("/dev/zero", "character device")):
        with pytest.raises(InputRefused, match=f"not a regular file \\({kind}\\)"):
            read_bytes(FileRef("train", "k", str(path), str(path)))


def test_a_rerun_removes_the_staging_folder_of_a_killed_ingest(tmp_path, fault_set):
    """Item 8: a killed `edgeline ingest` left its hidden staging folder beside --output, and
    no rerun removed it."""
    import time

    source, _ = fault_set
    output = tmp_path / "out"
    argv = ["ingest", "imagenet", str(source), "--output", str(output), "--train-shards", "2",
            "--workers", "1", "--no-progress"]
    writer = subprocess.Popen([sys.executable, "-m", "edgeline", *argv], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Written in the runs directory beside --output first (published there, then placed).
    staging = ".edgeline-runs/artifacts/ingest/.*.tmp-*"
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(staging)):
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    writer.kill()
    writer.wait()
    assert [p.name for p in tmp_path.glob(staging)] != []  # what the kill left behind
    assert run_cli(argv) == 0
    assert [p for p in tmp_path.rglob("*.tmp-*")] == []
    assert (output / "artifact.json").is_file()


def test_the_staging_folder_of_a_live_writer_is_left_alone(tmp_path, fault_set):
    import os

    source, _ = fault_set
    live = tmp_path / f".out.tmp-{os.getppid()}-0123abcd"  # the parent of this process runs
    live.mkdir()
    assert run_cli(["ingest", "imagenet", str(source), "--output", str(tmp_path / "out"),
                    "--train-shards", "1", "--workers", "1", "--no-progress"]) == 0
    assert live.is_dir()


@pytest.mark.parametrize("case, expected", [
    ("iscrowd_yes", "gt.json: annotation 10: iscrowd must be 0 or 1, received 'yes'"),
    ("width_nan", "gt.json: images[0].width is NaN or infinite"),
    ("annotation_not_an_object", "gt.json: annotations[0] must be an object, received [1, 2]"),
])
def test_bad_coco_files_exit_2_with_one_line_naming_the_entry(tmp_path, shared_data, case,
                                                               expected):
    """Item 9: iscrowd "yes" ended in a traceback. A COCO file that breaks the format is bad
    input, stopped before any work; a bad box alone is dropped (test_core)."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(
        (shared_data / "imagenet_sample/train/n01440764/n01440764_tench.JPEG").read_bytes())
    width = "NaN" if case == "width_nan" else "500"
    annotation = {"iscrowd_yes": '{"id": 10, "image_id": 1, "category_id": 7, '
                                 '"bbox": [1, 2, 3, 4], "iscrowd": "yes"}',
                  "width_nan": '{"id": 10, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4]}',
                  "annotation_not_an_object": "[1, 2]"}[case]
    (tmp_path / "gt.json").write_text(
        f'{{"images": [{{"id": 1, "file_name": "a.jpg", "width": {width}, "height": 375}}], '
        f'"annotations": [{annotation}], "categories": [{{"id": 7, "name": "fish"}}]}}')
    result = _edgeline("ingest", "coco", "--images", str(images), "--annotations",
                       str(tmp_path / "gt.json"), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
