"""Reading, checking and normalizing COCO ground truth and detections for the metric engine.

This is the part of COCO evaluation that surrounds the engine (ultrafast-pycocotools): turning a
ground-truth dict and a list of detections into the plain COCO records the engine scores, with
one clear line for each kind of bad input instead of pycocotools' ``AssertionError``,
``KeyError`` or silent drop.

The conventions are pycocotools' (``COCO.loadRes`` and ``COCOeval._prepare``), so that the
numbers agree with it to the last bit:

- a detection's id is its position in the file + 1, its area its box's ``w * h`` when it has a
  box, else its mask's area;
- a detection without a mask, evaluated as ``segm``, is the polygon of its box;
- a ground-truth annotation is ignored exactly when it is a crowd (``iscrowd``), whatever
  ``ignore`` field it may carry;
- records keep their file order: the engine groups them per image in that order and sorts
  detections by score with a stable sort, as pycocotools does.

Where pycocotools crashes or counts wrongly we do better and say so in the docstrings:
ground truth without ``area`` or ``iscrowd`` gets the box's area (the mask's for ``segm``)
and 0; annotation id 0 (which pycocotools' matcher cannot tell from "unmatched") is fine,
because annotations are renumbered 1..N; detections naming an image or category the ground
truth lacks are an error, not an assertion or a silent drop; an empty detection list is valid.

A detection may name its image by ``file_name`` instead of ``image_id`` (what ``edgeline
predict`` writes for images it only knows by path): when its ``image_id`` is absent or not an
image of the ground truth, the ground-truth image whose ``file_name`` is the same (as a whole,
else by base name, when only one image has it) gives the id.

Nothing here modifies the caller's dicts: the engine gets fresh records.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from edgeline.pipeline.errors import UserError

IOU_TYPES = ("bbox", "segm")
MAX_DETECTIONS = 100  # pycocotools' largest maxDets: detections past it never reach the matcher


@dataclasses.dataclass
class GroundTruth:
    """A checked ground truth, and what the engine scores against."""

    iou_type: str
    category_names: dict[int, str]  # every category of the file, sorted by id
    image_ids: list[int]  # every image of the file, sorted
    num_annotations: int
    # The images as the file lists them (checked: objects with unique integer ids). Their sizes
    # and file names are indexed on first use: a results file the engine reads in columns never
    # asks for them, and indexing a large set's images in Python is a noticeable share of it.
    images: list
    # The engine's records: fresh dicts, ids as ints, annotations renumbered 1..N with 'area',
    # 'iscrowd' and 'ignore' filled in; None when the engine holds the annotations in columns
    # (see compact_ground_truth).
    annotations: list[dict] | None
    _image_index: tuple[dict, dict] | None = dataclasses.field(default=None, repr=False)
    _by_file_name: dict | None = dataclasses.field(default=None, repr=False)

    @property
    def image_sizes(self) -> dict[int, tuple[int, int]]:
        """Image id -> (height, width), 0 when unknown."""
        if self._image_index is None:
            self._image_index = _index_images(self.images)
        return self._image_index[0]

    @property
    def file_names(self) -> dict[int, str]:
        """Image id -> file_name, for images that have one."""
        if self._image_index is None:
            self._image_index = _index_images(self.images)
        return self._image_index[1]

    @property
    def dataset(self) -> dict:
        """{"images", "categories", "annotations"} as the engine's handles take them."""
        sizes = self.image_sizes
        return {
            "images": [{"id": image_id, "height": sizes[image_id][0],
                        "width": sizes[image_id][1]} for image_id in self.image_ids],
            "categories": [{"id": category_id, "name": name}
                           for category_id, name in self.category_names.items()],
            "annotations": self.annotations,
        }

    def image_id_of_file(self, file_name: str, what: str) -> int | None:
        """The id of the image named ``file_name`` (whole name first, then base name), None
        when no image has it; UserError when several share its base name and none the whole."""
        if self._by_file_name is None:
            whole: dict[str, list[int]] = {}
            base: dict[str, list[int]] = {}
            for image_id, name in self.file_names.items():
                whole.setdefault(name, []).append(image_id)
                base.setdefault(_base_name(name), []).append(image_id)
            self._by_file_name = {"whole": whole, "base": base}
        matches = self._by_file_name["whole"].get(file_name, [])
        if len(matches) != 1:
            key = _base_name(file_name)
            matches = self._by_file_name["base"].get(key, [])
            if len(matches) > 1:
                raise UserError(
                    f"{what} has file_name {file_name!r}, whose base name {key!r} is the "
                    f"file_name of {len(matches)} ground-truth images (ids "
                    f"{sorted(matches)[:5]}); give its image_id or the file_name as the "
                    "ground truth spells it"
                )
        return matches[0] if matches else None


