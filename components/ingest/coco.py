"""COCO-format detection sets: an image folder plus an annotations JSON per split.

Each image of the JSON's ``images`` list is one input. Its boxes are converted from COCO's
``[x, y, width, height]`` in pixels to normalized corners (``xmin = x / W``, ``xmax = (x + w)
/ W``, ...); category ids (COCO's own, not remapped), names, ``iscrowd`` and ``area`` are kept,
and ``image/source_id`` is the COCO image id so the evaluator maps detections back to the
ground truth. Annotations are in annotation-id order.

An image whose file is missing, or whose size differs from what the JSON says, is rejected
with the reason (its boxes would be wrong); the ground truth written beside the shards
(``<split>_annotations.json``) holds the written images only.

Bad boxes are dropped or fixed, counted, and listed in ``boxes.jsonl``, the same way in the
records and in the ground truth written beside them (which is strict JSON: RFC 8259, section
6, has no NaN or Infinity):

* a box with a coordinate that is NaN or infinite, no area (width or height <= 0), or nothing
  inside the image is dropped, as the TF Object Detection API's create_coco_tf_record.py
  skips boxes it cannot use;
* a box that reaches past the image is clipped to it, so normalized coordinates lie in [0, 1]
  (what tfds' BBoxFeature requires);
* an ``area`` that is NaN, infinite or negative becomes the box's area.

Everything else malformed in the JSON is bad input and stops the run with one line naming the
file and the entry, before any work: an ``iscrowd`` that is not 0 or 1 among them. COCO
defines it as 0 or 1, and it changes what an evaluation counts (crowd regions are ignored,
pycocotools cocoeval.py), so guessing what ``"yes"`` meant, or dropping the annotation, would
change scores silently.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator
from typing import Any

from edgeline.components.ingest import tfrecord
from edgeline.components.ingest.images import PreparedImage
from edgeline.components.ingest.plan import CocoImage, IngestPlan
from edgeline.components.ingest.sources import FileRef, Scope, printable, unsafe_member_reason
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError

IMAGES_PER_UNIT = 256


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _non_finite_outside_boxes(data: dict) -> str | None:
    """Where a NaN or infinity sits that is not in a box or an area (those are dropped or
    fixed), e.g. ``images[3].width``; None if nowhere."""
    def find(value, where):
        if isinstance(value, float) and not math.isfinite(value):
            return where
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return None
        for key, item in items:
            if where.startswith("annotations[") and where.count(".") == 0 and key in (
                    "bbox", "area"):
                continue
            found = find(item, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}")
            if found:
                return found
        return None

    for key, value in data.items():
        found = find(value, key)
        if found:
            return found
    return None


def load_annotations(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"COCO annotations file does not exist: {path!r}")
    non_finite = []

    def constant(name: str) -> float:  # json's NaN/Infinity extension, which JSON lacks
        non_finite.append(name)
        return float(name)

    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, parse_constant=constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to read") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected a COCO object with an 'images' list")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise UserError(f"{path}: '{key}' must be a list")
    where = _non_finite_outside_boxes(data) if non_finite else None
    if where:
        raise UserError(f"{path}: {where} is NaN or infinite, which JSON has no numbers for "
                        "(RFC 8259, section 6); only a box or an area may be, and is then "
                        "dropped or fixed")
    return data


def _categories(path: str, data: dict) -> dict[int, str]:
    categories = {}
    for category in data.get("categories", []):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int):
            raise UserError(f"{path}: a category without an integer 'id': {category!r}")
        categories[category["id"]] = str(category.get("name", category["id"]))
    return categories


def _image_size(path: str, image: dict, key: str) -> int:
    value = image.get(key) or 0
    if not _number(value) or not math.isfinite(value) or value < 0 or value != int(value):
        raise UserError(f"{path}: image {image['id']!r}: {key} must be a whole number of "
                        f"pixels, received {value!r}")
    return int(value)


def _images(path: str, data: dict, categories: dict[int, str]) -> dict[Any, CocoImage]:
    images: dict[Any, CocoImage] = {}
    for image in data["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise UserError(f"{path}: an image without 'id' and 'file_name': {image!r}")
        if not isinstance(image["id"], int | str) or isinstance(image["id"], bool):
            raise UserError(f"{path}: image id must be an integer or a string, received "
                            f"{image['id']!r}")
        if image["id"] in images:
            raise UserError(f"{path}: image id {image['id']!r} appears twice")
        images[image["id"]] = CocoImage(
            image_id=image["id"],
            file_name=str(image["file_name"]),
            width=_image_size(path, image, "width"),
            height=_image_size(path, image, "height"),
            annotations=[],
        )
    for index, annotation in enumerate(data.get("annotations", [])):
        if not isinstance(annotation, dict):
            raise UserError(f"{path}: annotations[{index}] must be an object, received "
                            f"{annotation!r}")
        where = f"{path}: annotation {annotation.get('id')!r}"
        image_id = annotation.get("image_id")
        if not isinstance(image_id, int | str) or image_id not in images:
            raise UserError(f"{where} names image_id {image_id!r}, "
                            "which the file's images do not list")
        category_id = annotation.get("category_id")
        if not isinstance(category_id, int) or category_id not in categories:
            raise UserError(f"{where} names category_id {category_id!r}, "
                            "which the file's categories do not list")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)):
            raise UserError(f"{where}: bbox must be [x, y, width, height], received {bbox!r}")
        iscrowd = annotation.get("iscrowd", 0)
        if iscrowd not in (0, 1) or not isinstance(iscrowd, int):  # True and False are 1, 0
            raise UserError(f"{where}: iscrowd must be 0 or 1, received {iscrowd!r}")
        area = annotation.get("area", bbox[2] * bbox[3])
        if not _number(area):
            raise UserError(f"{where}: area must be a number, received {area!r}")
        # Only what the examples need: workers load this, and COCO's polygons are large.
        images[image_id].annotations.append({
            "id": annotation.get("id"),
            "index": index,  # in the file's annotations list, to edit the ground truth
            "bbox": [float(v) for v in bbox],
            "category_id": category_id,
            "iscrowd": int(iscrowd),
            "area": float(area),
        })
    for image in images.values():
        image.annotations.sort(key=lambda a: (not isinstance(a["id"], int),
                                              a["id"] if isinstance(a["id"], int) else 0,
                                              a["index"]))
    return images


@dataclasses.dataclass(frozen=True)
class CocoSplit:
    split: str
    images_dir: str
    annotations_path: str


@dataclasses.dataclass(frozen=True)
class CocoUnit:
    """A chunk of one split's images (by id)."""

    split: str
    images_dir: str
    image_ids: tuple

    def list_refs(self, plan: IngestPlan) -> Iterator[FileRef]:
        images = plan.coco_images[self.split]
        scope = Scope.of(self.images_dir)
        for image_id in self.image_ids:
            image = images[image_id]
            path = os.path.join(self.images_dir, image.file_name)
            reject = unsafe_member_reason(image.file_name)
            readable = path
            if reject is None:
                readable, reject = scope.path_problem(path)
            yield FileRef(self.split, printable(str(image_id)), printable(path), readable,
                          label=image_id, reject=reject)


