"""COCO detection metrics: the numbers pycocotools' COCOeval gives, from faster-coco-eval.

The metric is the COCO detection challenge's (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014; https://cocodataset.org/#detection-eval): greedy score-ordered matching
at IoU thresholds .50:.05:.95, precision interpolated at 101 recall points, averaged over
categories, reported for all / small / medium / large objects and 1 / 10 / 100 detections per
image. The matching and the interpolation are faster-coco-eval's C++ engine
(``COCOevalEvaluateAccumulate``, a port of pycocotools' ``evaluateImg`` + ``accumulate``) and
its summary is faster-coco-eval's ``summarize``; nothing here re-implements them.

This is the one place edgeline scores COCO detections: the evaluate stage, ``edgeline
coco-eval``, the train stage's box mAP and the export stage's parity gate all call
:func:`evaluate_detections` (or :func:`evaluate_files`), so the engine behind it can change in
one place. Detector outputs become COCO results in :mod:`.coco_detections`.

What this module adds is everything around the engine: reading and checking the inputs
(:mod:`.coco_inputs`), grouping them per (image, category) in one vectorized pass instead of
pycocotools' ``COCO`` index and ``loadRes``, computing only the IoU matrices that can match, and
handing the engine only the categories and images that can change a number (a category
without a non-crowd ground truth is -1 everywhere in pycocotools, an image without annotations
adds nothing), then putting the -1 rows back so that every array has pycocotools' shape.

    metrics = evaluate_detections(ground_truth, detections, iou_type="bbox")
    print(metrics.format_summary())          # pycocotools' 12 lines, character for character
    metrics.summary["AP"], metrics.per_category_ap[18]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeline.common.coco_inputs import (
    MAX_DETECTIONS,
    Cells,
    GroundTruthIndex,
    check_iou_type,
    index_detections,
    index_ground_truth,
    load_detections,
    load_ground_truth,
)

# The 12 numbers of COCOeval.stats, in order, with Detectron2's names.
SUMMARY_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
# (AP or AR, IoU threshold or None for .50:.95, area range, max detections) of each line.
_SUMMARY_LINES = (
    (1, None, "all", 100), (1, 0.5, "all", 100), (1, 0.75, "all", 100),
    (1, None, "small", 100), (1, None, "medium", 100), (1, None, "large", 100),
    (0, None, "all", 1), (0, None, "all", 10), (0, None, "all", 100),
    (0, None, "small", 100), (0, None, "medium", 100), (0, None, "large", 100),
)  # fmt: skip
AREA_RANGES = ("all", "small", "medium", "large")
MAX_DETECTIONS_SETTINGS = (1, 10, MAX_DETECTIONS)


@dataclasses.dataclass(frozen=True, eq=False)
class CocoMetrics:
    """The result of one COCO evaluation.

    Arrays follow pycocotools' ``COCOeval.eval``: ``precision`` and ``scores`` are
    (T=10 IoU thresholds, R=101 recall thresholds, K categories, A=4 area ranges, M=3 max
    detections), ``recall`` is (T, K, A, M); -1 marks a setting without ground truth. The K axis
    is every category of the ground truth, sorted by id (``category_ids``).
    """

    iou_type: str
    summary: dict[str, float]  # SUMMARY_NAMES -> COCOeval.stats
    per_category_ap: dict[int, float | None]  # AP@[.50:.95], all areas, 100 dets; None: no GT
    category_names: dict[int, str]
    category_ids: tuple[int, ...]
    precision: np.ndarray  # (T, R, K, A, M)
    recall: np.ndarray  # (T, K, A, M)
    scores: np.ndarray  # (T, R, K, A, M): the score at which each precision point is reached
    iou_thresholds: np.ndarray  # (T,) 0.50, 0.55, ..., 0.95
    recall_thresholds: np.ndarray  # (R,) 0.00, 0.01, ..., 1.00
    num_images: int
    num_ground_truth: int
    num_detections: int

    def format_summary(self) -> str:
        """pycocotools' ``COCOeval.summarize()`` output: 12 lines, same format, same rounding."""
        line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
        lines = []
        for (is_ap, iou, area, max_dets), name in zip(_SUMMARY_LINES, SUMMARY_NAMES):
            title = "Average Precision" if is_ap else "Average Recall"
            kind = "(AP)" if is_ap else "(AR)"
            iou_text = (
                f"{self.iou_thresholds[0]:0.2f}:{self.iou_thresholds[-1]:0.2f}"
                if iou is None
                else f"{iou:0.2f}"
            )
            lines.append(line.format(title, kind, iou_text, area, max_dets, self.summary[name]))
        return "\n".join(lines)

    def precision_recall_curve(
        self,
        category_id: int | None = None,
        iou_threshold: float | None = 0.5,
        area: str = "all",
        max_detections: int = MAX_DETECTIONS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(recall_thresholds, interpolated precision), both (101,), of one category or, with
        ``category_id=None``, averaged over the categories that have ground truth; with
        ``iou_threshold=None`` averaged over IoU .50:.95. NaN where there is no ground truth."""
        precision = self._select(category_id, iou_threshold, area, max_detections)  # (t, R, k)
        valid = precision > -1
        with np.errstate(invalid="ignore"):
            curve = np.where(valid, precision, 0.0).sum(axis=(0, 2)) / valid.sum(axis=(0, 2))
        return self.recall_thresholds.copy(), curve  # (R,), (R,)

    def _select(self, category_id, iou_threshold, area, max_detections) -> np.ndarray:
        if area not in AREA_RANGES:
            raise ValueError(f"Received: area={area!r}; area must be one of {AREA_RANGES}")
        if max_detections not in MAX_DETECTIONS_SETTINGS:
            raise ValueError(
                f"Received: max_detections={max_detections}; must be one of "
                f"{MAX_DETECTIONS_SETTINGS}"
            )
        precision = self.precision[:, :, :, AREA_RANGES.index(area),
                                   MAX_DETECTIONS_SETTINGS.index(max_detections)]  # (T, R, K)
        if iou_threshold is not None:
            matches = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold))
            if matches.size == 0:
                raise ValueError(
                    f"Received: iou_threshold={iou_threshold}; must be one of "
                    f"{[round(float(t), 2) for t in self.iou_thresholds]} or None"
                )
            precision = precision[matches]  # (1, R, K)
        if category_id is not None:
            if category_id not in self.category_names:
                raise ValueError(
                    f"Received: category_id={category_id}; not a category of the ground truth"
                )
            k = self.category_ids.index(category_id)
            precision = precision[:, :, k : k + 1]  # (t, R, 1)
        return precision

    def to_dict(self) -> dict:
        """JSON-able: the 12 numbers by name and the per-category AP (null: no ground truth)."""
        return {
            "iou_type": self.iou_type,
            "summary": dict(self.summary),
            "per_category_ap": [
                {"category_id": category_id, "name": self.category_names[category_id],
                 "ap": self.per_category_ap[category_id]}
                for category_id in self.category_ids
            ],
            "num_images": self.num_images,
            "num_ground_truth": self.num_ground_truth,
            "num_detections": self.num_detections,
        }


def evaluate_detections(
    ground_truth: dict, detections: list[dict], iou_type: str = "bbox"
) -> CocoMetrics:
    """COCO metrics of ``detections`` against ``ground_truth``, equal to pycocotools'.

    Args:
      ground_truth: a COCO dict (``images``, ``annotations``, ``categories``), e.g. an
        Examples artifact's ``<split>_annotations.json``. Not modified.
      detections: COCO results, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
        (``segmentation`` for ``segm``); an empty list is valid (every object missed). Not
        modified.
      iou_type: ``"bbox"`` or ``"segm"``.

    Raises:
      UserError: a malformed input, naming the first problem (see :mod:`.coco_inputs`).
    """
    check_iou_type(iou_type)
    ground_truth_index = index_ground_truth(ground_truth, iou_type)
    detection_index = index_detections(detections, ground_truth_index)
    return _evaluate_indexed(ground_truth_index, detection_index)


def evaluate_files(
    ground_truth_path: str | Path, detections_path: str | Path, iou_type: str = "bbox"
) -> CocoMetrics:
    """:func:`evaluate_detections` of a COCO ground-truth file and a results file."""
    check_iou_type(iou_type)
    return evaluate_detections(
        load_ground_truth(ground_truth_path), load_detections(detections_path), iou_type
    )


def _evaluate_indexed(ground_truth: GroundTruthIndex, detections: Cells) -> CocoMetrics:
    from faster_coco_eval import COCOeval_faster

    # A shell evaluator: its Params are pycocotools' defaults for the IoU type, and its
    # summarize() turns the engine's arrays into COCOeval.stats. Its prints go nowhere.
    evaluator = COCOeval_faster(iouType=ground_truth.iou_type, print_function=_discard)
    params = evaluator.params
    scored = ground_truth.scored_category_ids
    num_t, num_r = len(params.iouThrs), len(params.recThrs)
    num_a, num_m = len(params.areaRng), len(params.maxDets)
    if scored:
        engine_eval = _run_engine(ground_truth, detections, params)
    else:  # no non-crowd ground truth: pycocotools' arrays are all -1
        params.catIds, params.imgIds = [], []
        engine_eval = {
            "precision": -np.ones((num_t, num_r, 0, num_a, num_m)),
            "recall": -np.ones((num_t, 0, num_a, num_m)),
            "scores": -np.ones((num_t, num_r, 0, num_a, num_m)),
        }
    evaluator.eval = engine_eval
    evaluator.summarize()
    summary = {name: float(value) for name, value in zip(SUMMARY_NAMES, evaluator.stats[:12])}

    # Back to every ground-truth category: the ones the engine did not see are -1, as in
    # pycocotools, where they have no ground truth to recall.
    category_ids = tuple(ground_truth.category_names)
    columns = [category_ids.index(category_id) for category_id in scored]
    precision = -np.ones((num_t, num_r, len(category_ids), num_a, num_m))
    scores = -np.ones_like(precision)
    recall = -np.ones((num_t, len(category_ids), num_a, num_m))
    precision[:, :, columns] = engine_eval["precision"]
    scores[:, :, columns] = engine_eval["scores"]
    recall[:, columns] = engine_eval["recall"]
    return CocoMetrics(
        iou_type=ground_truth.iou_type,
        summary=summary,
        per_category_ap=_per_category_ap(precision, category_ids),
        category_names=dict(ground_truth.category_names),
        category_ids=category_ids,
        precision=precision,
        recall=recall,
        scores=scores,
        iou_thresholds=np.asarray(params.iouThrs, dtype=np.float64).copy(),
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64).copy(),
        num_images=len(ground_truth.image_ids),
        num_ground_truth=len(ground_truth.cells),
        num_detections=len(detections),
    )


def _run_engine(ground_truth: GroundTruthIndex, detections: Cells, params) -> dict:
    """faster-coco-eval's C++ evaluate + accumulate on the cells that can change a number."""
    import faster_coco_eval.faster_eval_api_cpp as engine
    from faster_coco_eval.core import mask as mask_api

    category_ids = ground_truth.scored_category_ids
    scored = set(category_ids)
    truth = ground_truth.cells
    truth_spans = {key: span for key, span in truth.spans.items() if key[1] in scored}
    detection_spans = {key: span for key, span in detections.spans.items() if key[1] in scored}
    image_ids = sorted({key[0] for key in truth_spans} | {key[0] for key in detection_spans})
    image_rows = {image_id: row for row, image_id in enumerate(image_ids)}
    category_columns = {category_id: column for column, category_id in enumerate(category_ids)}

    # The engine takes an (images x categories) grid of IoU matrices. Only cells with both
    # sides have one: rows are the cell's detections by decreasing score, cut at the 100 the
    # matcher can see, columns its ground truth in file order, as in COCOeval.computeIoU.
    no_overlap: list = []
    iou_grid = [[no_overlap] * len(category_ids) for _ in image_ids]  # (I, K)
    for key, (truth_start, truth_end) in truth_spans.items():
        span = detection_spans.get(key)
        if span is None:
            continue
        detection_end = min(span[1], span[0] + MAX_DETECTIONS)
        iou_grid[image_rows[key[0]]][category_columns[key[1]]] = mask_api.iou(
            detections.regions[span[0] : detection_end],
            truth.regions[truth_start:truth_end],
            truth.is_crowd[truth_start:truth_end],
        )  # (D, G)

    params.catIds, params.imgIds = list(category_ids), image_ids
    return engine.COCOevalEvaluateAccumulate(
        params,
        iou_grid,
        _engine_dataset(truth, truth_spans),
        _engine_dataset(detections, detection_spans),
        image_ids,
        list(category_ids),
        True,  # useCats
    )


def _engine_dataset(cells: Cells, spans: dict):
    """The engine's per-(image, category) dataset, filled in one call rather than one per
    annotation (its pickle state is ``(size, [(image_id, category_id, [records])])``)."""
    import faster_coco_eval.faster_eval_api_cpp as engine

    records = cells.records
    dataset = engine.Dataset()
    dataset.load_tuple(
        (len(spans), [(float(image_id), float(category_id), records[start:end])
                      for (image_id, category_id), (start, end) in spans.items()])
    )
    return dataset


def _per_category_ap(precision: np.ndarray, category_ids: tuple[int, ...]) -> dict:
    """AP@[.50:.95] of each category (all areas, 100 detections): the mean of its precision
    over IoU and recall thresholds, as Detectron2's COCOEvaluator reports it."""
    result = {}
    for k, category_id in enumerate(category_ids):
        values = precision[:, :, k, 0, -1]  # (T, R)
        values = values[values > -1]
        result[category_id] = float(values.mean()) if values.size else None
    return result


def _discard(*args, **kwargs) -> None:
    """print_function for the engine: the CLI prints its own summary."""