def _base_name(file_name: str) -> str:
    # Windows separators too: detections may come from another machine than the ground truth.
    return file_name.replace("\\", "/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------
# Files


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON at ``path``; a missing, unreadable or malformed file is a UserError.

    orjson parses a 500,000-detection results file in a third of ``json.load``'s time, and the
    garbage collector is paused meanwhile: the parse allocates millions of containers and none
    of them can be garbage, so each collection it triggers (about 40% of the time) is wasted.
    """
    import orjson

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} file not found: {str(path)!r}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {what} file {str(path)!r}: {error}") from None
    collecting = gc.isenabled()
    gc.disable()
    try:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson is strict JSON; Python's json (which pycocotools reads with) also takes
            # NaN and Infinity, which the checks then name in one line.
            return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{what} file {str(path)!r} is not valid JSON: {error}") from None
    finally:
        if collecting:
            gc.enable()


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


def _index_images(images: list) -> tuple[dict[int, tuple[int, int]], dict[int, str]]:
    sizes: dict[int, tuple[int, int]] = {}
    file_names: dict[int, str] = {}
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
        if isinstance(image.get("file_name"), str):
            file_names[image_id] = image["file_name"]
    return sizes, file_names


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


def prepare_ground_truth(ground_truth: dict, iou_type: str = "bbox") -> GroundTruth:
    """Check a COCO ground-truth dict and build the engine's copy of it.

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
    image_sizes, file_names = _index_images(
        _require_list(ground_truth, "images", "ground truth"))
    category_names = _index_categories(
        _require_list(ground_truth, "categories", "ground truth")
    )
    annotations = _require_list(ground_truth, "annotations", "ground truth")

    records = None
    if iou_type == "bbox":
        records = _box_records_by_columns(annotations, image_sizes, category_names)
    if records is None:  # masks, or a column that does not convert: one by one, naming
        seen_ids: set = set()
        records = [
            _ground_truth_record(annotation, position, iou_type, image_sizes, category_names,
                                 seen_ids)
            for position, annotation in enumerate(annotations)
        ]
    if iou_type == "segm":
        unknown_area = [record for record in records if record["area"] is None]
        if unknown_area:  # no 'area': the mask's, as COCO's own files hold
            areas = mask_areas(unknown_area, image_sizes, "ground truth annotation")
            for record, area in zip(unknown_area, areas.tolist()):
                record["area"] = area
    return GroundTruth(
        iou_type=iou_type,
        category_names=category_names,
        image_ids=sorted(image_sizes),
        num_annotations=len(records),
        images=ground_truth["images"],
        annotations=records,
        _image_index=(image_sizes, file_names),
    )


def compact_ground_truth(metadata: dict, rows: np.ndarray) -> GroundTruth | None:
    """The GroundTruth of a bbox ground-truth file the engine read into columns, when every
    check passes; None sends the file to :func:`prepare_ground_truth`, which names the problem.

    ``metadata`` is the file's object without its annotations; ``rows`` the annotations as
    (N, 7) float64: image_id, x, y, w, h, (score), category_id. The engine's reader has already
    refused what it cannot hold exactly: an annotation without an integer ``id``, ``image_id``
    or ``category_id``, a repeated ``id``, a box that is not 4 finite numbers, an ``area`` that
    is neither a number nor null, an ``iscrowd`` that is not an integer, a boolean or null.
    What it takes scores as the records of :func:`prepare_ground_truth` score (a missing or
    null ``area`` the box's, ``iscrowd`` as 0/1, ``ignore`` as the crowd flag, any annotation
    id, 0 included: tests/common/test_coco_inputs.py compares the two on each of those). Left
    to check here: images and categories (objects with unique integer ids), and that each
    annotation's image and category are declared and its box has no negative side.
    """
    images, categories = metadata.get("images"), metadata.get("categories")
    if type(images) is not list or type(categories) is not list:
        return None
    image_ids = _unique_integer_ids(images)
    category_ids = _unique_integer_ids(categories)
    if image_ids is None or category_ids is None:
        return None
    boxes = rows[:, 1:5]
    # float64 holds every id exactly below 2**53; beyond it the comparisons below could lie
    if (len(rows) and (np.abs(rows[:, [0, 6]]).max() >= 2**53
                       or not ids_all_known(rows[:, 0], image_ids)
                       or not ids_all_known(rows[:, 6], category_ids)
                       or not np.isfinite(boxes).all() or (boxes[:, 2:] < 0).any())):
        return None
    return GroundTruth(
        iou_type="bbox",
        category_names=_index_categories(categories),
        image_ids=np.sort(image_ids).tolist(),
        num_annotations=len(rows),
        images=images,
        annotations=None,
    )


def ids_all_known(column: np.ndarray, known: np.ndarray) -> bool:
    """Whether every value of ``column`` (integral ids, as the engine's float64 columns hold
    them) is one of ``known`` (int64). A lookup table over the ids' range, when it is small
    (COCO's 1..90 categories, consecutive image ids), is a tenth of ``np.isin``'s sort on half
    a million detections."""
    if column.size == 0:
        return True
    if known.size == 0:
        return False
    low, high = int(known.min()), int(known.max())
    if high - low >= 1 << 22:  # sparse ids: the table would be larger than the sort's cost
        return bool(np.isin(column, known).all())
    if column.min() < low or column.max() > high:
        return False
    table = np.zeros(high - low + 1, dtype=bool)
    table[known - low] = True
    return bool(table[(column - low).astype(np.intp)].all())


def _unique_integer_ids(records: list) -> np.ndarray | None:
    """The ``id`` of each record as int64, or None unless every record is an object whose id is
    an integer (not a bool, not a float) and no two share one: a column check, no per-record
    call, so that the 5,000 images of a validation set cost a fraction of a millisecond."""
    if not all(type(record) is dict for record in records):
        return None
    ids = [record.get("id") for record in records]
    if not all(type(value) is int for value in ids):
        return None
    try:
        column = np.asarray(ids, dtype=np.int64)
    except OverflowError:
        return None
    return column if np.unique(column).size == column.size else None


def _box_records_by_columns(annotations: list, image_sizes, category_names) -> list | None:
    """The records of box annotations, checked a column at a time (a tenth of the time of
    :func:`_ground_truth_record` on each, which a large ground truth would feel); None when
    any check fails, for the one-by-one pass to name the annotation. Same records, same rules.
    """
    collecting = gc.isenabled()
    gc.disable()  # only new containers below, none of them garbage (see read_json)
    try:
        annotation_ids = [a["id"] for a in annotations]
        image_ids = _integral(np.asarray([a["image_id"] for a in annotations]))
        category_ids = _integral(np.asarray([a["category_id"] for a in annotations]))
        boxes = np.asarray([a["bbox"] for a in annotations])  # (N, 4) when every box is 4 numbers
        areas = [a.get("area") for a in annotations]
        crowds = [int(bool(a.get("iscrowd", 0))) for a in annotations]
    except (KeyError, TypeError, ValueError):
        return None
    finally:
        if collecting:
            gc.enable()
    count = len(annotations)
    if (not {type(i) for i in annotation_ids} <= {int, str}
            or len(set(annotation_ids)) != count
            or image_ids is None or not np.isin(image_ids, list(image_sizes)).all()
            or category_ids is None or not np.isin(category_ids, list(category_names)).all()
            or boxes.shape != (count, 4) or boxes.dtype.kind not in "iuf"):
        return None
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all() or (boxes[:, 2:] < 0).any():
        return None
    # No 'area': the box's (see _ground_truth_record); an area must be a finite number.
    box_areas = (boxes[:, 2] * boxes[:, 3]).tolist()
    areas = [box_area if area is None else area for area, box_area in zip(areas, box_areas)]
    if not {type(area) for area in areas} <= {int, float} or not np.isfinite(areas).all():
        return None
    collecting = gc.isenabled()
    gc.disable()
    try:
        return [
            {"id": position + 1, "image_id": image_id, "category_id": category_id,
             "iscrowd": crowd, "ignore": crowd, "bbox": box, "area": area}
            for position, (image_id, category_id, crowd, box, area) in enumerate(zip(
                image_ids.tolist(), category_ids.tolist(), crowds, boxes.tolist(), areas))
        ]
    finally:
        if collecting:
            gc.enable()


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
    # ids are renumbered 1..N: the matcher takes id 0 for "unmatched" (see module docstring).
    # pycocotools' ignore flag is the crowd flag (COCOeval._prepare), whatever 'ignore' says.
    is_crowd = int(bool(annotation.get("iscrowd", 0)))
    record = {"id": position + 1, "image_id": image_id, "category_id": category_id,
              "iscrowd": is_crowd, "ignore": is_crowd}
    box = None
    if "bbox" in annotation:
        box = _check_box(annotation["bbox"], f"{what} bbox")
        record["bbox"] = [float(v) for v in box]
    elif iou_type == "bbox":
        raise UserError(f"{what} has no 'bbox' (keys: {sorted(annotation)})")
    if iou_type == "segm":
        segmentation = annotation.get("segmentation")
        if not segmentation:
            raise UserError(f"{what} has no 'segmentation', which segm evaluation needs")
        _check_segmentation(segmentation, image_id, image_sizes, what)
        record["segmentation"] = segmentation
    area = annotation.get("area")
    if area is None:
        # pycocotools needs 'area' (KeyError without it). For bbox the box's area is what a
        # converter that omits it means, and what loadRes gives detections; for segm the
        # mask's area (filled in by the caller, which measures all such masks at once).
        area = box[2] * box[3] if iou_type == "bbox" else None
    elif not isinstance(area, numbers.Real) or isinstance(area, bool) or not math.isfinite(area):
        raise UserError(f"{what} has area {area!r}; an area must be a finite number")
    record["area"] = area
    return record


def mask_areas(records: list[dict], image_sizes, what: str) -> np.ndarray:
    """Areas of the records' ``segmentation`` masks, each rasterized as pycocotools'
    ``COCO.annToRLE`` does (polygons merged at the image's size, uncompressed RLE compressed).
    """
    from ultrafast_pycocotools import mask as mask_api

    rles = []
    for record in records:
        segmentation = record["segmentation"]
        height, width = image_sizes[record["image_id"]]
        try:
            if isinstance(segmentation, list):  # polygons: their union
                rles.append(mask_api.merge(mask_api.frPyObjects(segmentation, height, width)))
            elif isinstance(segmentation["counts"], list):  # uncompressed RLE
                rles.append(mask_api.frPyObjects(segmentation, *segmentation["size"]))
            else:
                rles.append(segmentation)
        except Exception as error:  # the engine's message names what is malformed
            raise UserError(
                f"cannot decode the segmentation of {what} on image {record['image_id']}: "
                f"{error}"
            ) from None
    return np.asarray(mask_api.area(rles), dtype=np.float64).reshape(-1)


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


# --------------------------------------------------------------------------------------------
# Detections


def prepare_detections(detections: list, ground_truth: GroundTruth) -> list[dict]:
    """Check detections against the ground truth and return the engine's records, in file
    order: ``id`` (position + 1), ``image_id``, ``category_id``, ``score``, ``area``,
    ``iscrowd`` 0, ``bbox`` when given and, for ``segm``, ``segmentation``.

    The checks run on whole columns (numpy) so that half a million detections cost about a
    second; when a column does not convert, a per-detection pass names the first bad one.
    Raises UserError for a detection without ``image_id`` (or a ``file_name`` that names an
    image) or ``category_id``/``score``, an image or category id the ground truth does not
    have, a score that is NaN or infinite, a box with a negative side or a non-finite value,
    and (``segm``) neither a mask nor a box.
    """
    if not isinstance(detections, list | tuple):
        raise UserError(f"detections must be a list; received a {type(detections).__name__}")
    if not detections:  # valid: every ground truth is missed (pycocotools' loadRes crashes here)
        return []
    iou_type = ground_truth.iou_type
    columns = _detection_columns(detections, ground_truth)
    if columns is None:  # a column did not convert: find and name the first bad detection
        for position, detection in enumerate(detections):
            _check_detection_fields(detection, position, ground_truth)
        raise UserError("detections could not be read (mixed types in 'image_id', "
                        "'category_id', 'score' or 'bbox')")
    image_ids, category_ids, scores, boxes, has_box = columns
    _check_detection_values(detections, ground_truth, image_ids, category_ids, scores, boxes)

    areas = boxes[:, 2] * boxes[:, 3]  # loadRes: ann['area'] = bb[2] * bb[3]
    collecting = gc.isenabled()
    gc.disable()  # half a million new dicts, none of them garbage (see read_json)
    try:
        records = [
            {"id": position + 1, "image_id": image_id, "category_id": category_id,
             "score": score, "area": area, "iscrowd": 0, "bbox": box}
            for position, (image_id, category_id, score, area, box) in enumerate(zip(
                image_ids.tolist(), category_ids.tolist(), scores.tolist(), areas.tolist(),
                boxes.tolist()))
        ]
    finally:
        if collecting:
            gc.enable()
    if iou_type == "segm":
        _add_masks(records, detections, ground_truth.image_sizes, has_box)
    return records


def _detection_columns(detections: list, ground_truth: GroundTruth):
    """(image_ids, category_ids, scores, boxes) as arrays and which detections have a box (a
    list; None for ``bbox``, where each must), or None when a field is missing or a column
    does not convert to numbers. Image ids that are absent or unknown are looked up by the
    detection's ``file_name``."""
    try:
        image_ids = _integral(np.asarray([d.get("image_id") for d in detections]))
        if image_ids is None or not np.isin(image_ids, ground_truth.image_ids).all():
            image_ids = _integral(np.asarray(_image_ids_by_file_name(detections, ground_truth)))
            if image_ids is None:
                return None
        category_ids = _integral(np.asarray([d["category_id"] for d in detections]))
        scores = np.asarray([d["score"] for d in detections], dtype=np.float64)
        has_box = None
        if ground_truth.iou_type == "bbox":
            boxes = np.asarray([d["bbox"] for d in detections], dtype=np.float64)
        else:
            # a box is optional for segm ([] counts as none, as in loadRes)
            has_box = [_has_box(d) for d in detections]
            boxes = np.asarray(
                [d["bbox"] if box else [0.0] * 4 for d, box in zip(detections, has_box)],
                dtype=np.float64,
            )
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if category_ids is None or boxes.shape != (len(detections), 4):
        return None
    return image_ids, category_ids, scores, boxes, has_box


def _integral(ids: np.ndarray) -> np.ndarray | None:
    """``ids`` as int64 when every one is an integer (or an integral float), else None."""
    if ids.dtype.kind == "f" and np.all(np.isfinite(ids)) and np.all(ids == np.round(ids)):
        ids = ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        return None
    return ids.astype(np.int64, copy=False)


def _image_ids_by_file_name(detections: list, ground_truth: GroundTruth) -> list:
    """Each detection's image id, taken from its ``file_name`` where its ``image_id`` is absent
    or not an image of the ground truth (left as it is when no image has that file name, for
    the checks to name)."""
    known = ground_truth.image_sizes
    resolved = []
    for position, detection in enumerate(detections):
        image_id = detection.get("image_id")
        if _is_known_id(image_id, known):
            resolved.append(image_id)
            continue
        file_name = detection.get("file_name")
        if isinstance(file_name, str):
            found = ground_truth.image_id_of_file(file_name, _describe(detection, position))
            if found is not None:
                image_id = found
        resolved.append(image_id)
    return resolved


def _is_known_id(value: Any, known: dict) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and float(value).is_integer() and int(value) in known)


