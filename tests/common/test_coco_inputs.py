"""Inputs: bad ones are one clear line and exit code 2 (acceptance 5); odd but valid ones
(empty detections, missing 'area'/'iscrowd'/'info', annotation id 0, detections inside a COCO
file) give pycocotools' numbers on the normalized data."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from edgeline.cli import main
from edgeline.common.coco import SUMMARY_NAMES, evaluate_detections
from edgeline.common.coco_inputs import load_detections
from edgeline.pipeline.errors import UserError


def _write(folder, name, content) -> str:
    path = folder / name
    path.write_text(json.dumps(content) if not isinstance(content, str) else content)
    return str(path)


def _run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["coco-eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _broken_detections(detections: list, index: int, **changes) -> list:
    broken = copy.deepcopy(detections)
    broken[index].update(changes)
    return broken


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_id": 999}, "detection #4 has image_id=999, which is not in the ground truth's "
                            "images"),
        ({"category_id": 77}, "detection #4 (image_id=2) has category_id=77, which is not in the "
                              "ground truth's categories"),
        ({"bbox": [10, 20, -5, 30]}, "detection #4 (image_id=2) bbox has a negative width or "
                                     "height; received [10, 20, -5, 30]"),
        ({"score": float("nan")}, "detection #4 (image_id=2) has score nan; a score must be a "
                                  "finite number"),
        ({"score": None}, "has score None; a score must be a finite number"),
        ({"bbox": [1, 2, 3]}, "detection #4 (image_id=2) bbox must be [x, y, width, height]; "
                              "received [1, 2, 3]"),
    ],
    ids=["unknown-image", "unknown-category", "negative-width", "nan-score", "null-score",
         "short-box"],
)
def test_bad_detections_exit_2_with_one_line(tmp_path, capsys, small_set, change, message):
    """Acceptance 5: each bad input named in one line on stderr, exit code 2, no traceback."""
    ground_truth, detections = small_set
    assert detections[4]["image_id"] == 2
    gt_path = _write(tmp_path, "gt.json", ground_truth)
    dt_path = _write(tmp_path, "dt.json", _broken_detections(detections, 4, **change))

    code, out, err = _run_cli(capsys, gt_path, dt_path)

    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("edgeline: error: ")
    assert message in err


def test_empty_detection_list_is_all_zeros(tmp_path, capsys, small_set, reference_on_dicts):
    """Acceptance 5: valid, every object missed; -1 only where pycocotools has -1 (an area
    range without ground truth)."""
    ground_truth, _ = small_set
    code, out, err = _run_cli(capsys, _write(tmp_path, "gt.json", ground_truth),
                              _write(tmp_path, "dt.json", []), "--json")

    assert code == 0, err
    summary = json.loads(out)["summary"]
    reference = reference_on_dicts(ground_truth, [], "bbox")
    assert [summary[name] for name in SUMMARY_NAMES] == reference.stats.tolist()
    assert {value for value in summary.values()} == {0.0, -1.0}
    assert summary["AP"] == 0.0 and summary["AR100"] == 0.0
    assert all(row["ap"] in (0.0, None) for row in json.loads(out)["per_category_ap"])


@pytest.mark.parametrize(
    "ground_truth_text, detections_text, message",
    [
        (None, "[]", "ground truth file not found"),
        ("{not json", "[]", "is not valid JSON"),
        ("[1, 2]", "[]", "must hold a JSON object with 'images', 'annotations' and "
                         "'categories'; received a list"),
        ('{"images": [], "categories": []}', "[]", "ground truth has no 'annotations' list"),
        ("GT", '{"images": []}', "is a JSON object without 'annotations'"),
        ("GT", '"detections"', "must hold a JSON list of detections; received a str"),
        ("GT", '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]',
         "detection #0 (image_id=1) has no 'score'"),
    ],
    ids=["missing-file", "malformed-json", "gt-not-object", "gt-no-annotations",
         "dt-object-without-annotations", "dt-not-list", "dt-no-score"],
)
def test_bad_files_exit_2_with_one_line(tmp_path, capsys, small_set, ground_truth_text,
                                        detections_text, message):
    ground_truth, _ = small_set
    if ground_truth_text == "GT":
        ground_truth_text = json.dumps(ground_truth)
    gt_path = (_write(tmp_path, "gt.json", ground_truth_text) if ground_truth_text is not None
               else str(tmp_path / "missing.json"))
    code, out, err = _run_cli(capsys, gt_path, _write(tmp_path, "dt.json", detections_text))

    assert code == 2
    assert err.count("\n") == 1 and message in err


def test_unknown_iou_type_is_a_usage_error(tmp_path, capsys, small_set):
    ground_truth, detections = small_set
    with pytest.raises(SystemExit) as exit_info:
        main(["coco-eval", _write(tmp_path, "gt.json", ground_truth),
              _write(tmp_path, "dt.json", detections), "--iou-type", "keypoints"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(UserError, match="Received: iou_type='keypoints'"):
        evaluate_detections(ground_truth, detections, iou_type="keypoints")


def _ground_truth_error(ground_truth: dict, iou_type: str = "bbox") -> str:
    with pytest.raises(UserError) as error_info:
        evaluate_detections(ground_truth, [], iou_type=iou_type)
    message = str(error_info.value)
    assert "\n" not in message
    return message


def test_bad_ground_truth_is_named(small_set, coco_data):
    ground_truth, _ = small_set
    broken = copy.deepcopy(ground_truth)
    broken["annotations"][2]["bbox"][3] = -1
    assert "ground truth annotation id=3 bbox has a negative width or height" in (
        _ground_truth_error(broken))

    broken = copy.deepcopy(ground_truth)
    broken["annotations"][5]["id"] = broken["annotations"][1]["id"]
    assert "ground truth annotation id=2 appears more than once" in _ground_truth_error(broken)

    broken = copy.deepcopy(ground_truth)
    broken["annotations"][0]["image_id"] = 42
    assert "has image_id=42, which is not in the ground truth's images" in (
        _ground_truth_error(broken))

    broken = copy.deepcopy(ground_truth)
    broken["annotations"][0]["category_id"] = 42
    assert "has category_id=42, which is not in the ground truth's categories" in (
        _ground_truth_error(broken))

    # yfpeng's images are 0x0: its polygons cannot be rasterized for segm (pycocotools would
    # rasterize them at 0x0 and score every mask as empty).
    yfpeng = json.loads((coco_data / "yfpeng" / "gt.json").read_text())
    assert "whose width x height is 0x0; segm evaluation of polygons needs the image size" in (
        _ground_truth_error(yfpeng, iou_type="segm"))


def test_missing_area_iscrowd_info_are_filled_as_documented(shared_data, reference_on_dicts):
    """Without 'area' and 'iscrowd' (pycocotools: KeyError) the box area and 0 are used:
    the same numbers as pycocotools on the file with those filled in. No 'info'/'licenses'
    is fine for both."""
    folder = shared_data / "voc100"
    ground_truth = json.loads((folder / "instances.json").read_text())
    detections = json.loads((folder / "detections.json").read_text())
    stripped = copy.deepcopy(ground_truth)
    for key in ("info", "licenses"):
        stripped.pop(key)
    for annotation in stripped["annotations"]:
        annotation.pop("area")
        annotation.pop("iscrowd")
    normalized = copy.deepcopy(stripped)
    for annotation in normalized["annotations"]:
        annotation["area"] = annotation["bbox"][2] * annotation["bbox"][3]
        annotation["iscrowd"] = 0

    metrics = evaluate_detections(stripped, detections)

    reference = reference_on_dicts(normalized, detections, "bbox")
    np.testing.assert_allclose(list(metrics.summary.values()), reference.stats, atol=1e-9, rtol=0)


def test_missing_area_for_segm_is_the_masks(small_set, reference_on_dicts):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    ground_truth, detections = small_set
    stripped = copy.deepcopy(ground_truth)
    for annotation in stripped["annotations"]:
        annotation.pop("area")
    normalized = copy.deepcopy(stripped)
    api = COCO()
    api.dataset = copy.deepcopy(stripped)
    api.createIndex()
    for annotation in normalized["annotations"]:
        annotation["area"] = float(mask_utils.area(api.annToRLE(annotation)))

    metrics = evaluate_detections(stripped, detections, iou_type="segm")

    reference = reference_on_dicts(normalized, detections, "segm")
    np.testing.assert_allclose(list(metrics.summary.values()), reference.stats, atol=1e-9, rtol=0)


def test_annotation_id_zero_is_evaluated_correctly(reference_on_dicts):
    """pycocotools' matcher stores the matched ground truth's id and reads 0 as "unmatched",
    so a perfect detection of annotation 0 counts as a false positive there. Annotations are
    renumbered here, so ids 0.. score like ids 1.."""
    ground_truth = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 0, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50],
                         "area": 2500, "iscrowd": 0}],
    }
    detections = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}]
    one_based = copy.deepcopy(ground_truth)
    one_based["annotations"][0]["id"] = 1

    metrics = evaluate_detections(ground_truth, detections)

    # 1 - 2e-16: pycocotools' precision has np.spacing(1) in its denominator, and so has ours
    assert metrics.summary["AP"] == pytest.approx(1.0, abs=1e-15)
    reference = reference_on_dicts(one_based, detections, "bbox")
    assert list(metrics.summary.values()) == reference.stats.tolist()


def test_detections_inside_a_coco_file(tmp_path, small_set):
    """The 'small' detections carry id/area/iscrowd, like a COCO annotations file: accepted
    as a list or under 'annotations', the same numbers either way."""
    ground_truth, detections = small_set
    as_list = load_detections(_write(tmp_path, "list.json", detections))
    as_coco = load_detections(_write(tmp_path, "coco.json", {
        "images": ground_truth["images"], "categories": ground_truth["categories"],
        "annotations": detections}))
    assert as_list == as_coco == detections
    assert evaluate_detections(ground_truth, as_coco).summary["AP"] == pytest.approx(
        0.6947194719471946, abs=1e-12)


def test_integral_float_ids_are_accepted(small_set, reference_on_dicts):
    """JSON writers that emit 3.0 for 3: pycocotools' set lookups accept them, so do we."""
    ground_truth, detections = small_set
    floats = [dict(d, image_id=float(d["image_id"]), category_id=float(d["category_id"]))
              for d in detections]
    metrics = evaluate_detections(ground_truth, floats)
    reference = reference_on_dicts(ground_truth, detections, "bbox")
    np.testing.assert_allclose(list(metrics.summary.values()), reference.stats, atol=1e-9, rtol=0)
    with pytest.raises(UserError, match="image_id must be an integer; received 1.5"):
        evaluate_detections(ground_truth, [dict(floats[0], image_id=1.5)])
    assert not math.isnan(metrics.summary["AP"])


