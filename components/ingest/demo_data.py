"""Built-in demo data: small, deterministic, and hard enough that a model must learn.

Two generators, so the pipeline has an embedded default that needs no download:

* :func:`write_classification_set` writes an ImageNet-layout folder
  (``train/<wnid>/*.JPEG``, ``val/ILSVRC2012_val_XXXXXXXX.JPEG`` plus ``val_labels.csv``,
  and ``LOC_synset_mapping.txt`` naming the classes as the Kaggle ImageNet release does).
  Ten shape/texture classes drawn at random position, scale, rotation and colour over a
  noisy, coloured background: colour carries no label information, so a model has to see
  shape. A few of the known ImageNet faults are planted in ``train/`` (a CMYK JPEG, a PNG
  named ``.JPEG``, grayscale JPEGs, a truncated file) so the demo shows ingest fixing and
  accounting for them.
* :func:`write_detection_set` writes a COCO-format set (``images/``, ``train.json``,
  ``val.json``): several objects per image from three categories, sizes from COCO "small"
  (area < 32^2) to "large", with distractor clutter.

Everything is a function of the seed: the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSIFICATION_CLASSES = (
    ("n90000001", "disc"),
    ("n90000002", "square"),
    ("n90000003", "triangle"),
    ("n90000004", "ring"),
    ("n90000005", "cross"),
    ("n90000006", "horizontal stripes"),
    ("n90000007", "vertical stripes"),
    ("n90000008", "checkerboard"),
    ("n90000009", "star"),
    ("n90000010", "crescent"),
)

DETECTION_CATEGORIES = ({"id": 1, "name": "disc"}, {"id": 2, "name": "square"},
                        {"id": 3, "name": "triangle"})

# Version of the generators' output; bump it when the pictures change so caches rebuild.
# 2: detection objects drawn to their boxes' last pixel; 3: the demo's sizes (4,000 / 500
# classification images, 1,200 / 200 detection images): with 1,200 classification images a
# MobileNet v2 overfit its 10 shapes (0.85 top-1 on train, 0.74 on validation after 555
# steps), with 4,000 and label smoothing it reaches 0.98 in 1,000.
DEMO_DATA_VERSION = 3


def _color(rng: np.random.RandomState) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.randint(0, 256, size=3))


def _contrasting(rng: np.random.RandomState, background: tuple[int, int, int]):
    """A random colour far enough from the background to be visible."""
    while True:
        color = _color(rng)
        if sum(abs(a - b) for a, b in zip(color, background)) > 180:
            return color


def _background(rng: np.random.RandomState, size: int) -> Image.Image:
    """A colour gradient plus pixel noise: no two backgrounds alike."""
    top, bottom = np.array(_color(rng), float), np.array(_color(rng), float)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]  # (H, 1, 1)
    pixels = top * (1 - ramp) + bottom * ramp  # (H, 1, 3)
    pixels = np.broadcast_to(pixels, (size, size, 3)) + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float, inner=None):
    points = []
    count = sides * (2 if inner else 1)
    for i in range(count):
        r = inner if inner and i % 2 else radius
        theta = angle + 2 * math.pi * i / count
        points.append((cx + r * math.cos(theta), cy + r * math.sin(theta)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, name: str, box, color, background, angle: float):
    x0, y0, x1, y1 = box
    cx, cy, radius = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if name == "disc":
        draw.ellipse(box, fill=color)
    elif name == "square":
        draw.polygon(_polygon(cx, cy, radius * 1.3, 4, angle + math.pi / 4), fill=color)
    elif name == "triangle":
        draw.polygon(_polygon(cx, cy, radius, 3, angle - math.pi / 2), fill=color)
    elif name == "ring":
        draw.ellipse(box, fill=color)
        inset = radius * 0.45
        draw.ellipse((x0 + inset, y0 + inset, x1 - inset, y1 - inset), fill=background)
    elif name == "cross":
        arm = radius * 0.35
        for poly_angle in (angle, angle + math.pi / 2):
            dx, dy = math.cos(poly_angle), math.sin(poly_angle)
            px, py = -dy * arm, dx * arm
            draw.polygon(
                [(cx - dx * radius + px, cy - dy * radius + py),
                 (cx + dx * radius + px, cy + dy * radius + py),
                 (cx + dx * radius - px, cy + dy * radius - py),
                 (cx - dx * radius - px, cy - dy * radius - py)],
                fill=color,
            )
    elif name in ("horizontal stripes", "vertical stripes"):
        period = max(3, int(radius / 2.5))
        for offset in range(0, int(x1 - x0), 2 * period):
            if name == "horizontal stripes":
                draw.rectangle((x0, y0 + offset, x1, y0 + offset + period - 1), fill=color)
            else:
                draw.rectangle((x0 + offset, y0, x0 + offset + period - 1, y1), fill=color)
    elif name == "checkerboard":
        cell = max(3, int(radius / 2))
        for i, gx in enumerate(range(int(x0), int(x1), cell)):
            for j, gy in enumerate(range(int(y0), int(y1), cell)):
                if (i + j) % 2 == 0:
                    draw.rectangle((gx, gy, gx + cell - 1, gy + cell - 1), fill=color)
    elif name == "star":
        draw.polygon(_polygon(cx, cy, radius, 5, angle, inner=radius * 0.42), fill=color)
    elif name == "crescent":
        draw.ellipse(box, fill=color)
        shift = radius * 0.55
        dx, dy = math.cos(angle) * shift, math.sin(angle) * shift
        draw.ellipse((x0 + dx, y0 + dy, x1 + dx, y1 + dy), fill=background)
    else:  # pragma: no cover - a bug in the class table
        raise ValueError(f"unknown shape {name!r}")


def _classification_image(rng: np.random.RandomState, name: str, size: int) -> Image.Image:
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    # Distractors: small blobs of other colours, so "anything on the background" is no cue.
    for _ in range(rng.randint(0, 4)):
        r = rng.uniform(2, 5)
        x, y = rng.uniform(0, size, 2)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=_color(rng))
    radius = rng.uniform(0.22, 0.42) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    mean_bg = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(0))
    color = _contrasting(rng, mean_bg)
    _draw_shape(draw, name, (cx - radius, cy - radius, cx + radius, cy + radius), color,
                mean_bg, rng.uniform(0, 2 * math.pi))
    if rng.rand() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return image


def _jpeg(image: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, **kwargs)
    return buffer.getvalue()


def write_classification_set(root: str | os.PathLike, *, seed: int = 0,
                             train_per_class: int = 400, val_per_class: int = 50,
                             image_size: int = 72, plant_faults: bool = True) -> Path:
    """Write the classification demo set in ImageNet layout under ``root``; return ``root``.

    With ``plant_faults`` the train split also holds one CMYK JPEG, one PNG named ``.JPEG``,
    two grayscale JPEGs (all fixable) and one truncated JPEG (to be rejected).
    """
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(
            f"Received: train_per_class={train_per_class}, val_per_class={val_per_class}; "
            "both must be >= 1"
        )
    root = Path(root)
    rng = np.random.RandomState(seed)
    (root / "val").mkdir(parents=True, exist_ok=True)
    with open(root / "LOC_synset_mapping.txt", "w", encoding="utf-8") as f:
        for wnid, text in CLASSIFICATION_CLASSES:
            f.write(f"{wnid} {text}\n")
    for wnid, text in CLASSIFICATION_CLASSES:
        class_dir = root / "train" / wnid
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(train_per_class):
            image = _classification_image(rng, text, image_size)
            (class_dir / f"{wnid}_{i:05d}.JPEG").write_bytes(_jpeg(image))
    # Validation: shuffled across classes and numbered as ILSVRC2012_val_XXXXXXXX.JPEG, with
    # the labels in a filename,wnid CSV, as a user's ground-truth file would be.
    order = [(wnid, text) for wnid, text in CLASSIFICATION_CLASSES for _ in range(val_per_class)]
    rng.shuffle(order)
    with open(root / "val_labels.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "wnid"])
        for number, (wnid, text) in enumerate(order, start=1):
            filename = f"ILSVRC2012_val_{number:08d}.JPEG"
            (root / "val" / filename).write_bytes(_jpeg(_classification_image(rng, text, image_size)))
            writer.writerow([filename, wnid])
    if plant_faults:
        _plant_faults(root, rng, image_size)
    return root


def _plant_faults(root: Path, rng: np.random.RandomState, image_size: int) -> None:
    """The faults real ImageNet has (CMYK, PNG as .JPEG, grayscale) and one it should not."""
    classes = [c for c in CLASSIFICATION_CLASSES]
    (wnid0, text0), (wnid1, text1), (wnid2, text2), (wnid3, text3) = classes[:4]
    cmyk = _classification_image(rng, text0, image_size).convert("CMYK")
    (root / "train" / wnid0 / f"{wnid0}_cmyk.JPEG").write_bytes(_jpeg(cmyk))
    png = io.BytesIO()
    _classification_image(rng, text1, image_size).save(png, format="PNG")
    (root / "train" / wnid1 / f"{wnid1}_png.JPEG").write_bytes(png.getvalue())
    for k in range(2):
        gray = _classification_image(rng, text2, image_size).convert("L")
        (root / "train" / wnid2 / f"{wnid2}_gray{k}.JPEG").write_bytes(_jpeg(gray))
    whole = _jpeg(_classification_image(rng, text3, image_size))
    (root / "train" / wnid3 / f"{wnid3}_truncated.JPEG").write_bytes(whole[: len(whole) // 2])


def _overlap(box, boxes, limit: float = 0.1) -> bool:
    x0, y0, x1, y1 = box
    for bx0, by0, bx1, by1 in boxes:
        iw = max(0.0, min(x1, bx1) - max(x0, bx0))
        ih = max(0.0, min(y1, by1) - max(y0, by0))
        smaller = min((x1 - x0) * (y1 - y0), (bx1 - bx0) * (by1 - by0))
        if iw * ih > limit * smaller:
            return True
    return False


def _detection_image(rng: np.random.RandomState, size: int, max_objects: int,
                     min_side: int = 10):
    image = _background(rng, size)
    draw = ImageDraw.Draw(image)
    mean_bg = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(0))
    # Clutter that is not an object: thin lines.
    for _ in range(rng.randint(0, 4)):
        xs, ys = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        draw.line((xs[0], ys[0], xs[1], ys[1]), fill=_color(rng), width=1)
    objects, boxes = [], []
    for _ in range(rng.randint(1, max_objects + 1)):
        # Log-uniform side from min_side (10 px) to 0.8 of the image: many COCO-small objects
        # (area < 32^2), some medium and large, as COCO's size buckets need.
        side = float(np.exp(rng.uniform(np.log(min_side), np.log(size * 0.8))))
        side = float(round(side))
        x0, y0 = (float(v) for v in rng.randint(0, int(size - side) + 1, 2))
        box = (x0, y0, x0 + side, y0 + side)
        if _overlap(box, boxes):
            continue
        category = DETECTION_CATEGORIES[rng.randint(len(DETECTION_CATEGORIES))]
        _draw_object(draw, category["name"], box, _contrasting(rng, mean_bg), rng.rand() < 0.5)
        boxes.append(box)
        objects.append((category, box))
    return image, objects


def _draw_object(draw: ImageDraw.ImageDraw, name: str, box, color, flip: bool) -> None:
    """Detection objects fill their box exactly, so the annotation is the true extent.

    The COCO box ``[x, y, w, h]`` covers the continuous span ``[x, x + w)``, that is pixel
    columns ``x .. x + w - 1``. PIL's shapes include both ends of the coordinates they are
    given (``rectangle((10, 10, 20, 20))`` fills 11 x 11 pixels), so they are drawn to
    ``x1 - 1, y1 - 1``; drawing to ``x1, y1`` made every object one pixel wider and taller
    than its annotation, which caps the IoU of a perfect 10-pixel detection at 0.83.
    """
    x0, y0, x1, y1 = box
    last_x, last_y = x1 - 1, y1 - 1  # the last pixel column and row inside the box
    if name == "disc":
        draw.ellipse((x0, y0, last_x, last_y), fill=color)
    elif name == "square":
        draw.rectangle((x0, y0, last_x, last_y), fill=color)
    else:  # triangle, apex up or down
        apex, base = (last_y, y0) if flip else (y0, last_y)
        draw.polygon([(x0, base), (last_x, base), ((x0 + last_x) / 2, apex)], fill=color)


def write_detection_set(root: str | os.PathLike, *, seed: int = 0, train_images: int = 1200,
                        val_images: int = 200, image_size: int = 128, max_objects: int = 6,
                        min_side: int = 10) -> Path:
    """Write the detection demo set as COCO JSON (``train.json``, ``val.json``) plus
    ``images/``; return ``root``."""
    if train_images < 1 or val_images < 1:
        raise ValueError(
            f"Received: train_images={train_images}, val_images={val_images}; both must be >= 1"
        )
    if not 2 <= min_side <= image_size * 0.8:
        raise ValueError(
            f"Received: min_side={min_side}; must be in [2, 0.8 * image_size={image_size}]"
        )
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    image_id, annotation_id = 0, 0
    for split, count in (("train", train_images), ("val", val_images)):
        images, annotations = [], []
        for _ in range(count):
            image_id += 1
            image, objects = _detection_image(rng, image_size, max_objects, min_side)
            filename = f"{split}_{image_id:06d}.jpg"
            (root / "images" / filename).write_bytes(_jpeg(image, quality=92))
            images.append({"id": image_id, "file_name": filename, "width": image_size,
                           "height": image_size})
            for category, box in objects:
                annotation_id += 1
                x0, y0, x1, y1 = box
                annotations.append({
                    "id": annotation_id, "image_id": image_id, "category_id": category["id"],
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round((x1 - x0) * (y1 - y0), 2), "iscrowd": 0,
                })
        with open(root / f"{split}.json", "w", encoding="utf-8") as f:
            json.dump({"info": {"description": "edgeline demo detection set", "version":
                                DEMO_DATA_VERSION},
                       "images": images, "annotations": annotations,
                       "categories": list(DETECTION_CATEGORIES)}, f)
    return root
