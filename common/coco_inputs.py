"""Reading, checking and indexing COCO ground truth and detections for the metric engine.

This is the part of COCO evaluation that surrounds the engine (faster-coco-eval's C++
``COCOevalEvaluateAccumulate``): turning a ground-truth dict and a list of detections into
the per-(image, category) cells the engine matches, with one clear line for each kind of bad
input instead of pycocotools' ``AssertionError``, ``KeyError`` or silent drop.

The conventions are pycocotools' (``COCO.loadRes`` and ``COCOeval._prepare``), so that the
numbers agree with it to the last bit:

- a detection's area is its box's ``w * h`` when it has a box, else its mask's area;
- a detection without a mask, evaluated as ``segm``, is the polygon of its box;
- a ground-truth annotation is ignored exactly when it is a crowd (``iscrowd``), whatever
  ``ignore`` field it may carry;
- within one (image, category), ground truth keeps its file order and detections are sorted
  by decreasing score with a stable sort (``np.argsort(-score, kind="mergesort")``), so the
  engine's own stable sorts keep our order and the IoU rows line up with its detections.

Where pycocotools crashes or counts wrongly we do better and say so in the docstrings:
ground truth without ``area`` or ``iscrowd`` gets the box's area (the mask's for ``segm``)
and 0; annotation id 0 (which pycocotools' matcher cannot tell from "unmatched") is fine,
because annotations are renumbered 1..N internally; detections naming an image or category
the ground truth lacks are an error, not an assertion or a silent drop; an empty detection
list is valid.

Nothing here modifies the caller's dicts: the engine writes into the annotation dicts it is
given (``rle``), so it gets fresh ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.pipeline.errors import UserError

IOU_TYPES = ("bbox", "segm")
MAX_DETECTIONS = 100  # pycocotools' largest maxDets: detections past it never reach the matcher

CellKey = tuple[int, int]  # (image_id, category_id)


@dataclasses.dataclass
class Cells:
    """Annotations sorted so that each (image, category) cell is one contiguous slice, in the
    order the engine will see them: ground truth in file order, detections by decreasing score.

    ``records[start:end]`` are the cell's dicts for the engine's dataset (``id``, ``area``,
    ``iscrowd``, ``ignore`` and, for detections, ``score``); ``regions[start:end]`` what IoU is
    computed on: rows of an (N, 4) float64 array of ``[x, y, w, h]`` boxes, or RLE dicts;
    ``is_crowd[start:end]`` the crowd flags (all 0 for detections).
    """

    spans: dict[CellKey, tuple[int, int]]  # cell -> (start, end)
    records: list[dict]
    regions: Any  # (N, 4) float64 array for bbox, list of N RLE dicts for segm
    is_crowd: list[int]

    def __len__(self) -> int:
        return len(self.records)


@dataclasses.dataclass
class GroundTruthIndex:
    iou_type: str
    category_names: dict[int, str]  # every category of the file, sorted by id
    image_ids: list[int]  # every image of the file, sorted
    image_sizes: dict[int, tuple[int, int]]  # image id -> (height, width), 0 when unknown
    cells: Cells
    # Categories with at least one non-crowd annotation: the only ones whose precision is not
    # -1 in pycocotools, so the only ones the engine needs to see.
    scored_category_ids: list[int]


def group_into_cells(image_ids: np.ndarray, category_ids: np.ndarray, scores=None):
    """(order, spans): the permutation that makes each (image, category) cell contiguous, and
    each cell's (start, end) in it.

    The sort is stable, so ground truth keeps its file order within a cell and detections
    (``scores`` given) are by decreasing score with ties in file order: what pycocotools gets
    from ``np.argsort(-score, kind="mergesort")`` over the cell's file-ordered detections.
    """
    keys = (category_ids, image_ids) if scores is None else (-scores, category_ids, image_ids)
    order = np.lexsort(keys)  # (N,)
    sorted_images, sorted_categories = image_ids[order], category_ids[order]
    boundaries = np.flatnonzero(
        (sorted_images[1:] != sorted_images[:-1])
        | (sorted_categories[1:] != sorted_categories[:-1])
    ) + 1
    starts = [0, *boundaries.tolist()] if order.size else []
    ends = [*boundaries.tolist(), int(order.size)] if order.size else []
    cell_keys = zip(sorted_images[starts].tolist(), sorted_categories[starts].tolist())
    return order, dict(zip(cell_keys, zip(starts, ends)))


# --------------------------------------------------------------------------------------------
# Files


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON at ``path``; a missing, unreadable or malformed file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {str(path)!r}")
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {what} file {str(path)!r}: {error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{what} file {str(path)!r} is not valid JSON: {error}") from None


def load_ground_truth(path: str | Path) -> dict:
    """A COCO ground-truth file (``images``, ``annotations``, ``categories``) as a dict."""
    ground_truth = read_json(path, "ground truth")
    if not isinstance(ground_truth, dict):
        raise UserError(
            f"ground truth file {str(path)!r} must hold a JSON object with 'images', "
            f"'annotations' and 'categories'; received a {type(ground_truth).__name__}"
        )
    return ground_truth


def load_detections(path: str | Path) -> list[dict]:
    """Detections from a COCO results file (a JSON list of ``{"image_id", "category_id",
    "bbox" | "segmentation", "score"}``) or from a COCO-format file holding them under
    ``annotations`` (each with a ``score``)."""
    detections = read_json(path, "detections")
    if isinstance(detections, dict):
        if "annotations" not in detections:
            raise UserError(
                f"detections file {str(path)!r} is a JSON object without 'annotations'; "
                "expected a COCO results list or a COCO file with 'annotations'"
            )
        detections = detections["annotations"]
    if not isinstance(detections, list):
        raise UserError(
            f"detections file {str(path)!r} must hold a JSON list of detections; "
            f"received a {type(detections).__name__}"
        )
    return detections


# --------------------------------------------------------------------------------------------
# Ground truth


def _require_list(container: dict, key: str, what: str) -> list:
    if key not in container:
        raise UserError(f"{what} has no {key!r} list (keys: {sorted(container)})")
    value = container[key]
    if not isinstance(value, list):
        raise UserError(f"{what} {key!r} must be a list; received a {type(value).__name__}")
    return value


def _as_id(value: Any, what: str) -> int:
    """An integer id; JSON floats with an integral value (``3.0``) are accepted as pycocotools'
    set lookups do."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{what} must be an integer; received {value!r}")
    if not isinstance(value, numbers.Integral):
        if not float(value).is_integer():
            raise UserError(f"{what} must be an integer; received {value!r}")
    return int(value)