def test_numpy_typed_detections_from_a_model(small_set):
    """The evaluate stage passes a model's outputs: numpy ids, scores and box arrays."""
    ground_truth, detections = small_set
    numpy_typed = [
        {"image_id": np.int64(d["image_id"]), "category_id": np.int32(d["category_id"]),
         "bbox": np.asarray(d["bbox"], dtype=np.float32).astype(np.float64),
         "score": np.float64(d["score"])}
        for d in detections
    ]
    assert (evaluate_detections(ground_truth, numpy_typed).summary
            == evaluate_detections(ground_truth, detections).summary)
    numpy_typed[1]["score"] = np.float32("nan")
    with pytest.raises(UserError, match="detection #1 .* has score nan"):
        evaluate_detections(ground_truth, numpy_typed)


def test_no_scorable_ground_truth_is_all_minus_one(small_set, reference_on_dicts):
    """Only crowd regions (or none at all): nothing to recall, -1 everywhere, as pycocotools."""
    ground_truth, detections = small_set
    crowds_only = copy.deepcopy(ground_truth)
    for annotation in crowds_only["annotations"]:
        annotation["iscrowd"] = 1
    nothing = dict(copy.deepcopy(ground_truth), annotations=[])

    for truth in (crowds_only, nothing):
        metrics = evaluate_detections(truth, detections)
        assert list(metrics.summary.values()) == [-1.0] * 12
        assert reference_on_dicts(truth, detections, "bbox").stats.tolist() == [-1.0] * 12
        assert set(metrics.per_category_ap.values()) == {None}