def _check_detection_fields(detection: Any, position: int, ground_truth: GroundTruth) -> None:
    what = _describe(detection, position)
    if not isinstance(detection, dict):
        raise UserError(f"{what} must be an object; received {detection!r}")
    if "image_id" not in detection and "file_name" not in detection:
        raise UserError(f"{what} has no 'image_id' (keys: {sorted(detection)})")
    for field in ("category_id", "score"):
        if field not in detection:
            raise UserError(f"{what} has no {field!r} (keys: {sorted(detection)})")
    if "image_id" in detection:
        _as_id(detection["image_id"], f"{what} image_id")
    else:
        _image_of_file(detection, position, ground_truth)
    _as_id(detection["category_id"], f"{what} category_id")
    score = detection["score"]
    if isinstance(score, bool) or not isinstance(score, numbers.Real):
        raise UserError(f"{what} has score {score!r}; a score must be a finite number")
    if ground_truth.iou_type == "bbox" and "bbox" not in detection:
        raise UserError(f"{what} has no 'bbox' (keys: {sorted(detection)})")
    if ground_truth.iou_type == "bbox" or _has_box(detection):
        _check_box(detection["bbox"], f"{what} bbox")


def _image_of_file(detection: dict, position: int, ground_truth: GroundTruth) -> int:
    file_name = detection["file_name"]
    what = _describe(detection, position)
    if not isinstance(file_name, str):
        raise UserError(f"{what} has file_name {file_name!r}; a file name must be a string")
    image_id = ground_truth.image_id_of_file(file_name, what)
    if image_id is None:
        raise UserError(
            f"{what} has no image_id, and its file_name {file_name!r} is not the file_name of "
            f"any ground-truth image ({len(ground_truth.file_names)} have one)"
        )
    return image_id


