"""The built-in demo data: deterministic, and its detection boxes are the objects' true extent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgeline.components.ingest import demo_data


@pytest.mark.parametrize("name", [c["name"] for c in demo_data.DETECTION_CATEGORIES])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("box", [(10, 10, 20, 20), (3, 7, 40, 44), (0, 0, 12, 12)])
def test_a_drawn_object_covers_exactly_the_pixels_of_its_coco_box(name, flip, box):
    """A COCO box [x, y, w, h] spans pixel columns x .. x + w - 1; the drawn object must touch
    the first and the last of them and nothing outside (it once spilled one pixel over the
    right and bottom edges, so a perfect detection of a 10-pixel object scored IoU 0.83)."""
    image = Image.new("L", (64, 64))
    demo_data._draw_object(ImageDraw.Draw(image), name, box, 255, flip)
    rows, cols = np.nonzero(np.asarray(image))
    x0, y0, x1, y1 = box
    assert (cols.min(), cols.max() + 1, rows.min(), rows.max() + 1) == (x0, x1, y0, y1)


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    first = demo_data.write_detection_set(tmp_path / "a", seed=3, train_images=4, val_images=2)
    second = demo_data.write_detection_set(tmp_path / "b", seed=3, train_images=4, val_images=2)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for path in files:
        assert (first / path).read_bytes() == (second / path).read_bytes()
    annotations = json.loads((first / "train.json").read_text())["annotations"]
    assert annotations and all(a["bbox"][2] >= 10 and a["bbox"][3] >= 10 for a in annotations)