@dataclasses.dataclass
class CocoPlan:
    units: list
    images: dict[str, dict[Any, CocoImage]]  # split -> image id -> image
    categories: dict[int, str]
    ground_truth: dict[str, dict]  # split -> the loaded JSON


def plan_coco(splits: list[CocoSplit]) -> CocoPlan:
    """Read and check every split's annotations; chunk their images into units."""
    units: list = []
    images_by_split: dict[str, dict[Any, CocoImage]] = {}
    categories: dict[int, str] = {}
    ground_truth = {}
    for spec in splits:
        if not os.path.isdir(spec.images_dir):
            raise UserError(f"COCO images folder does not exist: {spec.images_dir!r}")
        data = load_annotations(spec.annotations_path)
        split_categories = _categories(spec.annotations_path, data)
        for cid, name in split_categories.items():
            if categories.get(cid, name) != name:
                raise UserError(f"{spec.annotations_path}: category {cid} is {name!r} here "
                                f"but {categories[cid]!r} in another split")
        categories.update(split_categories)
        images = _images(spec.annotations_path, data, split_categories)
        if not images:
            raise UserError(f"{spec.annotations_path}: lists no images")
        images_by_split[spec.split] = images
        ground_truth[spec.split] = data
        ids = list(images)
        for start in range(0, len(ids), IMAGES_PER_UNIT):
            chunk = tuple(ids[start : start + IMAGES_PER_UNIT])
            units.append(CocoUnit(spec.split, os.path.abspath(spec.images_dir), chunk))
    return CocoPlan(units, images_by_split, dict(sorted(categories.items())), ground_truth)


def size_problem(image: CocoImage, prepared: PreparedImage) -> str | None:
    """Boxes are in the pixels of the annotated image: a file of another size cannot hold
    them. Files that do not state a size (width/height 0) take the file's."""
    if image.width and image.height and (image.width, image.height) != (
        prepared.width, prepared.height
    ):
        return (f"image is {prepared.width}x{prepared.height} but the annotations say "
                f"{image.width}x{image.height}")
    return None


