"""COCO-format detection sets: an image folder plus an annotations JSON per split.

Each image of the JSON's ``images`` list is one input. Its boxes are converted from COCO's
``[x, y, width, height]`` in pixels to normalized corners (``xmin = x / W``, ``xmax = (x + w)
/ W``, ...), without clipping, so that scaling back by the image size gives the annotation
again; category ids (COCO's own, not remapped), names, ``iscrowd`` and ``area`` are kept,
and ``image/source_id`` is the COCO image id so the evaluator maps detections back to the
ground truth. Annotations are in annotation-id order.

An image whose file is missing, or whose size differs from what the JSON says, is rejected
with the reason (its boxes would be wrong); the ground truth written beside the shards
(``<split>_annotations.json``) holds the written images only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

from edgeline.components.ingest import tfrecord
from edgeline.components.ingest.images import PreparedImage
from edgeline.components.ingest.plan import CocoImage, IngestPlan
from edgeline.components.ingest.sources import FileRef, unsafe_member_reason
from edgeline.pipeline import records
from edgeline.pipeline.errors import UserError

IMAGES_PER_UNIT = 256


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_annotations(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"COCO annotations file does not exist: {path!r}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UserError(f"{path}: expected a COCO object with an 'images' list")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise UserError(f"{path}: '{key}' must be a list")
    return data


def _categories(path: str, data: dict) -> dict[int, str]:
    categories = {}
    for category in data.get("categories", []):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int):
            raise UserError(f"{path}: a category without an integer 'id': {category!r}")
        categories[category["id"]] = str(category.get("name", category["id"]))
    return categories


def _images(path: str, data: dict, categories: dict[int, str]) -> dict[Any, CocoImage]:
    images: dict[Any, CocoImage] = {}
    for image in data["images"]:
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise UserError(f"{path}: an image without 'id' and 'file_name': {image!r}")
        if image["id"] in images:
            raise UserError(f"{path}: image id {image['id']!r} appears twice")
        images[image["id"]] = CocoImage(
            image_id=image["id"],
            file_name=str(image["file_name"]),
            width=int(image.get("width") or 0),
            height=int(image.get("height") or 0),
            annotations=[],
        )
    for annotation in data.get("annotations", []):
        where = f"{path}: annotation {annotation.get('id')!r}"
        if annotation.get("image_id") not in images:
            raise UserError(f"{where} names image_id {annotation.get('image_id')!r}, "
                            "which the file's images do not list")
        if annotation.get("category_id") not in categories:
            raise UserError(f"{where} names category_id {annotation.get('category_id')!r}, "
                            "which the file's categories do not list")
        bbox = annotation.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)):
            raise UserError(f"{where}: bbox must be [x, y, width, height], received {bbox!r}")
        # Only what the examples need: workers load this, and COCO's polygons are large.
        images[annotation["image_id"]].annotations.append({
            "id": annotation.get("id"),
            "bbox": [float(v) for v in bbox],
            "category_id": annotation["category_id"],
            "iscrowd": int(annotation.get("iscrowd", 0)),
            "area": float(annotation.get("area", bbox[2] * bbox[3])),
        })
    for image in images.values():
        image.annotations.sort(key=lambda a: (a["id"] is None, a["id"] or 0))
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
        for image_id in self.image_ids:
            image = images[image_id]
            path = os.path.join(self.images_dir, image.file_name)
            reject = unsafe_member_reason(image.file_name)
            if reject is None and not os.path.isfile(path):
                reject = "file not found"
            yield FileRef(self.split, str(image_id), path, path, label=image_id, reject=reject)


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


def detection_features(
    plan: IngestPlan, ref: FileRef, prepared: PreparedImage, sha256: str
) -> dict[str, tfrecord.FeatureValue]:
    """The features of records.detection_example, for the TF-free encoder."""
    image = plan.coco_images[ref.split][ref.label]
    width, height = prepared.width, prepared.height
    boxes = [a["bbox"] for a in image.annotations]
    return {
        records.ENCODED: ("bytes", [prepared.encoded]),
        records.FORMAT: ("bytes", [b"jpeg"]),
        records.HEIGHT: ("int64", [height]),
        records.WIDTH: ("int64", [width]),
        records.FILENAME: ("bytes", [image.file_name.encode()]),
        records.SOURCE_ID: ("bytes", [str(image.image_id).encode()]),
        records.SHA256: ("bytes", [sha256.encode()]),
        records.BBOX_XMIN: ("float", [x / width for x, _, _, _ in boxes]),
        records.BBOX_YMIN: ("float", [y / height for _, y, _, _ in boxes]),
        records.BBOX_XMAX: ("float", [(x + w) / width for x, _, w, _ in boxes]),
        records.BBOX_YMAX: ("float", [(y + h) / height for _, y, _, h in boxes]),
        records.OBJECT_LABEL: ("int64", [a["category_id"] for a in image.annotations]),
        records.OBJECT_TEXT: (
            "bytes", [plan.categories[a["category_id"]].encode() for a in image.annotations]
        ),
        records.OBJECT_IS_CROWD: ("int64", [a["iscrowd"] for a in image.annotations]),
        records.OBJECT_AREA: ("float", [a["area"] for a in image.annotations]),
    }


def written_ground_truth(data: dict, rejected_ids: set) -> dict:
    """The split's COCO JSON restricted to the images that were written."""
    kept = dict(data)
    kept["images"] = [i for i in data["images"] if i["id"] not in rejected_ids]
    kept["annotations"] = [
        a for a in data.get("annotations", []) if a["image_id"] not in rejected_ids
    ]
    kept.setdefault("categories", [])
    return kept
