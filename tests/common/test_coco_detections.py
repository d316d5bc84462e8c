"""Detector outputs -> COCO results: pixel boxes, COCO ids, decoding with the caller's settings,
and boxes clipped to the image, as every stage that scores detections converts them."""

from __future__ import annotations

import numpy as np
import pytest

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.common.coco import evaluate_detections
from edgeline.common.coco_detections import decoded_detections, image_id_of, to_coco_detections
from edgeline.components.evaluate.options import DetectionOptions
from edgeline.pipeline.errors import UserError


def test_detections_in_pixels_with_coco_ids_score_perfectly():
    """Decoded boxes equal to the ground truth, mapped back to pixels, give AP = 1."""
    ground_truth = {
        "images": [{"id": 17, "height": 100, "width": 200}, {"id": 42, "height": 50,
                                                              "width": 80}],
        "categories": [{"id": 3, "name": "circle"}, {"id": 9, "name": "square"}],
        "annotations": [
            {"id": 1, "image_id": 17, "category_id": 3, "bbox": [20, 10, 60, 40], "area": 2400,
             "iscrowd": 0},
            {"id": 2, "image_id": 42, "category_id": 9, "bbox": [8, 5, 40, 30], "area": 1200,
             "iscrowd": 0},
        ],
    }
    decoded = {  # normalized [ymin, xmin, ymax, xmax]; class index 0 -> id 3, 1 -> id 9
        "boxes": np.array([[[0.1, 0.1, 0.5, 0.4], [0, 0, 0, 0]],
                           [[0.1, 0.1, 0.7, 0.6], [0, 0, 0, 0]]], np.float32),
        "scores": np.array([[0.9, 0], [0.8, 0]], np.float32),
        "classes": np.array([[0, 0], [1, 0]]),
        "num_detections": np.array([1, 1]),
    }
    results = to_coco_detections(
        decoded, image_ids=[image_id_of(b"17"), image_id_of("42")],
        heights=[100, 50], widths=[200, 80], category_ids=[3, 9])
    assert len(results) == 2 and results[0]["image_id"] == 17
    np.testing.assert_allclose(results[0]["bbox"], [20, 10, 60, 40], atol=1e-4)
    metrics = evaluate_detections(ground_truth, results)
    assert metrics.summary["AP"] == pytest.approx(1.0)
    with pytest.raises(UserError, match="source_id"):
        image_id_of(b"not-a-number")


def test_raw_detector_outputs_are_decoded_with_the_options():
    """Raw (N, A, 5 + C) outputs go through the detector's decoding with the evaluate options'
    threshold and NMS; soft-NMS keeps overlapping boxes that hard NMS removes."""
    from edgeline.models import detector

    input_size = (32, 32)
    locations = detector.anchor_points(input_size).centers.shape[0]
    raw = np.zeros((1, locations, 5 + 1), np.float32)  # boxes centred on their cells
    raw[0, :, 4:] = -10.0  # background everywhere...
    raw[0, :2, 4:] = 5.0  # ...but two neighbouring stride-8 cells, confident, boxes overlapping
    raw[0, :2, 2:4] = np.log(3.0)  # 24 x 24 pixel boxes
    outputs = {"raw": raw}
    hard = decoded_detections(
        outputs, input_size=input_size, decode_settings=DetectionOptions().decode_settings())
    soft = decoded_detections(
        outputs, input_size=input_size,
        decode_settings=DetectionOptions(nms="soft", soft_nms_sigma=0.5).decode_settings())
    assert hard["num_detections"][0] == 1
    assert soft["num_detections"][0] == 2
    assert soft["scores"][0, 1] < soft["scores"][0, 0]


def test_boxes_past_the_image_edge_are_clipped_to_it():
    """A box reaching past the image is cut at its edge before it becomes pixels, so the train
    stage's box mAP, evaluate and the export gate all score the same clipped box."""
    decoded = {
        "boxes": np.array([[[-0.2, -0.1, 0.5, 1.3]]], np.float32),  # (1, 1, 4) normalized
        "scores": np.array([[0.9]], np.float32),
        "classes": np.array([[0]]),
        "num_detections": np.array([1]),
    }
    (result,) = to_coco_detections(decoded, image_ids=[5], heights=[100], widths=[200],
                                   category_ids=[1])
    np.testing.assert_allclose(result["bbox"], [0.0, 0.0, 200.0, 50.0], atol=1e-4)
    assert result["image_id"] == 5 and result["category_id"] == 1
    assert result["score"] == pytest.approx(0.9)