# --------------------------------------------------------------------------------------------
# Detections that name their image by file_name (what `edgeline predict` writes)


def _with_file_names(ground_truth: dict, prefix: str = "") -> tuple[dict, dict[int, str]]:
    named = copy.deepcopy(ground_truth)
    names = {}
    for image in named["images"]:
        image["file_name"] = f"{prefix}{image['id']:06d}.jpg"
        names[image["id"]] = f"{image['id']:06d}.jpg"
    return named, names


def test_file_name_gives_the_image_id(tmp_path, capsys, small_set, reference_on_dicts):
    """No image_id, or one the ground truth lacks: the image with that file_name (as a whole,
    or by base name against a ground truth that keeps folders) is the detection's image. The
    numbers are those of the same detections with their ids."""
    ground_truth, detections = small_set
    named, names = _with_file_names(ground_truth, prefix="val2017/")
    by_name = []
    for position, detection in enumerate(detections):
        renamed = {key: value for key, value in detection.items() if key != "image_id"}
        if position % 3 == 1:  # an id that is no image of the ground truth
            renamed["image_id"] = 10_000 + position
        folder = "/data/predict/" if position % 2 else "C:\\\\images\\\\"
        renamed["file_name"] = folder + names[detection["image_id"]]
        by_name.append(renamed)
    expected = reference_on_dicts(ground_truth, detections, "bbox").stats.tolist()

    assert list(evaluate_detections(named, by_name).summary.values()) == expected
    code, out, err = _run_cli(capsys, _write(tmp_path, "gt.json", named),
                              _write(tmp_path, "dt.json", by_name), "--json")
    assert code == 0, err
    assert [json.loads(out)["summary"][name] for name in SUMMARY_NAMES] == expected
    # The whole name first: "val2017/000001.jpg" as the ground truth spells it.
    exact = [dict(d, file_name="val2017/" + d["file_name"].replace("\\\\", "/")
                  .rsplit("/", 1)[-1]) for d in by_name]
    assert list(evaluate_detections(named, exact).summary.values()) == expected