def _check_box(box: Any, what: str) -> list[float]:
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise UserError(f"{what} must be [x, y, width, height]; received {box!r}")
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in box):
        raise UserError(f"{what} must hold 4 numbers; received {box!r}")
    if not all(math.isfinite(v) for v in box):
        raise UserError(f"{what} has a value that is not finite; received {box!r}")
    if box[2] < 0 or box[3] < 0:
        raise UserError(f"{what} has a negative width or height; received {box!r}")
    return box


def _index_images(images: list) -> tuple[list[int], dict[int, tuple[int, int]]]:
    sizes: dict[int, tuple[int, int]] = {}
    for position, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise UserError(f"ground truth image #{position} has no 'id'; received {image!r}")
        image_id = _as_id(image["id"], f"ground truth image #{position} id")
        if image_id in sizes:
            raise UserError(f"ground truth image id {image_id} appears more than once")
        height, width = image.get("height", 0), image.get("width", 0)
        sizes[image_id] = (
            int(height) if isinstance(height, numbers.Real) else 0,
            int(width) if isinstance(width, numbers.Real) else 0,
        )
    return sorted(sizes), sizes


def _index_categories(categories: list) -> dict[int, str]:
    names: dict[int, str] = {}
    for position, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category:
            raise UserError(
                f"ground truth category #{position} has no 'id'; received {category!r}"
            )
        category_id = _as_id(category["id"], f"ground truth category #{position} id")
        if category_id in names:
            raise UserError(f"ground truth category id {category_id} appears more than once")
        names[category_id] = str(category.get("name", category_id))
    return dict(sorted(names.items()))


