"""COCO metrics on real third-party data, against pycocotools and cocoapi's published output.

Acceptance 1: `edgeline coco-eval --json` gives pycocotools' 12 numbers on every pair in
../shared/data/coco and ../shared/data/voc100, and the library its arrays, bit for bit. Acceptance 2: the printed val2014_100
summary is cocoapi's own published text (val2014_fake_eval_res.txt).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from edgeline.cli import main
from edgeline.common.coco import (
    SUMMARY_NAMES,
    _nth_braces,
    evaluate_detections,
    evaluate_files,
)

# (name, ground truth, detections, iou type), paths under ../shared/data
REAL_PAIRS = [
    ("val2014_100-bbox", "coco/val2014_100/instances_val2014_100.json",
     "coco/val2014_100/instances_val2014_fakebbox100_results.json", "bbox"),
    ("val2014_100-segm", "coco/val2014_100/instances_val2014_100.json",
     "coco/val2014_100/instances_val2014_fakesegm100_results.json", "segm"),
    ("small-bbox", "coco/small/gt_dataset.json", "coco/small/dt_dataset.json", "bbox"),
    ("small-segm", "coco/small/gt_dataset.json", "coco/small/dt_dataset.json", "segm"),
    ("yfpeng-bbox", "coco/yfpeng/gt.json", "coco/yfpeng/dt.json", "bbox"),
    ("rafaelpadilla-bbox", "coco/rafaelpadilla_sampled/gt.json",
     "coco/rafaelpadilla_sampled/dt.json", "bbox"),
    ("voc100-bbox", "voc100/instances.json", "voc100/detections.json", "bbox"),
]  # fmt: skip


def _cli_json(capsys, ground_truth, detections, iou_type) -> dict:
    code = main(["coco-eval", str(ground_truth), str(detections), "--iou-type", iou_type,
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.parametrize(
    "ground_truth, detections, iou_type", [pair[1:] for pair in REAL_PAIRS],
    ids=[pair[0] for pair in REAL_PAIRS],
)
def test_cli_json_matches_pycocotools_on_real_data(
    capsys, shared_data, reference_on_files, ground_truth, detections, iou_type
):
    """Acceptance 1: the 12 numbers and every per-category AP, to 1e-9."""
    ground_truth, detections = shared_data / ground_truth, shared_data / detections
    reference = reference_on_files(str(ground_truth), str(detections), iou_type)
    report = _cli_json(capsys, ground_truth, detections, iou_type)

    assert list(report["summary"]) == list(SUMMARY_NAMES)
    ours = np.array([report["summary"][name] for name in SUMMARY_NAMES])
    np.testing.assert_allclose(ours, reference.stats, rtol=0, atol=1e-9)
    expected_ap = reference.per_category_ap()
    assert [row["category_id"] for row in report["per_category_ap"]] == reference.category_ids
    for row in report["per_category_ap"]:
        if expected_ap[row["category_id"]] is None:
            assert row["ap"] is None
        else:
            assert row["ap"] == pytest.approx(expected_ap[row["category_id"]], abs=1e-9)


@pytest.mark.parametrize(
    "ground_truth, detections, iou_type", [pair[1:] for pair in REAL_PAIRS],
    ids=[pair[0] for pair in REAL_PAIRS],
)
def test_numbers_and_arrays_are_pycocotools_bit_for_bit(
    shared_data, reference_on_files, ground_truth, detections, iou_type
):
    """Acceptance 2 of the speed issue: on every shared real set, the 12 numbers and the
    precision and recall arrays equal pycocotools' exactly, both from files (the engine's
    column reader for bbox) and from dicts (the checked records)."""
    ground_truth, detections = shared_data / ground_truth, shared_data / detections
    reference = reference_on_files(str(ground_truth), str(detections), iou_type)
    from_files = evaluate_files(ground_truth, detections, iou_type)
    from_dicts = evaluate_detections(json.loads(ground_truth.read_text()),
                                     json.loads(detections.read_text()), iou_type)

    for metrics in (from_files, from_dicts):
        assert list(metrics.summary.values()) == reference.stats.tolist()
        assert list(metrics.category_ids) == reference.category_ids
        np.testing.assert_array_equal(metrics.precision, reference.precision)
        np.testing.assert_array_equal(metrics.recall, reference.recall)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_printed_summary_is_cocoapis_published_output(capsys, coco_data, iou_type):
    """Acceptance 2: cocoapi's results/val2014_fake_eval_res.txt, every label and every
    number to the printed precision. (That file predates pycocotools' current title padding,
    "Average Precision (AP)" vs "Average Precision  (AP)", so runs of spaces are compared as
    one; the exact current text is checked against pycocotools itself below.)"""
    folder = coco_data / "val2014_100"
    published = (folder / "val2014_fake_eval_res.txt").read_text().splitlines()
    section = published[published.index(f"type={iou_type}"):]
    expected = [line for line in section if line.startswith(" Average")][:12]

    code = main(["coco-eval", str(folder / "instances_val2014_100.json"),
                 str(folder / f"instances_val2014_fake{iou_type}100_results.json"),
                 "--iou-type", iou_type])
    printed = capsys.readouterr().out.splitlines()

    assert code == 0
    assert len(printed) == 12
    assert [" ".join(line.split()) for line in printed] == [
        " ".join(line.split()) for line in expected
    ]


def test_summary_text_and_arrays_equal_pycocotools(coco_data, reference_on_files):
    """format_summary() is what COCOeval.summarize() prints; the precision-recall arrays are
    pycocotools'."""
    folder = coco_data / "rafaelpadilla_sampled"
    metrics = evaluate_files(folder / "gt.json", folder / "dt.json", "bbox")
    reference = reference_on_files(str(folder / "gt.json"), str(folder / "dt.json"), "bbox")

    assert metrics.format_summary().splitlines() == reference.summary_lines
    assert list(metrics.category_ids) == reference.category_ids
    assert metrics.precision.shape == reference.precision.shape == (10, 101, 80, 4, 3)
    np.testing.assert_array_equal(metrics.precision, reference.precision)
    np.testing.assert_array_equal(metrics.recall, reference.recall)