def test_a_known_image_id_wins_over_file_name(small_set):
    ground_truth, detections = small_set
    named, names = _with_file_names(ground_truth)
    other = {1: 2, 2: 3, 3: 1}  # every detection's file_name names another image
    misleading = [dict(d, file_name=names[other[d["image_id"]]]) for d in detections]
    assert (evaluate_detections(named, misleading).summary
            == evaluate_detections(named, detections).summary)


@pytest.mark.parametrize(
    "file_name, image_id, message",
    [
        ("elsewhere.jpg", None, "detection #4 (file_name='elsewhere.jpg') has no image_id, and "
                                "its file_name 'elsewhere.jpg' is not the file_name of any "
                                "ground-truth image"),
        ("elsewhere.jpg", 999, "detection #4 has image_id=999, which is not in the ground "
                               "truth's images (3 images, ids 1..3), nor is its file_name "
                               "'elsewhere.jpg' one of theirs"),
        ("shared.jpg", None, "detection #4 (file_name='shared.jpg') has file_name "
                             "'shared.jpg', whose base name 'shared.jpg' is the file_name of 2 "
                             "ground-truth images (ids [1, 2])"),
    ],
    ids=["unknown-name", "unknown-id-and-name", "ambiguous-base-name"],
)
def test_unresolvable_file_name_exits_2_with_one_line(tmp_path, capsys, small_set, file_name,
                                                     image_id, message):
    ground_truth, detections = small_set
    named, _ = _with_file_names(ground_truth)
    named["images"][0]["file_name"] = "a/shared.jpg"
    named["images"][1]["file_name"] = "b/shared.jpg"
    broken = copy.deepcopy(detections)
    del broken[4]["image_id"]
    broken[4]["file_name"] = file_name
    if image_id is not None:
        broken[4]["image_id"] = image_id

    code, out, err = _run_cli(capsys, _write(tmp_path, "gt.json", named),
                              _write(tmp_path, "dt.json", broken))

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