def index_ground_truth(ground_truth: dict, iou_type: str = "bbox") -> GroundTruthIndex:
    """Check a COCO ground-truth dict and group its annotations per (image, category).

    Raises UserError naming the first problem: a missing list, an annotation whose image or
    category is not declared, a repeated annotation id, a box with a negative side, a
    ``segm`` evaluation of an annotation without a mask or of a polygon on an image of
    unknown size.
    """
    check_iou_type(iou_type)
    if not isinstance(ground_truth, dict):
        raise UserError(
            f"ground truth must be a COCO dict; received a {type(ground_truth).__name__}"
        )
    image_ids, image_sizes = _index_images(_require_list(ground_truth, "images", "ground truth"))
    category_names = _index_categories(
        _require_list(ground_truth, "categories", "ground truth")
    )
    annotations = _require_list(ground_truth, "annotations", "ground truth")

    seen_ids: set = set()
    records, regions, image_column, category_column = [], [], [], []
    for position, annotation in enumerate(annotations):
        record, region, (image_id, category_id) = _ground_truth_record(
            annotation, position, iou_type, image_sizes, category_names, seen_ids
        )
        records.append(record)
        regions.append(region)
        image_column.append(image_id)
        category_column.append(category_id)

    if iou_type == "bbox":
        regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)  # (N, 4)
    else:
        regions = _masks_to_rles(
            list(zip(image_column, regions)), image_sizes, "ground truth annotation"
        )
        for record, rle in zip(records, regions):
            if record["area"] is None:  # no 'area': the mask's area
                record["area"] = float(_mask_areas([rle])[0])
    order, spans = group_into_cells(
        np.asarray(image_column, dtype=np.int64), np.asarray(category_column, dtype=np.int64)
    )
    order_list = order.tolist()
    sorted_records = [records[i] for i in order_list]
    cells = Cells(
        spans=spans,
        records=sorted_records,
        regions=regions[order] if iou_type == "bbox" else [regions[i] for i in order_list],
        is_crowd=[record["iscrowd"] for record in sorted_records],
    )
    scored = {category_id for category_id, record in zip(category_column, records)
              if not record["iscrowd"]}
    return GroundTruthIndex(
        iou_type=iou_type,
        category_names=category_names,
        image_ids=image_ids,
        image_sizes=image_sizes,
        cells=cells,
        scored_category_ids=sorted(scored),
    )


def _ground_truth_record(annotation, position, iou_type, image_sizes, category_names, seen_ids):
    what = f"ground truth annotation #{position}"
    if not isinstance(annotation, dict):
        raise UserError(f"{what} must be an object; received {annotation!r}")
    for field in ("id", "image_id", "category_id"):
        if field not in annotation:
            raise UserError(f"{what} has no {field!r} (keys: {sorted(annotation)})")
    annotation_id = annotation["id"]
    what = f"ground truth annotation id={annotation_id!r}"
    if isinstance(annotation_id, bool) or not isinstance(annotation_id, numbers.Real | str):
        raise UserError(f"{what} must have a number or string id")
    if annotation_id in seen_ids:
        raise UserError(f"{what} appears more than once; annotation ids must be unique")
    seen_ids.add(annotation_id)
    image_id = _as_id(annotation["image_id"], f"{what} image_id")
    if image_id not in image_sizes:
        raise UserError(
            f"{what} has image_id={image_id}, which is not in the ground truth's images"
        )
    category_id = _as_id(annotation["category_id"], f"{what} category_id")
    if category_id not in category_names:
        raise UserError(
            f"{what} has category_id={category_id}, which is not in the ground truth's "
            "categories"
        )
    box = None
    if "bbox" in annotation:
        box = _check_box(annotation["bbox"], f"{what} bbox")
    elif iou_type == "bbox":
        raise UserError(f"{what} has no 'bbox' (keys: {sorted(annotation)})")
    segmentation = None
    if iou_type == "segm":
        segmentation = annotation.get("segmentation")
        if not segmentation:
            raise UserError(f"{what} has no 'segmentation', which segm evaluation needs")
    area = annotation.get("area")
    if area is None:
        # pycocotools needs 'area' (KeyError without it). For bbox the box's area is what a
        # converter that omits it means, and what loadRes gives detections; for segm the
        # mask's area (filled in once the masks are decoded), as COCO's own files hold.
        area = box[2] * box[3] if iou_type == "bbox" else None
    elif not isinstance(area, numbers.Real) or isinstance(area, bool) or not math.isfinite(area):
        raise UserError(f"{what} has area {area!r}; an area must be a finite number")
    # pycocotools' ignore flag is the crowd flag (COCOeval._prepare), whatever 'ignore' says.
    is_crowd = int(bool(annotation.get("iscrowd", 0)))
    # ids are renumbered 1..N: the matcher takes id 0 for "unmatched" (see module docstring).
    record = {"id": position + 1, "area": area, "iscrowd": is_crowd, "ignore": is_crowd}
    region = box if iou_type == "bbox" else segmentation
    return record, region, (image_id, category_id)


