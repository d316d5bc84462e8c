"""Precision-recall PNGs: one per category with ground truth, plus the all-category curve."""

from __future__ import annotations

import numpy as np
from PIL import Image

from edgeline.common.coco import evaluate_files
from edgeline.components.evaluate.coco_plots import write_precision_recall_plots


def _assert_drawn_png(path, size) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # curves and axes, not a blank canvas


def test_one_png_per_category_with_ground_truth(tmp_path, coco_data):
    folder = coco_data / "small"
    metrics = evaluate_files(folder / "gt_dataset.json", folder / "dt_dataset.json")

    paths = write_precision_recall_plots(metrics, tmp_path / "plots", dpi=50)

    with_ground_truth = [c for c, ap in metrics.per_category_ap.items() if ap is not None]
    assert [p.name for p in paths] == ["pr_all.png"] + [
        f"pr_{c}_{metrics.category_names[c].lower()}.png" for c in with_ground_truth]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in paths)
    for path in paths:
        _assert_drawn_png(path, (240, 200))


def test_chosen_categories_and_none_without_ground_truth(tmp_path, coco_data):
    folder = coco_data / "val2014_100"
    metrics = evaluate_files(folder / "instances_val2014_100.json",
                             folder / "instances_val2014_fakebbox100_results.json")
    assert metrics.per_category_ap[11] is None  # no fire hydrant among these 100 images

    paths = write_precision_recall_plots(metrics, tmp_path, category_ids=[1, 11, 10])

    assert [p.name for p in paths] == ["pr_all.png", "pr_1_person.png", "pr_10_traffic_light.png"]
    _assert_drawn_png(paths[1], (480, 400))
