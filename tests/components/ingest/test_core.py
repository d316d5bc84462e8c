"""The ingest core end to end on real images: folder vs tars, faults, workers, COCO."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import edgeline  # noqa: F401
from edgeline.components.ingest import core, imagenet
from edgeline.components.ingest.options import IngestOptions
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError


def read_classification(directory: Path, split: str = "train") -> list[dict]:
    paths = records.shard_paths(directory, split)
    rows = []
    for serialized in tf.data.TFRecordDataset(paths):
        parsed = records.parse_classification(serialized)
        rows.append({key: value.numpy() for key, value in parsed.items()})
    return rows


def identity(rows: list[dict]) -> set[tuple]:
    """(filename, label, synset, sha256 of image/encoded) of every example."""
    return {
        (r[records.FILENAME].decode(), int(r[records.LABEL]), r[records.SYNSET].decode(),
         hashlib.sha256(r[records.ENCODED]).hexdigest())
        for r in rows
    }


def shard_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.tfrecord"))}


def ingest(output: Path, **options) -> dict:
    options.setdefault("workers", 1)
    result = core.run(IngestOptions(**options), output)
    return result.properties


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory, shared_data, ingest_helpers):
    """The real ImageNet sample ingested from its folder and from ILSVRC-style tars."""
    work = tmp_path_factory.mktemp("sample")
    train_dir = ingest_helpers.imagenet_sample(shared_data)
    tars = work / "tars"
    tars.mkdir()
    ingest_helpers.pack_ilsvrc_train_tar(train_dir, tars / imagenet.TRAIN_TAR)
    folder = ingest(work / "from_folder", source=str(train_dir), train_shards=4)
    tar = ingest(work / "from_tars", source=str(tars), train_shards=4)
    return work, train_dir, folder, tar


def test_folder_and_tar_sources_give_the_same_images(sample_runs):
    """Acceptance 3."""
    work, train_dir, folder, tar = sample_runs
    from_folder = read_classification(work / "from_folder")
    from_tars = read_classification(work / "from_tars")
    assert len(from_folder) == 123
    assert identity(from_folder) == identity(from_tars)
    # Keys match too, so the shards themselves are the same bytes.
    assert shard_bytes(work / "from_folder") == shard_bytes(work / "from_tars")
    assert folder["splits"] == tar["splits"]
    assert folder["splits"]["train"] | {"bytes": 0} == {
        "seen": 123, "written": 123, "fixed": 23, "rejected": 0, "shards": 4, "bytes": 0}


def test_every_written_image_is_a_3_channel_jpeg_and_rgb_ones_pass_through(sample_runs):
    work, train_dir, _, _ = sample_runs
    sources = {p.name: p.read_bytes() for p in train_dir.glob("*/*.JPEG")}
    passed_through = 0
    for row in read_classification(work / "from_tars"):
        encoded = row[records.ENCODED]
        image = tf.io.decode_jpeg(encoded, channels=0)  # (H, W, C) as stored
        assert image.shape == (row[records.HEIGHT], row[records.WIDTH], 3)
        assert row[records.SHA256].decode() == hashlib.sha256(encoded).hexdigest()
        assert row[records.SYNSET].decode() == row[records.FILENAME].decode()[:9]
        passed_through += encoded == sources[row[records.FILENAME].decode()]
    assert passed_through == 100  # the 23 grayscale images were re-encoded, nothing else


def test_tensorflow_datasets_reads_the_output(sample_runs):
    import tensorflow_datasets as tfds

    work, _, _, _ = sample_runs
    builder = tfds.builder_from_directory(str(work / "from_folder"))
    assert builder.info.splits["train"].num_examples == 123
    label = builder.info.features["image"]["class"]["label"]
    assert label.num_classes == 123 and label.names[0] == "n01440764"
    for example in builder.as_dataset(split="train").take(3):
        image = example["image"]["encoded"]
        assert image.dtype == tf.uint8 and image.shape[-1] == 3
        wnid = example["image"]["class"]["synset"].numpy().decode()
        assert label.int2str(int(example["image"]["class"]["label"])) == wnid


@pytest.mark.slow
def test_one_and_two_workers_write_byte_identical_shards(sample_runs, fault_set):
    """Acceptance 5 (the 2-worker run uses the multi-processing DirectRunner)."""
    work, train_dir, _, _ = sample_runs
    source, _ = fault_set
    shutil.copytree(train_dir, source / "train", dirs_exist_ok=True)
    one = ingest(work / "one_worker", source=str(source), train_shards=5, workers=1)
    two = ingest(work / "two_workers", source=str(source), train_shards=5, workers=2)
    assert one["splits"] == two["splits"]
    assert one["splits"]["train"]["written"] == 128
    assert shard_bytes(work / "one_worker") == shard_bytes(work / "two_workers")
    for name in ("rejected.jsonl", "fixed.jsonl", "labels.txt"):
        assert (work / "one_worker" / name).read_bytes() == (
            work / "two_workers" / name).read_bytes()


def test_validation_subset_is_labelled_by_file_number_from_folder_and_tar(
    tmp_path, shared_data, ingest_helpers
):
    with open(Path(imagenet.tfds_imagenet_dir()) / "validation_labels.txt") as f:
        truth = f.read().split()
    sample = ingest_helpers.imagenet_sample(shared_data)
    classes = {p.name: p for p in sorted(sample.iterdir())}
    # Three numbers whose true class has a sample image, far apart, plus one whose class is
    # not a training class here.
    numbers = [n for n in range(1, 50_001) if truth[n - 1] in classes][::40][:3]
    outsider = next(n for n in range(1, 50_001) if truth[n - 1] not in classes)
    val_files = {}
    for number in [*numbers, outsider]:
        image = next(classes.get(truth[number - 1], sample / "n01440764").iterdir())
        val_files[f"ILSVRC2012_val_{number:08d}.JPEG"] = image.read_bytes()
    train_classes = sorted({truth[n - 1] for n in numbers})
    folder = tmp_path / "folder"
    for wnid in train_classes:
        shutil.copytree(classes[wnid], folder / "train" / wnid)
    (folder / "val").mkdir()
    for name, data in val_files.items():
        (folder / "val" / name).write_bytes(data)
    tars = tmp_path / "tars"
    tars.mkdir()
    ingest_helpers.pack_ilsvrc_train_tar(folder / "train", tars / imagenet.TRAIN_TAR)
    ingest_helpers.pack_flat_tar(val_files, tars / imagenet.VAL_TAR)

    outputs = {}
    for name, source in (("folder", folder), ("tars", tars)):
        properties = ingest(tmp_path / f"out_{name}", source=str(source), train_shards=2,
                            val_shards=2)
        assert properties["splits"]["validation"] | {"bytes": 0} == {
            "seen": 4, "written": 3, "fixed": 0, "rejected": 1, "shards": 2, "bytes": 0}
        outputs[name] = tmp_path / f"out_{name}"
    rows = read_classification(outputs["tars"], "validation")
    for row in rows:
        number = int(row[records.FILENAME].decode()[15:23])
        assert row[records.SYNSET].decode() == truth[number - 1]
        assert row[records.LABEL] == train_classes.index(truth[number - 1])  # sorted order
    assert shard_bytes(outputs["folder"]) == shard_bytes(outputs["tars"])
    rejected = [json.loads(line) for line in (outputs["tars"] / "rejected.jsonl").open()]
    assert rejected[0]["path"].endswith(f"{imagenet.VAL_TAR}:ILSVRC2012_val_{outsider:08d}.JPEG")
    assert "not among the" in rejected[0]["reason"]


def test_coco_boxes_round_trip(tmp_path, shared_data):
    """Acceptance 6: boxes read back, scaled by the image size, equal the annotations."""
    voc = shared_data / "voc100"
    properties = ingest(tmp_path, format="coco", images=str(voc / "images"),
                        annotations=str(voc / "instances.json"), train_shards=3)
    assert properties["task"] == "detection" and properties["num_classes"] == 20
    assert properties["splits"]["train"]["written"] == 100
    truth = json.loads((voc / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in truth["categories"]}
    expected = {}
    for a in truth["annotations"]:
        expected.setdefault(a["image_id"], []).append(a)
    boxes = 0
    for serialized in tf.data.TFRecordDataset(records.shard_paths(tmp_path, "train")):
        row = {k: v.numpy() for k, v in records.parse_detection(serialized).items()}
        image_id = int(row[records.SOURCE_ID])
        width, height = row[records.WIDTH], row[records.HEIGHT]
        annotations = sorted(expected.get(image_id, []), key=lambda a: a["id"])
        for i, a in enumerate(annotations):
            x, y, w, h = a["bbox"]
            got = (row[records.BBOX_XMIN][i] * width, row[records.BBOX_YMIN][i] * height,
                   row[records.BBOX_XMAX][i] * width, row[records.BBOX_YMAX][i] * height)
            assert got == pytest.approx((x, y, x + w, y + h), abs=1e-3)
            assert row[records.OBJECT_LABEL][i] == a["category_id"]
            assert row[records.OBJECT_TEXT][i].decode() == names[a["category_id"]]
            assert row[records.OBJECT_IS_CROWD][i] == a["iscrowd"]
            assert row[records.OBJECT_AREA][i] == pytest.approx(a["area"])
        assert len(row[records.BBOX_XMIN]) == len(annotations)
        boxes += len(annotations)
    assert boxes == 273
    saved = json.loads((tmp_path / "train_annotations.json").read_text())
    assert saved["images"] == truth["images"] and saved["annotations"] == truth["annotations"]
    labels = (tmp_path / "labels.txt").read_text().splitlines()
    assert labels[0] == f"1\t{names[1]}" and len(labels) == 20

    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(tmp_path))
    assert builder.info.splits["train"].num_examples == 100
    boxes_read = sum(int(tf.size(example["image"]["object"]["bbox"]["xmin"]))
                     for example in builder.as_dataset(split="train"))
    assert boxes_read == 273


def test_coco_images_that_cannot_hold_their_boxes_are_rejected(tmp_path, ingest_helpers,
                                                               shared_data, capfd):
    from PIL import Image

    photo = ingest_helpers.imagenet_sample(shared_data) / "n01440764/n01440764_tench.JPEG"
    images = tmp_path / "images"
    images.mkdir()
    (images / "good.jpg").write_bytes(photo.read_bytes())  # 500x375
    (images / "wrong_size.jpg").write_bytes(photo.read_bytes())
    gray = Image.open(photo).convert("L")
    gray.save(images / "gray.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "good.jpg", "width": 500, "height": 375},
            {"id": 2, "file_name": "wrong_size.jpg", "width": 375, "height": 500},
            {"id": 3, "file_name": "missing.jpg", "width": 500, "height": 375},
            {"id": 4, "file_name": "gray.jpg", "width": 0, "height": 0},
        ],
        "annotations": [
            {"id": 10, "image_id": i, "category_id": 7, "bbox": [1, 2, 30, 40], "area": 1200,
             "iscrowd": 0} for i in (1, 2, 3, 4)
        ],
        "categories": [{"id": 7, "name": "fish"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(data))
    result = core.run(IngestOptions(format="coco", images=str(images), workers=1,
                                    annotations=str(tmp_path / "gt.json"), split="validation",
                                    val_shards=2), tmp_path / "out", progress=True)
    properties = result.properties
    # Not a terminal: the progress is a plain line, with the images each split holds.
    assert "ingest: 2/2 shard, validation images 2\n" in capfd.readouterr().err
    assert properties["splits"] == {"validation": {
        "seen": 4, "written": 2, "fixed": 1, "rejected": 2, "shards": 2,
        "bytes": properties["splits"]["validation"]["bytes"], "boxes_dropped": 0,
        "boxes_fixed": 0}}
    rejected = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)["reason"]
                for line in (tmp_path / "out" / "rejected.jsonl").open()}
    assert rejected == {"missing.jpg": "file not found",
                        "wrong_size.jpg": "image is 500x375 but the annotations say 375x500"}
    saved = json.loads((tmp_path / "out" / "validation_annotations.json").read_text())
    assert [i["id"] for i in saved["images"]] == [1, 4]
    assert [a["image_id"] for a in saved["annotations"]] == [1, 4]


def test_a_source_without_files_is_a_user_error(tmp_path):
    (tmp_path / "src" / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(UserError, match="no input files"):
        ingest(tmp_path / "out", source=str(tmp_path / "src"), train_shards=1)


def test_unsafe_and_stray_members_of_the_train_tar_are_listed_as_rejected(tmp_path, fault_set,
                                                                          ingest_helpers):
    source, outcomes = fault_set
    tars = tmp_path / "tars"
    tars.mkdir()
    ingest_helpers.pack_ilsvrc_train_tar(source / "train", tmp_path / "plain.tar")
    import tarfile

    with tarfile.open(tmp_path / "plain.tar") as plain:
        members = {m.name: plain.extractfile(m).read() for m in plain.getmembers()}
    inner = ingest_helpers.tar_bytes({"../../etc/cron.d/x.JPEG": b"evil", "ok.JPEG": b""})
    members |= {"../escape.tar": b"x", "README.txt": b"hello", "n01443537.tar": inner}
    ingest_helpers.pack_flat_tar(members, tars / imagenet.TRAIN_TAR)
    properties = ingest(tmp_path / "out", source=str(tars), train_shards=2)
    train = properties["splits"]["train"]
    # The tench tar holds 4 files (one empty); the goldfish tar was replaced by one holding an
    # unsafe member and an empty file; two outer members are no class tars.
    assert (train["seen"], train["rejected"]) == (4 + 2 + 2, 1 + 2 + 2)
    rejected = {json.loads(line)["path"].split(".tar:", 1)[1]: json.loads(line)["reason"]
                for line in (tmp_path / "out" / "rejected.jsonl").open()}
    assert "'..' refused" in rejected["../escape.tar"]
    assert rejected["README.txt"] == "not a per-class tar (<wnid>.tar)"
    assert "'..' refused" in rejected["n01443537.tar/../../etc/cron.d/x.JPEG"]
    assert rejected["n01443537.tar/ok.JPEG"] == "empty file"


def test_validation_in_class_folders(tmp_path, ingest_helpers, shared_data):
    sample = ingest_helpers.imagenet_sample(shared_data)
    tench = (sample / "n01440764" / "n01440764_tench.JPEG").read_bytes()
    goldfish = (sample / "n01443537" / "n01443537_goldfish.JPEG").read_bytes()
    for path, data in {"train/n01440764/a.JPEG": tench, "train/n01443537/b.JPEG": goldfish,
                       "val/n01443537/c.JPEG": goldfish, "val/n09999999/d.JPEG": tench}.items():
        (tmp_path / "src" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / path).write_bytes(data)
    properties = ingest(tmp_path / "out", source=str(tmp_path / "src"), train_shards=1,
                        val_shards=1)
    assert properties["splits"]["validation"]["written"] == 1
    assert properties["splits"]["validation"]["rejected"] == 1
    (row,) = read_classification(tmp_path / "out", "validation")
    assert (row[records.SYNSET].decode(), row[records.LABEL]) == ("n01443537", 1)
    rejected = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert rejected["reason"] == "class n09999999 is not among the 2 training classes"


# -- issue 19: nothing lost, nothing hung ----------------------------------------------------
def _tench(shared_data) -> bytes:
    return (shared_data / "imagenet_sample/train/n01440764/n01440764_tench.JPEG").read_bytes()


def _rejected(output: Path) -> dict[str, str]:
    return {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line)["reason"]
            for line in (output / "rejected.jsonl").open(encoding="utf-8")}


def test_a_16_bit_png_named_jpeg_is_written_as_its_picture_not_white(tmp_path, shared_data):
    """Item 3: Pillow's own conversion clipped every sample over 255, so the image was listed
    as fixed and written solid white."""
    from PIL import Image

    photo = Image.open(shared_data / "imagenet_sample/train/n01440764/n01440764_tench.JPEG")
    samples = np.asarray(photo.convert("L"), dtype=np.uint16) * 257  # (H, W)
    folder = tmp_path / "src" / "train" / "n01440764"
    folder.mkdir(parents=True)
    Image.fromarray(samples).save(folder / "gray16.JPEG", format="PNG")
    properties = ingest(tmp_path / "out", source=str(tmp_path / "src"), train_shards=1)
    assert properties["splits"]["train"]["fixed"] == 1
    (row,) = read_classification(tmp_path / "out")
    written = tf.io.decode_jpeg(row[records.ENCODED], channels=3).numpy()  # (H, W, 3)
    assert written.mean() == pytest.approx(samples.mean() / 257, abs=1.5)  # 106, not 255
    expected = samples / 257  # (H, W)
    assert np.abs(written.astype(float) - expected[..., None]).mean() < 3


def test_only_images_tensorflow_decodes_are_written(tmp_path, shared_data, ingest_helpers):
    """Item 4: a JPEG whose header claims 30000x30000, a real 30000x30000 JPEG and one with
    random bytes inside were written without --verify-decode, and training crashed on them."""
    import random

    tench = _tench(shared_data)
    middle = len(tench) // 2
    damaged = next(d for d in (tench[:middle] + random.Random(seed).randbytes(256)
                               + tench[middle + 256:] for seed in range(100))
                   if not _tf_decodes(d))
    folder = tmp_path / "src" / "train" / "n01440764"
    folder.mkdir(parents=True)
    files = {"clean.JPEG": tench,
             "claims_30000.JPEG": ingest_helpers.with_frame_size(tench, 30000, 30000),
             "real_30000.JPEG": ingest_helpers.flat_jpeg(30000, 30000),
             "random_bytes.JPEG": damaged}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    properties = ingest(tmp_path / "out", source=str(tmp_path / "src"), train_shards=2)
    train = properties["splits"]["train"]
    assert (train["seen"], train["written"], train["rejected"]) == (4, 1, 3)
    reasons = _rejected(tmp_path / "out")
    assert "too large for TensorFlow's JPEG decoder" in reasons["claims_30000.JPEG"]
    assert "too large for TensorFlow's JPEG decoder" in reasons["real_30000.JPEG"]
    assert reasons["random_bytes.JPEG"].startswith(("corrupt JPEG", "truncated JPEG"))
    for row in read_classification(tmp_path / "out"):
        assert tf.io.decode_jpeg(row[records.ENCODED], channels=3).shape == (375, 500, 3)


def _tf_decodes(data: bytes) -> bool:
    try:
        tf.io.decode_jpeg(data, channels=3)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def test_a_file_name_that_is_not_utf8_is_written_under_an_escaped_name(tmp_path, shared_data):
    """Item 5: one such name aborted the whole ingest (UnicodeEncodeError in every worker)."""
    import os

    tench = _tench(shared_data)
    source = tmp_path / "src"
    for folder, name in ((b"n01440764", b"caf\xe9.JPEG"), (b"n01440764", b"plain.JPEG"),
                         (b"n0144\xff", b"x.JPEG")):
        directory = os.path.join(os.fsencode(source), b"train", folder)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "wb") as f:
            f.write(tench)
    properties = ingest(tmp_path / "out", source=str(source), train_shards=2)
    assert properties["splits"]["train"] | {"bytes": 0} == {
        "seen": 3, "written": 3, "fixed": 0, "rejected": 0, "shards": 2, "bytes": 0}
    rows = read_classification(tmp_path / "out")
    names = {(r[records.SYNSET].decode(), r[records.FILENAME].decode()) for r in rows}
    assert names == {("n01440764", "caf\\xe9.JPEG"), ("n01440764", "plain.JPEG"),
                     ("n0144\\xff", "x.JPEG")}
    labels = (tmp_path / "out" / "labels.txt").read_text(encoding="utf-8")
    assert "n0144\\xff" in labels


def test_a_class_folder_linked_to_train_is_not_ingested_twice(tmp_path, shared_data):
    """Item 7: train/<wnid> -> train/ ingested every image again, under the link's name."""
    tench = _tench(shared_data)
    train = tmp_path / "src" / "train"
    for path in ("n01440764/a.JPEG", "n01443537/b.JPEG"):
        (train / path).parent.mkdir(parents=True, exist_ok=True)
        (train / path).write_bytes(tench)
    (train / "n99999999").symlink_to(train, target_is_directory=True)
    properties = ingest(tmp_path / "out", source=str(tmp_path / "src"), train_shards=2)
    assert properties["num_classes"] == 2
    train_counts = properties["splits"]["train"]
    assert (train_counts["seen"], train_counts["written"], train_counts["rejected"]) == (3, 2, 1)
    assert {r[records.SYNSET].decode() for r in read_classification(tmp_path / "out")} == {
        "n01440764", "n01443537"}
    reason = _rejected(tmp_path / "out")["n99999999"]
    assert reason.startswith("class folder is a symbolic link to ") and "two examples" in reason