# --------------------------------------------------------------------------------------------
# The engine's column reader (a bbox results file) and the checks on its columns


def test_scores_of_zero_are_valid_and_missing_or_null_ones_are_not(tmp_path, capsys, small_set,
                                                                   reference_on_dicts):
    """The column reader reads a missing or null score as 0: a file with true zeros is scored
    (as pycocotools scores it), one with a missing or null score is refused, on either path."""
    from edgeline.common.coco import _ground_truth_api, _read_results_file
    from edgeline.common.coco_inputs import prepare_ground_truth

    ground_truth, detections = small_set
    zeros = [dict(d, score=0) if i % 2 else d for i, d in enumerate(detections)]
    gt_path = _write(tmp_path, "gt.json", ground_truth)
    truth = prepare_ground_truth(ground_truth)
    api = _ground_truth_api(truth)

    assert _read_results_file(api, truth, _write(tmp_path, "zeros.json", zeros)) is not None
    code, out, err = _run_cli(capsys, gt_path, tmp_path / "zeros.json", "--json")
    assert code == 0, err
    assert [json.loads(out)["summary"][name] for name in SUMMARY_NAMES] == (
        reference_on_dicts(ground_truth, zeros, "bbox").stats.tolist())

    missing = copy.deepcopy(zeros)
    del missing[3]["score"]
    null = _broken_detections(zeros, 3, score=None)
    for name, broken in (("missing.json", missing), ("null.json", null)):
        assert _read_results_file(api, truth, _write(tmp_path, name, broken)) is None
        code, out, err = _run_cli(capsys, gt_path, tmp_path / name)
        assert code == 2 and err.count("\n") == 1
        assert "detection #3 (image_id=2) has " in err and "score" in err


def test_files_score_on_the_engine_columns_only_when_their_checks_pass(
        tmp_path, small_set, monkeypatch):
    """As coco-eval calls it (standalone): a file with true zero scores is scored on the
    engine's columns, without the exact path; a missing score, an unknown category or a
    negative width fail the column checks, and the exact path names the detection."""
    import edgeline.common.coco as coco

    ground_truth, detections = small_set
    zeros = [dict(d, score=0) if i % 2 else d for i, d in enumerate(detections)]
    gt_path = _write(tmp_path, "gt.json", ground_truth)
    expected = evaluate_detections(ground_truth, zeros).summary
    with monkeypatch.context() as patched:
        patched.setattr(coco, "load_detections", _exact_path_not_expected)
        scored = coco.evaluate_files(gt_path, _write(tmp_path, "zeros.json", zeros),
                                     standalone=True)
    assert scored.summary == expected

    missing = copy.deepcopy(zeros)
    del missing[3]["score"]
    for name, broken, named in (
            ("missing", missing, "score"),
            ("category", _broken_detections(detections, 3, category_id=77), "category"),
            ("width", _broken_detections(detections, 3, bbox=[10, 20, -5, 30]), "bbox")):
        with pytest.raises(UserError, match=r"detection #3 .*" + named):
            coco.evaluate_files(gt_path, _write(tmp_path, f"{name}.json", broken),
                                standalone=True)


