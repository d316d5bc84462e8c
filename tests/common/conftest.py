"""The reference the COCO scoring tests compare against: pycocotools' own COCOeval, run as its
users run it (COCO, loadRes, evaluate, accumulate, summarize), with its prints captured."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import json
from pathlib import Path

import numpy as np
import pytest


@dataclasses.dataclass
class Reference:
    stats: np.ndarray  # (12,) COCOeval.stats
    precision: np.ndarray  # (T, R, K, A, M)
    recall: np.ndarray  # (T, K, A, M)
    category_ids: list[int]  # the K axis
    summary_lines: list[str]  # what COCOeval.summarize() printed

    def per_category_ap(self) -> dict[int, float | None]:
        """Detectron2's per-category AP from pycocotools' precision array."""
        result = {}
        for k, category_id in enumerate(self.category_ids):
            values = self.precision[:, :, k, 0, -1]
            values = values[values > -1]
            result[category_id] = float(values.mean()) if values.size else None
        return result


def _run_cocoeval(ground_truth_api, detections_api, iou_type: str) -> Reference:
    from pycocotools.cocoeval import COCOeval

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        evaluator = COCOeval(ground_truth_api, detections_api, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return Reference(
        stats=np.asarray(evaluator.stats, dtype=np.float64),
        precision=evaluator.eval["precision"],
        recall=evaluator.eval["recall"],
        category_ids=list(evaluator.params.catIds),
        summary_lines=[line for line in printed.getvalue().splitlines() if " @[ IoU=" in line],
    )


def pycocotools_on_dicts(ground_truth: dict, detections: list, iou_type: str) -> Reference:
    """pycocotools on in-memory data (deep copies: it writes into what it is given). An empty
    detection list, which its loadRes cannot take (IndexError on anns[0]), becomes an empty
    result set built the way loadRes builds one."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth_api = COCO()
        ground_truth_api.dataset = copy.deepcopy(ground_truth)
        ground_truth_api.createIndex()
        if detections:
            detections_api = ground_truth_api.loadRes(copy.deepcopy(detections))
        else:
            detections_api = COCO()
            detections_api.dataset = {
                "images": list(ground_truth["images"]),
                "categories": copy.deepcopy(ground_truth["categories"]),
                "annotations": [],
            }
            detections_api.createIndex()
    return _run_cocoeval(ground_truth_api, detections_api, iou_type)


@functools.cache
def pycocotools_on_files(ground_truth_path: str, detections_path: str, iou_type: str) -> Reference:
    """pycocotools on files, exactly as its README runs it (cached: the real sets take
    seconds)."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth_api = COCO(ground_truth_path)
        detections_api = ground_truth_api.loadRes(detections_path)
    return _run_cocoeval(ground_truth_api, detections_api, iou_type)


@pytest.fixture(scope="session")
def reference_on_dicts():
    return pycocotools_on_dicts


@pytest.fixture(scope="session")
def reference_on_files():
    return pycocotools_on_files


@pytest.fixture(scope="session")
def coco_data(shared_data) -> Path:
    return shared_data / "coco"


@pytest.fixture()
def small_set(coco_data):
    """(ground truth, detections) of the 3-image set, as dicts."""
    folder = coco_data / "small"
    return (
        json.loads((folder / "gt_dataset.json").read_text()),
        json.loads((folder / "dt_dataset.json").read_text()),
    )