def checked_box(bbox: list[float], width: int, height: int) -> tuple[list[float] | None, str]:
    """(the box to write, or None to drop it; what was wrong, "" if nothing) for a COCO
    ``[x, y, width, height]`` box on an image of ``width`` x ``height`` pixels."""
    shown = "[" + ", ".join(f"{v:g}" for v in bbox) + "]"
    if not all(map(math.isfinite, bbox)):
        return None, f"bbox {shown} is not finite"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return None, f"bbox {shown} has no area"
    right, bottom = x + w, y + h  # may overflow to inf: then clipped below
    if x >= width or y >= height or right <= 0 or bottom <= 0:
        return None, f"bbox {shown} lies outside the {width}x{height} image"
    if x >= 0 and y >= 0 and right <= width and bottom <= height:
        return bbox, ""
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(right, width), min(bottom, height)
    return [x0, y0, x1 - x0, y1 - y0], f"bbox {shown} clipped to the {width}x{height} image"


def checked_annotations(image: CocoImage, width: int, height: int) -> tuple[list[dict], list]:
    """(the annotations to write, a note for each one dropped or fixed)."""
    kept, notes = [], []
    for annotation in image.annotations:
        bbox, problem = checked_box(annotation["bbox"], width, height)
        note = {"image_id": image.image_id, "annotation": annotation["id"],
                "index": annotation["index"], "reason": problem}
        if bbox is None:
            notes.append({**note, "action": "dropped"})
            continue
        changes = {"bbox": bbox} if problem else {}
        area = annotation["area"]
        if not math.isfinite(area) or area < 0:
            changes["area"] = bbox[2] * bbox[3]
            note["reason"] = "; ".join(filter(None, (
                problem, f"area {area:g} replaced by the box's {changes['area']:g}")))
        if changes:
            notes.append({**note, "action": "fixed", **changes})
        kept.append({**annotation, **changes})
    return kept, notes


def detection_features(
    plan: IngestPlan, ref: FileRef, prepared: PreparedImage, sha256: str
) -> tuple[dict[str, tfrecord.FeatureValue], list[dict]]:
    """The features of records.detection_example, for the TF-free encoder, and the notes on
    boxes dropped or fixed."""
    image = plan.coco_images[ref.split][ref.label]
    width, height = prepared.width, prepared.height
    annotations, notes = checked_annotations(image, width, height)
    boxes = [a["bbox"] for a in annotations]
    features = {
        records.ENCODED: ("bytes", [prepared.encoded]),
        records.FORMAT: ("bytes", [b"jpeg"]),
        records.HEIGHT: ("int64", [height]),
        records.WIDTH: ("int64", [width]),
        records.FILENAME: ("bytes", [printable(image.file_name).encode()]),
        records.SOURCE_ID: ("bytes", [printable(str(image.image_id)).encode()]),
        records.SHA256: ("bytes", [sha256.encode()]),
        records.BBOX_XMIN: ("float", [x / width for x, _, _, _ in boxes]),
        records.BBOX_YMIN: ("float", [y / height for _, y, _, _ in boxes]),
        records.BBOX_XMAX: ("float", [(x + w) / width for x, _, w, _ in boxes]),
        records.BBOX_YMAX: ("float", [(y + h) / height for _, y, _, h in boxes]),
        records.OBJECT_LABEL: ("int64", [a["category_id"] for a in annotations]),
        records.OBJECT_TEXT: (
            "bytes", [plan.categories[a["category_id"]].encode() for a in annotations]
        ),
        records.OBJECT_IS_CROWD: ("int64", [a["iscrowd"] for a in annotations]),
        records.OBJECT_AREA: ("float", [a["area"] for a in annotations]),
    }
    return features, notes


def written_ground_truth(data: dict, rejected_ids: set, box_notes: list[dict]) -> dict:
    """The split's COCO JSON restricted to the images that were written, with the boxes
    dropped or fixed as in the records."""
    edits = {note["index"]: note for note in box_notes}
    kept = dict(data)
    kept["images"] = [i for i in data["images"] if i["id"] not in rejected_ids]
    kept["annotations"] = []
    for index, annotation in enumerate(data.get("annotations", [])):
        note = edits.get(index, {})
        if annotation["image_id"] in rejected_ids or note.get("action") == "dropped":
            continue
        changes = {key: note[key] for key in ("bbox", "area") if key in note}
        kept["annotations"].append({**annotation, **changes} if changes else annotation)
    kept.setdefault("categories", [])
    return kept


def write_ground_truth(path: str, ground_truth: dict, source: str) -> None:
    """Strict JSON (no NaN): a value left non-finite is bad input, named with its place."""
    try:
        text = json.dumps(ground_truth, allow_nan=False)
    except ValueError:
        where = _non_finite_outside_boxes(ground_truth) or "a number"
        raise UserError(f"{source}: {where} is not a finite number, which JSON cannot hold "
                        "(RFC 8259, section 6)") from None
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