def _exact_path_not_expected(path):
    raise AssertionError(f"the exact path read {path}")


def test_checks_on_the_reader_columns_send_bad_files_to_the_naming_path(tmp_path, small_set):
    """Each file the column reader takes but a check refuses is None here; the exact path then
    names the problem (test_bad_detections_exit_2_with_one_line)."""
    from edgeline.common.coco import _ground_truth_api, _read_results_file
    from edgeline.common.coco_inputs import prepare_ground_truth

    ground_truth, detections = small_set
    truth = prepare_ground_truth(ground_truth)
    api = _ground_truth_api(truth)
    fine = _read_results_file(api, truth, _write(tmp_path, "fine.json", detections))
    assert fine is not None and fine[1] == len(detections)
    for name, change in (("image", {"image_id": 999}), ("category", {"category_id": 77}),
                         ("width", {"bbox": [10, 20, -5, 30]}), ("float-id", {"image_id": 2.0})):
        path = _write(tmp_path, f"{name}.json", _broken_detections(detections, 4, **change))
        assert _read_results_file(api, truth, path) is None, name
    # an integral float id is still scored, by the exact path
    path = _write(tmp_path, "float.json", _broken_detections(detections, 4, image_id=2.0))
    from edgeline.common.coco import evaluate_files
    assert (evaluate_files(_write(tmp_path, "gt.json", ground_truth), path).summary
            == evaluate_detections(ground_truth, detections).summary)


# --------------------------------------------------------------------------------------------
# A ground-truth file read by the engine's column reader (evaluate_files, bbox)


def _mutated(ground_truth: dict, change) -> dict:
    changed = copy.deepcopy(ground_truth)
    for position, annotation in enumerate(changed["annotations"]):
        if position % 3 == 0:  # a third of them, so that the changed and the plain mix
            change(annotation, position)
    return changed


# What the column reader takes and edgeline tolerates, each scored by the engine from its
# columns: the numbers must be those of the checked, renumbered records (the dict path).
TOLERATED_GROUND_TRUTH = {
    "no-area": lambda a, i: a.pop("area"),
    "null-area": lambda a, i: a.update(area=None),
    "area-not-the-box": lambda a, i: a.update(area=a["bbox"][2] * a["bbox"][3] / 7),
    "no-iscrowd": lambda a, i: a.pop("iscrowd"),
    "iscrowd-1": lambda a, i: a.update(iscrowd=1),
    "iscrowd-2": lambda a, i: a.update(iscrowd=2),
    "iscrowd-true": lambda a, i: a.update(iscrowd=True),
    "iscrowd-null": lambda a, i: a.update(iscrowd=None),
    "ignore-without-crowd": lambda a, i: a.update(ignore=1),
    "crowd-not-ignored": lambda a, i: a.update(iscrowd=1, ignore=0),
    "id-zero-and-negative": lambda a, i: a.update(id=-i),
    "integer-boxes": lambda a, i: a.update(bbox=[int(v) for v in a["bbox"]]),
}


@pytest.mark.parametrize("change", TOLERATED_GROUND_TRUTH.values(),
                         ids=TOLERATED_GROUND_TRUTH.keys())