def _masks_to_rles(pairs: list[tuple[int, Any]], image_sizes, what: str) -> list[dict]:
    """RLEs of (image_id, segmentation) pairs by the engine's mask API, which converts
    polygons, uncompressed and compressed RLE as pycocotools' ``COCO.annToRLE`` does."""
    from faster_coco_eval.core import mask as mask_api

    requests = []
    for position, (image_id, segmentation) in enumerate(pairs):
        _check_segmentation(segmentation, image_id, image_sizes, f"{what} #{position}")
        requests.append({"image_id": image_id, "segmentation": segmentation})
    try:
        mask_api.calculateRleForAllAnnotations(requests, image_sizes, True, False, 0.02, 1)
    except Exception as error:  # the engine's message names the malformed mask
        raise UserError(f"cannot decode a {what} segmentation: {error}") from None
    return [request["rle"] for request in requests]


def _check_segmentation(segmentation, image_id, image_sizes, what: str) -> None:
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise UserError(
                f"{what} segmentation must be polygons or an RLE with 'size' and 'counts'; "
                f"received keys {sorted(segmentation)}"
            )
        return
    if not isinstance(segmentation, list) or not all(
        isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0
        for polygon in segmentation
    ):
        raise UserError(
            f"{what} segmentation must be a list of polygons [x1, y1, x2, y2, ...] (at least "
            f"3 points each) or an RLE; received {str(segmentation)[:80]}"
        )
    height, width = image_sizes[image_id]
    if height <= 0 or width <= 0:
        # Polygons are rasterized at the image's size; pycocotools would rasterize at 0x0 and
        # score every mask as empty.
        raise UserError(
            f"{what} is a polygon on image {image_id}, whose width x height is "
            f"{width}x{height}; segm evaluation of polygons needs the image size"
        )


def check_iou_type(iou_type: str) -> None:
    if iou_type not in IOU_TYPES:
        raise UserError(f"Received: iou_type={iou_type!r}; iou_type must be one of {IOU_TYPES}")