def test_links_below_the_layout_folders_are_listed_not_followed(tmp_path, shared_data):
    """Only the layout folders may be links (train/ on another disk): a link below them would
    read a file from outside the source, or make one file two examples."""
    tench = _tench(shared_data)
    source, disk = tmp_path / "src", tmp_path / "disk"
    for path in (disk / "train/n01440764/a.JPEG", disk / "elsewhere/o.JPEG",
                 disk / "train/n01443537/b.JPEG"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tench)
    source.mkdir()
    (source / "train").symlink_to(disk / "train", target_is_directory=True)  # followed
    folder = disk / "train" / "n01440764"
    (folder / "outside.JPEG").symlink_to(disk / "elsewhere" / "o.JPEG")
    (folder / "again.JPEG").symlink_to(folder / "a.JPEG")
    (folder / "broken.JPEG").symlink_to(folder / "missing.JPEG")
    (folder / "sub").symlink_to(disk / "train" / "n01443537", target_is_directory=True)
    properties = ingest(tmp_path / "out", source=str(source), train_shards=2)
    assert properties["splits"]["train"]["written"] == 2
    reasons = _rejected(tmp_path / "out")
    assert set(reasons) == {"outside.JPEG", "again.JPEG", "broken.JPEG", "sub"}
    assert "outside the source (not followed)" in reasons["outside.JPEG"]
    assert "one file two examples" in reasons["again.JPEG"]
    assert reasons["broken.JPEG"].startswith("broken symbolic link")
    assert "one file two examples" in reasons["sub"]