def _check_detection_values(detections, ground_truth, image_ids, category_ids, scores, boxes):
    """Whole columns checked at once; the first bad detection of the first failing check is
    named."""
    known_images = np.asarray(ground_truth.image_ids, dtype=np.int64)
    known_categories = np.asarray(list(ground_truth.category_names), dtype=np.int64)

    def unknown_image(i):
        message = (f"detection #{i} has image_id={int(image_ids[i])}, which is not in the "
                   f"ground truth's images ({len(known_images)} images, ids "
                   f"{_id_range(known_images)})")
        file_name = detections[i].get("file_name")
        if file_name is not None:
            message += f", nor is its file_name {file_name!r} one of theirs"
        return message

    checks = (
        (~np.isin(image_ids, known_images), unknown_image),
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


def _add_masks(records: list[dict], detections: list, image_sizes, has_box: list) -> None:
    """``segmentation`` (and, for mask-only detections, ``area``) of each record, following
    loadRes: a detection with a box has the box's area (even when it also has a mask) and,
    without a mask, the box's polygon as mask; one with only a mask has the mask's area."""
    mask_only = []
    for position, (record, detection, boxed) in enumerate(zip(records, detections, has_box)):
        if not boxed:
            del record["bbox"]
        segmentation = detection.get("segmentation")
        if segmentation is None:
            if not boxed:
                raise UserError(
                    f"{_describe(detection, position)} has neither 'segmentation' nor 'bbox', "
                    "one of which segm evaluation needs"
                )
            x, y, width, height = record["bbox"]
            segmentation = [[x, y, x, y + height, x + width, y + height, x + width, y]]
        try:
            _check_segmentation(segmentation, record["image_id"], image_sizes, "")
        except UserError:  # again, to name the detection (50,000 names cost more than checks)
            _check_segmentation(segmentation, record["image_id"], image_sizes,
                                _describe(detection, position))
        record["segmentation"] = segmentation
        if not boxed:
            mask_only.append(record)
    if mask_only:
        for record, area in zip(mask_only, mask_areas(mask_only, image_sizes,
                                                      "a detection").tolist()):
            record["area"] = area


def _has_box(detection: dict) -> bool:
    """loadRes' test: a 'bbox' that is not empty (arrays from a model included)."""
    box = detection.get("bbox")
    return box is not None and len(box) > 0


def _describe(detection: Any, position: int) -> str:
    if isinstance(detection, dict) and "image_id" in detection:
        return f"detection #{position} (image_id={detection['image_id']!r})"
    if isinstance(detection, dict) and "file_name" in detection:
        return f"detection #{position} (file_name={detection['file_name']!r})"
    return f"detection #{position}"


def _first_bad(flags: np.ndarray) -> int:
    return int(np.flatnonzero(flags)[0])


def _id_range(ids: np.ndarray) -> str:
    if ids.size == 0:
        return "none"
    return f"{int(ids.min())}..{int(ids.max())}"