def test_in_memory_api_leaves_inputs_unchanged_and_matches_files(coco_data):
    folder = coco_data / "val2014_100"
    ground_truth = json.loads((folder / "instances_val2014_100.json").read_text())
    detections = json.loads((folder / "instances_val2014_fakesegm100_results.json").read_text())
    before = copy.deepcopy((ground_truth, detections))

    in_memory = evaluate_detections(ground_truth, detections, iou_type="segm")

    assert (ground_truth, detections) == before  # the engine got its own dicts
    from_files = evaluate_files(folder / "instances_val2014_100.json",
                                folder / "instances_val2014_fakesegm100_results.json", "segm")
    assert in_memory.summary == from_files.summary
    assert in_memory.num_images == 100
    assert in_memory.num_ground_truth == 839
    assert in_memory.num_detections == 734


def test_engine_alone_gives_the_same_numbers(coco_data):
    """The surroundings (our checks and normalization, the engine's column reader) change
    nothing: ultrafast-pycocotools' own COCO + loadRes + COCOeval path gives the same numbers
    and arrays."""
    from ultrafast_pycocotools import COCO, COCOeval

    folder = coco_data / "yfpeng"
    ground_truth = COCO(str(folder / "gt.json"), verbose=False)
    engine = COCOeval(ground_truth, ground_truth.loadRes(str(folder / "dt.json")), "bbox",
                      print_function=lambda *args: None)
    engine.run()

    ours = evaluate_files(folder / "gt.json", folder / "dt.json", "bbox")
    assert list(ours.summary.values()) == engine.stats.tolist()
    np.testing.assert_array_equal(ours.precision, engine.eval["precision"])


@pytest.mark.parametrize(
    "ground_truth, detections",
    [pair[1:3] for pair in REAL_PAIRS if pair[3] == "bbox"],
    ids=[pair[0] for pair in REAL_PAIRS if pair[3] == "bbox"],
)
def test_standalone_gives_the_same_numbers_and_arrays(shared_data, ground_truth, detections):
    """evaluate_files(standalone=True), as coco-eval calls it (the engine's handles left to
    the process's exit), changes nothing."""
    ground_truth, detections = shared_data / ground_truth, shared_data / detections
    alone = evaluate_files(ground_truth, detections, "bbox", standalone=True)
    here = evaluate_files(ground_truth, detections, "bbox")
    assert alone.summary == here.summary
    for name in ("precision", "recall", "scores"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(here, name))