def test_bad_coco_boxes_are_dropped_or_fixed_and_the_ground_truth_stays_json(
        tmp_path, shared_data):
    """Item 9: boxes of negative width, wholly outside the image or NaN/inf were written, and
    the ground truth JSON held NaN."""
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(_tench(shared_data))  # 500x375
    boxes = {1: [10, 20, 30, 40], 2: [10, 20, -5, 40], 3: [600, 20, 30, 40],
             4: ["NaN", 1, 2, 3], 5: [1, 2, "Infinity", 3], 6: [480, 360, 40, 30],
             7: [5, 5, 10, 10]}
    annotations = ",".join(
        f'{{"id": {i}, "image_id": 1, "category_id": 7, "bbox": [{", ".join(map(str, b))}], '
        f'"area": {"NaN" if i == 7 else 100}, "iscrowd": 0}}' for i, b in boxes.items())
    (tmp_path / "gt.json").write_text(
        '{"images": [{"id": 1, "file_name": "a.jpg", "width": 500, "height": 375}], '
        f'"annotations": [{annotations}], "categories": [{{"id": 7, "name": "fish"}}]}}')
    properties = ingest(tmp_path / "out", format="coco", images=str(images),
                        annotations=str(tmp_path / "gt.json"), train_shards=1)
    counts = properties["splits"]["train"]
    assert (counts["written"], counts["boxes_dropped"], counts["boxes_fixed"]) == (1, 4, 2)
    notes = {n["annotation"]: n for n in map(json.loads, (tmp_path / "out" / "boxes.jsonl").open())}
    assert {i: n["action"] for i, n in notes.items()} == {
        2: "dropped", 3: "dropped", 4: "dropped", 5: "dropped", 6: "fixed", 7: "fixed"}
    assert "has no area" in notes[2]["reason"] and "outside the 500x375" in notes[3]["reason"]
    assert "not finite" in notes[4]["reason"] and "clipped" in notes[6]["reason"]

    (serialized,) = list(tf.data.TFRecordDataset(records.shard_paths(tmp_path / "out", "train")))
    row = {k: v.numpy() for k, v in records.parse_detection(serialized).items()}
    corners = np.stack([row[records.BBOX_XMIN], row[records.BBOX_YMIN],
                        row[records.BBOX_XMAX], row[records.BBOX_YMAX]], axis=1)  # (3, 4)
    assert corners.shape == (3, 4) and np.isfinite(corners).all()
    assert ((0 <= corners) & (corners <= 1)).all()
    assert corners[1] == pytest.approx([480 / 500, 360 / 375, 1, 1])  # the clipped box
    assert row[records.OBJECT_AREA].tolist() == [100, 100, 100]  # NaN: the box's 10x10

    def no_constants(name):
        raise AssertionError(f"{name} in the ground truth")

    text = (tmp_path / "out" / "train_annotations.json").read_text()
    truth = json.loads(text, parse_constant=no_constants)
    assert [a["id"] for a in truth["annotations"]] == [1, 6, 7]
    assert truth["annotations"][1]["bbox"] == [480, 360, 20, 15]
    assert truth["annotations"][2]["area"] == 100