def test_ground_truth_in_columns_scores_as_the_checked_records(tmp_path, shared_data, change):
    from edgeline.common.coco import _read_ground_truth_file, evaluate_files

    folder = shared_data / "voc100"
    ground_truth = _mutated(json.loads((folder / "instances.json").read_text()), change)
    detections = json.loads((folder / "detections.json").read_text())
    gt_path = _write(tmp_path, "gt.json", ground_truth)
    truth, _ = _read_ground_truth_file(gt_path, "bbox")
    assert truth.annotations is None  # the engine holds them: the column path was taken

    from_files = evaluate_files(gt_path, _write(tmp_path, "dt.json", detections))
    from_dicts = evaluate_detections(ground_truth, detections)

    assert from_files.summary == from_dicts.summary
    assert from_files.num_ground_truth == from_dicts.num_ground_truth
    for name in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(getattr(from_files, name), getattr(from_dicts, name))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda gt: gt["annotations"][2]["bbox"].__setitem__(3, -1),
         "ground truth annotation id=3 bbox has a negative width or height"),
        (lambda gt: gt["annotations"][0].update(category_id=42),
         "has category_id=42, which is not in the ground truth's categories"),
        (lambda gt: gt["annotations"][0].update(image_id=42),
         "has image_id=42, which is not in the ground truth's images"),
        (lambda gt: gt["images"].append(dict(gt["images"][0])),
         "ground truth image id 1 appears more than once"),
        (lambda gt: gt["categories"][0].pop("id"), "ground truth category #0 has no 'id'"),
        (lambda gt: gt["annotations"][5].update(id=gt["annotations"][1]["id"]),
         "ground truth annotation id=2 appears more than once"),
    ],
    ids=["negative-height", "unknown-category", "unknown-image", "repeated-image",
         "category-without-id", "repeated-annotation-id"],
)
def test_bad_ground_truth_files_exit_2_with_one_line(tmp_path, capsys, small_set, change,
                                                     message):
    """What the column checks (or the reader) refuse goes to the record-by-record checks,
    which name it as they do for a dict."""
    ground_truth, detections = small_set
    broken = copy.deepcopy(ground_truth)
    change(broken)
    code, out, err = _run_cli(capsys, _write(tmp_path, "gt.json", broken),
                              _write(tmp_path, "dt.json", detections))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_ground_truth_files_the_columns_cannot_hold_are_scored_by_records(tmp_path,
                                                                          small_set):
    """Float ids (3.0) in the images or the annotations: tolerated, scored from records."""
    from edgeline.common.coco import _read_ground_truth_file, evaluate_files

    ground_truth, detections = small_set
    floats = copy.deepcopy(ground_truth)
    floats["images"][0]["id"] = float(floats["images"][0]["id"])
    floats["annotations"][0]["image_id"] = float(floats["annotations"][0]["image_id"])
    gt_path = _write(tmp_path, "gt.json", floats)
    truth, _ = _read_ground_truth_file(gt_path, "bbox")
    assert truth.annotations is not None
    assert (evaluate_files(gt_path, _write(tmp_path, "dt.json", detections)).summary
            == evaluate_detections(ground_truth, detections).summary)


def test_zero_scores_in_files_with_nested_objects_or_braces_in_strings(tmp_path, capsys,
                                                                       small_set):
    """A zero score is confirmed by parsing that detection alone, found by its opening brace;
    more braces than detections (a nested object, a brace in a string) leave it to the exact
    path, which scores the file the same or names the detection without a score."""
    from edgeline.common.coco import _read_ground_truth_file, _read_results_file

    ground_truth, detections = small_set
    zeros = [dict(d, score=0) if i % 2 else d for i, d in enumerate(detections)]
    expected = evaluate_detections(ground_truth, zeros).summary
    gt_path = _write(tmp_path, "gt.json", ground_truth)
    truth, api = _read_ground_truth_file(gt_path, "bbox")
    nested = [dict(d, extra={"model": "x"}) for d in zeros]
    braces = [dict(d, note="{") for d in zeros]
    for name, content in (("nested.json", nested), ("braces.json", braces)):
        path = _write(tmp_path, name, content)
        assert _read_results_file(api, truth, path) is None
        code, out, err = _run_cli(capsys, gt_path, path, "--json")
        assert code == 0, err
        assert json.loads(out)["summary"] == expected

    # a "score" inside a nested object is not the detection's score
    hidden = copy.deepcopy(zeros)
    del hidden[3]["score"]
    hidden[3]["extra"] = {"score": 0.5}
    code, out, err = _run_cli(capsys, gt_path, _write(tmp_path, "hidden.json", hidden))
    assert code == 2 and "detection #3 (image_id=2) has no 'score'" in err
