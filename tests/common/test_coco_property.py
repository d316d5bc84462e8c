"""Acceptance 3: on random ground truth and detections, the 12 numbers are pycocotools'.

The sets are small but adversarial: boxes on a coarse grid (so IoUs land exactly on the
.50:.05:.95 thresholds and boxes repeat), tied scores within and across images, crowd regions,
ground-truth areas that disagree with their boxes (the area ranges use 'area'), empty images,
categories with ground truth but no detections and the reverse, categories with no
annotations at all, no detections at all, and masks (polygons, and RLE-only detections) for
segm.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeline.common.coco import evaluate_detections

IMAGE_SIZE = 128  # masks are rasterized at this size: small keeps segm fast
COORDINATES = np.array([0, 4, 8, 16, 24, 40], dtype=np.float64)
SIDES = np.array([0, 4, 8, 16, 24, 32, 48, 64, 88, 100, 112], dtype=np.float64)  # areas 0..12544
TIED_SCORES = np.array([0.1, 0.5, 0.5, 0.9, 1.0])


def _box(rng) -> list[float]:
    return [*rng.choice(COORDINATES, 2).tolist(), *rng.choice(SIDES, 2).tolist()]


def _nudged(rng, box: list[float]) -> list[float]:
    """A box near ``box``, so that detections overlap ground truth at all kinds of IoU."""
    shift = rng.choice([-8.0, -4.0, 0.0, 0.0, 4.0, 8.0], 4)
    return [box[0] + shift[0], box[1] + shift[1], max(0.0, box[2] + shift[2]),
            max(0.0, box[3] + shift[3])]


def _polygon(box: list[float]) -> list[list[float]]:
    x, y, width, height = box
    return [[x, y, x, y + height, x + width, y + height, x + width, y]]


@st.composite
def coco_cases(draw):
    """(ground truth, detections, iou type). Hypothesis picks the shape of the case (sizes,
    crowd rate, kind of masks) and a seed; the seed fills it in, so that most cases are
    substantial rather than hypothesis' favourite empty ones (which still come up: empty
    images, no detections, no non-crowd ground truth)."""
    iou_type = draw(st.sampled_from(["bbox", "bbox", "segm"]))
    num_categories = draw(st.integers(1, 4))
    num_images = draw(st.integers(1, 5))
    crowd_probability = draw(st.sampled_from([0.0, 0.1, 0.3]))
    mask_only = iou_type == "segm" and draw(st.booleans())  # loadRes' RLE-only branch
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    category_ids = rng.choice(np.arange(1, 91), num_categories, replace=False).tolist()
    image_ids = rng.choice(np.arange(1, 10_000), num_images, replace=False).tolist()
    ground_truth = {
        "images": [{"id": i, "width": IMAGE_SIZE, "height": IMAGE_SIZE} for i in image_ids],
        "categories": [{"id": c, "name": f"class_{c}"} for c in category_ids],
        "annotations": [],
    }
    truth = []
    for image_id in image_ids:
        for _ in range(int(rng.integers(0, 7))):  # 0: an empty image
            box = _box(rng)
            # the area ranges read 'area', which need not be the box's
            area = box[2] * box[3] if rng.random() < 0.5 else float(rng.integers(1, 12000))
            annotation = {
                "id": len(ground_truth["annotations"]) + 1,
                "image_id": image_id,
                "category_id": int(rng.choice(category_ids)),
                "bbox": box,
                "area": area,
                "iscrowd": int(rng.random() < crowd_probability),
            }
            if iou_type == "segm":
                annotation["segmentation"] = _polygon(box)
            ground_truth["annotations"].append(annotation)
            truth.append((image_id, annotation["category_id"], box))

    detections = []
    num_detections = 0 if rng.random() < 0.08 else int(rng.integers(1, 25))
    for _ in range(num_detections):
        if truth and rng.random() < 0.7:
            image_id, category_id, box = truth[int(rng.integers(len(truth)))]
            box = _nudged(rng, box)
            if rng.random() < 0.2:
                category_id = int(rng.choice(category_ids))  # the wrong class
        else:
            image_id, category_id = int(rng.choice(image_ids)), int(rng.choice(category_ids))
            box = _box(rng)
        score = float(rng.choice(TIED_SCORES)) if rng.random() < 0.5 else float(rng.random())
        detection = {"image_id": image_id, "category_id": category_id, "score": score}
        if mask_only:
            detection["segmentation"] = _rle(box)
        else:
            detection["bbox"] = box
            if iou_type == "segm":
                detection["segmentation"] = _polygon(box)
        detections.append(detection)
    return ground_truth, detections, iou_type


def _rle(box: list[float]) -> dict:
    """A compressed RLE as results files carry it (counts as text)."""
    from pycocotools import mask as mask_utils

    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8, order="F")
    x, y, width, height = (int(v) for v in box)
    mask[y : y + height, x : x + width] = 1
    rle = mask_utils.encode(mask)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=coco_cases())
def test_twelve_numbers_equal_pycocotools(case, reference_on_dicts):
    ground_truth, detections, iou_type = case

    metrics = evaluate_detections(ground_truth, detections, iou_type=iou_type)

    reference = reference_on_dicts(ground_truth, detections, iou_type)
    np.testing.assert_allclose(
        list(metrics.summary.values()), reference.stats, rtol=0, atol=1e-9
    )
    for category_id, ap in reference.per_category_ap().items():
        assert (metrics.per_category_ap[category_id] is None) == (ap is None)
        if ap is not None:
            assert abs(metrics.per_category_ap[category_id] - ap) <= 1e-9
