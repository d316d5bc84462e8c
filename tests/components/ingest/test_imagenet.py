"""ImageNet layouts, ground truth by file number, label order and clear errors."""

from __future__ import annotations

import pytest

from edgeline.components.ingest import imagenet
from edgeline.pipeline.errors import UserError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_tfds_ground_truth_is_matched_by_number_not_position():
    truth = imagenet.read_ground_truth(None)
    lines = (imagenet.tfds_imagenet_dir() + "/validation_labels.txt")
    with open(lines) as f:
        wnids = f.read().split()
    assert len(truth) == 50_000
    # A subset: files 3, 17 and 49999 keep their own lines, whatever else is missing.
    for number in (3, 17, 49_999):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        assert truth[imagenet.match_key(name)] == wnids[number - 1]


def test_csv_ground_truth_with_header_and_kaggle_boxes(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("ImageId,PredictionString\n"
                    "ILSVRC2012_val_00000002,n09193705 1 2 3 4\n"
                    "other.JPEG,n01440764\n")
    truth = imagenet.read_ground_truth(str(path))
    assert truth == {2: "n09193705", "other.JPEG": "n01440764"}


def test_malformed_csv_row_names_the_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,wnid\na.JPEG,n01440764\nb.JPEG\n")
    with pytest.raises(UserError, match="line 3"):
        imagenet.read_ground_truth(str(path))


def test_official_order_for_all_1000_classes_sorted_for_a_subset(tmp_path):
    official = imagenet.official_classes()
    assert len(official) == 1000
    for wnid in official:
        (tmp_path / "all" / "train" / wnid).mkdir(parents=True)
    found = imagenet.plan_imagenet(str(tmp_path / "all"))
    assert found.classes == list(official) and "official" in found.label_order
    subset = ["n04591713", "n01440764", "n02085620"]
    for wnid in subset:
        (tmp_path / "some" / wnid).mkdir(parents=True)
    found = imagenet.plan_imagenet(str(tmp_path / "some"))
    assert found.classes == sorted(subset) and found.label_order == "sorted class names"
    assert found.layout.train_dir == str(tmp_path / "some")  # SOURCE is the train folder


def test_class_names_come_from_a_synset_mapping_file(tmp_path):
    _touch(tmp_path / "train" / "n01440764" / "a.JPEG")
    _touch(tmp_path / "train" / "n01443537" / "b.JPEG")
    (tmp_path / "LOC_synset_mapping.txt").write_text("n01440764 tench, Tinca tinca\n")
    found = imagenet.plan_imagenet(str(tmp_path))
    # No name for the goldfish: the wnid stands in.
    assert found.class_text == {"n01440764": "tench, Tinca tinca", "n01443537": "n01443537"}


def test_labels_naming_unknown_classes_are_refused(tmp_path):
    _touch(tmp_path / "train" / "n01440764" / "a.JPEG")
    _touch(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,wnid\nILSVRC2012_val_00000001.JPEG,n99999999\n")
    with pytest.raises(UserError, match="unknown class.*'n99999999'"):
        imagenet.plan_imagenet(str(tmp_path), val_labels=str(labels))


@pytest.mark.parametrize("layout, message", [
    ({}, "no ImageNet data"),
    ({"train/.keep": b""}, "no class folders"),
    ({"train/x.JPEG": b"", "ILSVRC2012_img_train.tar": b""}, "keep one of them"),
    ({"ILSVRC2012_img_train.tar": b"not a tar at all" * 40}, "uncompressed tar"),
])
def test_bad_sources_are_one_clear_error(tmp_path, layout, message):
    for name, data in layout.items():
        _touch(tmp_path / name, data)
    with pytest.raises(UserError, match=message):
        imagenet.plan_imagenet(str(tmp_path))
    with pytest.raises(UserError, match="does not exist"):
        imagenet.plan_imagenet(str(tmp_path / "missing"))