def test_more_than_100_detections_in_one_cell(reference_on_dicts):
    """pycocotools keeps the 100 best-scored detections of each (image, category)."""
    rng = np.random.default_rng(7)
    ground_truth = {
        "images": [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 640, "height": 480}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [
            {"id": index + 1, "image_id": 1 + index % 2, "category_id": 3,
             "bbox": [float(20 * index), 30.0, 40.0, 50.0], "area": 2000.0, "iscrowd": 0}
            for index in range(6)
        ],
    }
    detections = [
        {"image_id": 1 + index % 2, "category_id": 3, "score": float(rng.integers(0, 20)) / 20,
         "bbox": [float(rng.integers(0, 120)), float(rng.integers(20, 40)), 40.0, 50.0]}
        for index in range(330)
    ]  # ~165 per image, with tied scores

    metrics = evaluate_detections(ground_truth, detections)

    reference = reference_on_dicts(ground_truth, detections, "bbox")
    np.testing.assert_allclose(list(metrics.summary.values()), reference.stats, rtol=0, atol=1e-9)


def test_per_category_ap_and_curves(coco_data):
    folder = coco_data / "val2014_100"
    metrics = evaluate_files(folder / "instances_val2014_100.json",
                             folder / "instances_val2014_fakebbox100_results.json")

    without_ground_truth = [c for c, ap in metrics.per_category_ap.items() if ap is None]
    assert len(metrics.per_category_ap) == 80 and len(without_ground_truth) == 10
    assert np.all(metrics.precision[:, :, metrics.category_ids.index(without_ground_truth[0])]
                  == -1)
    # The mean of the all-category curve at IoU .50 is AP50; over .50:.95 it is AP.
    recall, curve = metrics.precision_recall_curve(iou_threshold=0.5)
    assert recall.shape == curve.shape == (101,)
    assert curve.mean() == pytest.approx(metrics.summary["AP50"], abs=1e-12)
    assert metrics.precision_recall_curve(iou_threshold=None)[1].mean() == pytest.approx(
        metrics.summary["AP"], abs=1e-12)
    # One category's curve over .50:.95 averages to its AP, and precision never rises.
    _, person = metrics.precision_recall_curve(category_id=1, iou_threshold=None)
    assert person.mean() == pytest.approx(metrics.per_category_ap[1], abs=1e-12)
    _, person_50 = metrics.precision_recall_curve(category_id=1)
    assert np.all(np.diff(person_50) <= 0)
    assert np.all(np.isnan(metrics.precision_recall_curve(category_id=without_ground_truth[0])[1]))
    with pytest.raises(ValueError, match="iou_threshold=0.52"):
        metrics.precision_recall_curve(iou_threshold=0.52)


@pytest.mark.parametrize("chunk", [1024, 3072, 1 << 20])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.3, 1.0])
def test_nth_braces_gives_the_offsets_a_full_listing_gives(chunk, density):
    """Counting braces per block and searching only the blocks that hold a wanted one gives
    the offsets np.flatnonzero lists, across chunk and block boundaries, with a short last
    chunk, and in text of braces only (a full block: the lane sums at their largest)."""
    rng = np.random.default_rng(int(density * 100) + chunk)
    size = 10 * chunk + 517
    text = np.where(rng.random(size) < density, ord("{"), ord("a")).astype(np.uint8)
    listed = np.flatnonzero(text == ord("{"))
    wanted = np.unique(np.concatenate([
        rng.integers(0, max(listed.size, 1), 300), [0, max(listed.size - 1, 0)]]))
    wanted = wanted[wanted < listed.size]

    offsets, total = _nth_braces(text.tobytes(), wanted, chunk=chunk)

    assert total == listed.size
    np.testing.assert_array_equal(offsets, listed[wanted])