def _mask_areas(rles: list[dict]) -> np.ndarray:
    from faster_coco_eval.core import mask as mask_api

    return np.asarray(mask_api.area(rles), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Detections


def index_detections(detections: list, ground_truth: GroundTruthIndex) -> Cells:
    """Check detections against the ground truth and group them per (image, category), each
    cell by decreasing score.

    The checks run on whole columns (numpy) so that half a million detections cost about a
    second; when a column does not convert, a per-detection pass names the first bad one.
    Raises UserError for a detection without ``image_id``/``category_id``/``score``, an image
    or category id the ground truth does not have, a score that is NaN or infinite, a box with
    a negative side or a non-finite value, and (``segm``) neither a mask nor a box.
    """
    if not isinstance(detections, list | tuple):
        raise UserError(f"detections must be a list; received a {type(detections).__name__}")
    count = len(detections)
    if count == 0:  # valid: every ground truth is missed (pycocotools' loadRes crashes here)
        return Cells(spans={}, records=[], regions=np.zeros((0, 4)), is_crowd=[])
    columns = _detection_columns(detections, ground_truth.iou_type)
    if columns is None:  # a column did not convert: find and name the first bad detection
        for position, detection in enumerate(detections):
            _check_detection_fields(detection, position, ground_truth.iou_type)
        raise UserError("detections could not be read (mixed types in 'image_id', "
                        "'category_id', 'score' or 'bbox')")
    image_ids, category_ids, scores, boxes = columns
    _check_detection_values(detections, ground_truth, image_ids, category_ids, scores, boxes)

    if ground_truth.iou_type == "bbox":
        areas = boxes[:, 2] * boxes[:, 3]  # loadRes: ann['area'] = bb[2] * bb[3]
        regions = boxes
    else:
        areas, regions = _detection_masks(detections, image_ids, boxes, ground_truth.image_sizes)

    order, spans = group_into_cells(image_ids, category_ids, scores)
    # ids are file positions + 1, as loadRes numbers them (0 would read as "unmatched").
    records = [
        {"id": detection_id, "score": score, "area": area, "iscrowd": 0}
        for detection_id, score, area in zip(
            (order + 1).tolist(), scores[order].tolist(), areas[order].tolist()
        )
    ]
    return Cells(
        spans=spans,
        records=records,
        regions=regions[order] if isinstance(regions, np.ndarray)
        else [regions[i] for i in order.tolist()],
        is_crowd=[0] * count,
    )


def _detection_columns(detections: list, iou_type: str):
    """(image_ids, category_ids, scores, boxes) as arrays, or None when a field is missing or a
    column does not convert to numbers."""
    try:
        image_ids = np.asarray([d["image_id"] for d in detections])
        category_ids = np.asarray([d["category_id"] for d in detections])
        scores = np.asarray([d["score"] for d in detections], dtype=np.float64)
        if iou_type == "bbox":
            boxes = np.asarray([d["bbox"] for d in detections], dtype=np.float64)
        else:
            # a box is optional for segm ([] counts as none, as in loadRes)
            boxes = np.asarray(
                [d["bbox"] if _has_box(d) else [0.0] * 4 for d in detections],
                dtype=np.float64,
            )
    except (KeyError, TypeError, ValueError):
        return None
    if boxes.shape != (len(detections), 4):
        return None
    integral = []
    for ids in (image_ids, category_ids):
        if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
            ids = ids.astype(np.int64)
        if ids.dtype.kind not in "iu":
            return None
        integral.append(ids.astype(np.int64, copy=False))
    return integral[0], integral[1], scores, boxes


def _check_detection_fields(detection: Any, position: int, iou_type: str) -> None:
    what = _describe(detection, position)
    if not isinstance(detection, dict):
        raise UserError(f"{what} must be an object; received {detection!r}")
    for field in ("image_id", "category_id", "score"):
        if field not in detection:
            raise UserError(f"{what} has no {field!r} (keys: {sorted(detection)})")
    _as_id(detection["image_id"], f"{what} image_id")
    _as_id(detection["category_id"], f"{what} category_id")
    score = detection["score"]
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise UserError(f"{what} has score {score!r}; a score must be a finite number")
    if iou_type == "bbox" and "bbox" not in detection:
        raise UserError(f"{what} has no 'bbox' (keys: {sorted(detection)})")
    if iou_type == "bbox" or _has_box(detection):
        _check_box(detection["bbox"], f"{what} bbox")


def _check_detection_values(detections, ground_truth, image_ids, category_ids, scores, boxes):
    """Whole columns checked at once; the first bad detection of the first failing check is
    named."""
    known_images = np.asarray(ground_truth.image_ids, dtype=np.int64)
    known_categories = np.asarray(list(ground_truth.category_names), dtype=np.int64)
    checks = (
        (~np.isin(image_ids, known_images), lambda i: (
            f"detection #{i} has image_id={int(image_ids[i])}, which is not in the ground "
            f"truth's images ({len(known_images)} images, ids {_id_range(known_images)})")),
        (~np.isin(category_ids, known_categories), lambda i: (
            f"{_describe(detections[i], i)} has category_id={int(category_ids[i])}, which is "
            f"not in the ground truth's categories (ids {_id_range(known_categories)})")),
        (~np.isfinite(scores), lambda i: (
            f"{_describe(detections[i], i)} has score {detections[i]['score']!r}; a score "
            "must be a finite number")),
    )
    for bad, message_about in checks:
        if bad.any():
            raise UserError(message_about(_first_bad(bad)))
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if bad.any():
        position = _first_bad(bad)
        what = _describe(detections[position], position)
        _check_box(detections[position]["bbox"], f"{what} bbox")


def _detection_masks(detections, image_ids, boxes, image_sizes):
    """(areas, RLEs) of detections for segm, following loadRes: a detection with a box has the
    box's area (even when it also has a mask) and, without a mask, the box's polygon as mask;
    one with only a mask has the mask's area."""
    pairs, has_box = [], []
    for position, detection in enumerate(detections):
        box = detection["bbox"] if _has_box(detection) else None
        segmentation = detection.get("segmentation")
        if segmentation is None:
            if box is None:
                raise UserError(
                    f"{_describe(detection, position)} has neither 'segmentation' nor 'bbox', "
                    "one of which segm evaluation needs"
                )
            x, y, width, height = box
            segmentation = [[x, y, x, y + height, x + width, y + height, x + width, y]]
        pairs.append((int(image_ids[position]), segmentation))
        has_box.append(box is not None)
    rles = _masks_to_rles(pairs, image_sizes, "detection")
    has_box = np.asarray(has_box)
    areas = boxes[:, 2] * boxes[:, 3]
    if not has_box.all():
        mask_only = np.flatnonzero(~has_box)
        areas[mask_only] = _mask_areas([rles[i] for i in mask_only.tolist()])
    return areas, rles


def _has_box(detection: dict) -> bool:
    """loadRes' test: a 'bbox' that is not empty (arrays from a model included)."""
    box = detection.get("bbox")
    return box is not None and len(box) > 0


def _describe(detection: Any, position: int) -> str:
    if isinstance(detection, dict) and "image_id" in detection:
        return f"detection #{position} (image_id={detection['image_id']!r})"
    return f"detection #{position}"


def _first_bad(flags: np.ndarray) -> int:
    return int(np.flatnonzero(flags)[0])


def _id_range(ids: np.ndarray) -> str:
    if ids.size == 0:
        return "none"
    return f"{int(ids.min())}..{int(ids.max())}"
