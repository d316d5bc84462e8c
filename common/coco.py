"""COCO detection metrics: the numbers pycocotools' COCOeval gives, bit for bit, from
ultrafast-pycocotools.

The metric is the COCO detection challenge's (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014; https://cocodataset.org/#detection-eval): greedy score-ordered matching
at IoU thresholds .50:.05:.95, precision interpolated at 101 recall points, averaged over
categories, reported for all / small / medium / large objects and 1 / 10 / 100 detections per
image. The matching, the interpolation and the summary are ultrafast-pycocotools' (a Rust port
of pycocotools' ``evaluateImg`` + ``accumulate`` whose contract is pycocotools' bits, checked
here on the shared real sets); nothing here re-implements them.

Why that engine (measured whole processes on 5,000 images x 100 detections, see
benchmarks/bench_evaluate.py): it is about 70x pycocotools at a twelfth of its memory and agrees
with it bit for bit, precision and recall arrays included; faster-coco-eval is 5x and differs
by an ulp in places, hotcoco is as fast but off by an ulp in some summary numbers and refuses
metadata that real files carry. The engine is used through its pycocotools-compatible API
(``COCO``, ``loadRes``, ``COCOeval``), so swapping it is a change to this module alone.

This is the one place edgeline scores COCO detections: the evaluate stage, ``edgeline
coco-eval``, the train stage's box mAP and the export stage's parity gate all call
:func:`evaluate_detections` (or :func:`evaluate_files`). Detector outputs become COCO results
in :mod:`.coco_detections`; the inputs are checked and normalized in :mod:`.coco_inputs`.

For ``bbox``, :func:`evaluate_files` reads both files as the engine's own ``COCO(path)`` and
``loadRes(path)`` do: straight into columns (no Python object per annotation or detection, a
tenth of the time of any JSON parser), and the checks run on those columns. Whatever that path
cannot vouch for (an annotation or detection naming an unknown image or category, a negative
size, a missing or null score, which the reader takes for 0, a value the reader refuses, or a
file_name to resolve) goes to the exact path, which names the first bad record or scores it.

    metrics = evaluate_detections(ground_truth, detections, iou_type="bbox")
    print(metrics.format_summary())          # pycocotools' 12 lines, character for character
    metrics.summary["AP"], metrics.per_category_ap[18]
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import numpy as np

from edgeline.common.coco_inputs import (
    MAX_DETECTIONS,
    GroundTruth,
    check_iou_type,
    compact_ground_truth,
    ids_all_known,
    load_detections,
    load_ground_truth,
    prepare_detections,
    prepare_ground_truth,
)
from edgeline.pipeline.errors import UserError

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
        (``segmentation`` for ``segm``; ``file_name`` may name the image instead of
        ``image_id``, see :mod:`.coco_inputs`); an empty list is valid (every object missed).
        Not modified.
      iou_type: ``"bbox"`` or ``"segm"``.

    Raises:
      UserError: a malformed input, naming the first problem (see :mod:`.coco_inputs`).
    """
    check_iou_type(iou_type)
    truth = prepare_ground_truth(ground_truth, iou_type)
    records = prepare_detections(detections, truth)
    ground_truth_api = _ground_truth_api(truth)
    return _evaluate(truth, ground_truth_api, _results_api(ground_truth_api, truth, records),
                     len(records))


def evaluate_files(
    ground_truth_path: str | Path, detections_path: str | Path, iou_type: str = "bbox",
    *, standalone: bool = False,
) -> CocoMetrics:
    """:func:`evaluate_detections` of a COCO ground-truth file and a results file: the same
    checks and the same numbers, with the engine reading ``bbox`` files itself.

    ``standalone``: the caller is a process of its own that ends soon after this call
    (``edgeline coco-eval``), so the engine's handles are not freed on return (6-7 ms for
    500,000 detections, mostly its copy of the file) but left to the process's exit.
    """
    check_iou_type(iou_type)
    truth, ground_truth_api = _read_ground_truth_file(ground_truth_path, iou_type)
    fast = _read_results_file(ground_truth_api, truth, detections_path)
    if fast is not None:
        results, count = fast
    else:
        records = prepare_detections(load_detections(detections_path), truth)
        results, count = _results_api(ground_truth_api, truth, records), len(records)
    if standalone:
        _LEFT_FOR_EXIT.extend((ground_truth_api, results))
    return _evaluate(truth, ground_truth_api, results, count)


# The engine's handles of standalone evaluations (see evaluate_files), freed with the process.
_LEFT_FOR_EXIT: list = []


def _read_ground_truth_file(path: str | Path, iou_type: str):
    """(GroundTruth, engine handle) of a ground-truth file, each file read once.

    For ``bbox`` the engine reads the file into columns, as its own ``COCO(path)`` does (a
    third of the time of any JSON parser building dicts), and the checks run on those columns
    (:func:`.coco_inputs.compact_ground_truth`). A file its column reader refuses is left as
    the dicts the engine's fallback reader built; a file that fails a check is turned into
    dicts by the engine; either way :func:`.coco_inputs.prepare_ground_truth` then checks it
    record by record, naming the first problem, or normalizes what it tolerates (float ids).
    """
    if iou_type == "bbox":
        from ultrafast_pycocotools import COCO

        try:
            api = COCO(str(path), verbose=False)
        except Exception:  # noqa: BLE001  (missing, not JSON, not an object: read_json says so)
            api = None
        if api is not None:
            compact = api._compact
            if compact is not None:
                truth = compact_ground_truth(api._dataset, compact.array_rows())
                if truth is not None:
                    return truth, api
            dataset = api.dataset  # the engine's dicts (from its columns, or its dict reader)
            if isinstance(dataset, dict):
                truth = prepare_ground_truth(dataset, iou_type)
                return truth, _ground_truth_api(truth)
    truth = prepare_ground_truth(load_ground_truth(path), iou_type)
    return truth, _ground_truth_api(truth)


def _ground_truth_api(truth: GroundTruth):
    """The engine's ground-truth handle on our checked copy (which it borrows, not copies)."""
    from ultrafast_pycocotools import COCO

    return COCO(truth.dataset, verbose=False)


def _results_api(ground_truth_api, truth: GroundTruth, records: list[dict]):
    """The engine's results handle on records that already carry what ``loadRes`` would add
    (id, area, iscrowd, the box's polygon for segm), built as pycocotools builds one."""
    from ultrafast_pycocotools import COCO

    dataset = truth.dataset
    results = COCO(verbose=False)
    results.dataset = {"images": dataset["images"], "categories": dataset["categories"],
                       "annotations": records}
    collecting = gc.isenabled()
    gc.disable()  # the index holds every record: nothing to collect while it is built
    try:
        results.createIndex()
    finally:
        if collecting:
            gc.enable()
    return results


def _read_results_file(ground_truth_api, truth: GroundTruth, path: str | Path):
    """(results handle, count) of a ``bbox`` results file read by the engine's own column
    reader, when every check passes on those columns; None sends the file to the exact path.

    The reader takes only a JSON list of objects with integer ids, a 4-number box and finite
    numbers (and no key twice), and ``loadRes`` asserts every image id is the ground truth's:
    anything else raises here, and the exact path gives the error its one line (or resolves a
    ``file_name``). The reader reads a missing or null score as 0, so a file with a 0 score
    whose detections cannot each be shown to carry a number there goes to the exact path too.
    """
    if truth.iou_type != "bbox":
        return None  # masks are checked one by one on the exact path
    try:
        results = ground_truth_api.loadRes(str(path))
    except Exception:  # noqa: BLE001  (any refusal: the exact path says what is wrong)
        return None
    compact = getattr(results, "_compact", None)
    if compact is None:  # the engine fell back to its dict reader: ours checks more
        return None
    rows = compact.array_rows()  # (N, 7): image_id, x, y, w, h, score, category_id
    count = len(rows)
    known = np.fromiter(truth.category_names, np.int64, len(truth.category_names))
    zeros = _zero_score_rows(rows, known)
    del rows  # 28 MB for half a million detections, not needed past here
    if zeros is None or (zeros.size and not _zero_scores_written(path, zeros, count)):
        return None
    return results, count


def _zero_score_rows(rows: np.ndarray, known_categories: np.ndarray) -> np.ndarray | None:
    """Positions of the rows whose score is 0, or None when a row has a negative width or
    height or a category the ground truth lacks.

    A block of rows at a time: each check's temporaries then stay a few hundred kB, in cache
    and reused, where whole-column ones (4 MB each for half a million detections) would be
    fresh pages to fault in, which a new process pays for more than for the arithmetic.
    """
    zeros = []
    for start in range(0, len(rows), 1 << 15):
        block = rows[start:start + (1 << 15)]
        if block[:, 3:5].min() < 0 or not ids_all_known(block[:, 6], known_categories):
            return None
        zeros.append(np.flatnonzero(block[:, 5] == 0) + start)
    return np.concatenate(zeros) if zeros else np.zeros(0, np.int64)


def _zero_scores_written(path: str | Path, zeros: np.ndarray, count: int) -> bool:
    """Whether each detection at a position in ``zeros`` wrote a number as its score.

    Scores rounded to 0 are common (a detector's 0.0004 written with 3 decimals), and the
    engine's reader reads a missing or null score as 0 too. Rather than scan the text for
    ``null`` and count ``"score"`` keys (a tenth of the reader's time), this finds the opening
    brace of each zero-score detection and of the one after it (:func:`_nth_braces`) and
    parses only the text between them. When the file has more braces than detections (nested
    objects, or braces inside strings), the i-th brace need not open the i-th detection:
    False, and the exact path decides.
    """
    import mmap

    import orjson

    wanted = np.union1d(zeros, zeros + 1)  # each one's brace and the next detection's
    wanted = wanted[wanted < count]
    try:
        with open(path, "rb") as file, \
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as text:
            offsets, braces = _nth_braces(text, wanted)
            if braces != count:
                return False
            ends = np.append(offsets, len(text))
            starts_at = np.searchsorted(wanted, zeros)
            for start, end in zip(offsets[starts_at].tolist(),
                                  ends[starts_at + 1].tolist()):
                detection = text[start:end]
                try:
                    detection = orjson.loads(detection[:detection.rfind(b"}") + 1])
                except orjson.JSONDecodeError:
                    return False
                if type(detection) is not dict or \
                        type(detection.get("score")) not in (int, float):
                    return False
    except (OSError, ValueError):  # gone or emptied since the engine read it
        return False
    return True


# Horizontal sums of 64-bit words of 0/1 bytes: 8 byte lanes paired into 4 lanes of 16 bits,
# then summed into the top 16 bits by one multiply ("SIMD within a register").
_LOW_BYTES = np.uint64(0x00FF00FF00FF00FF)
_ONES_16 = np.uint64(0x0001000100010001)


def _nth_braces(text, wanted: np.ndarray, chunk: int = 1 << 20, block: int = 1024):
    """(offsets, total): the offset of the ``wanted[i]``-th ``{`` byte of ``text`` (a buffer;
    ``wanted`` sorted, unique, 0-based) and how many ``{`` bytes it holds in all.

    Listing every brace's offset (np.flatnonzero over the whole file) costs more than finding
    them: 500,000 detections need 4 MB of offsets in fresh pages, and a detector's zero scores
    are a few thousand of them. So each chunk only counts its braces per 1 kB block; the blocks
    that hold a wanted brace are searched. A chunk of a megabyte amortizes numpy's per-call
    cost while its flags stay in cache. Offsets of wanted braces past the total are left
    unset: the caller compares the total first.
    """
    is_brace = np.zeros(chunk, dtype=bool)
    blocks = is_brace.reshape(-1, block)
    words = is_brace.view(np.uint64).reshape(-1, block // 8)
    data = np.frombuffer(text, np.uint8)
    offsets = np.empty(wanted.size, np.int64)
    total = done = 0
    for start in range(0, data.size, chunk):
        view = data[start:start + chunk]
        np.equal(view, ord("{"), out=is_brace[:view.size])
        is_brace[view.size:] = False
        lanes = np.add.reduce(words, axis=1)  # 8 lanes of at most block / 8 each
        lanes = (lanes & _LOW_BYTES) + ((lanes >> np.uint64(8)) & _LOW_BYTES)
        counts = ((lanes * _ONES_16) >> np.uint64(48)).astype(np.int64)
        ends = np.cumsum(counts)  # braces up to the end of each block
        stop = int(np.searchsorted(wanted, total + int(ends[-1])))
        if stop > done:
            local = wanted[done:stop] - total
            which = np.searchsorted(ends, local, side="right")
            rank = local - (ends[which] - counts[which])  # among its block's braces
            searched, row = np.unique(which, return_inverse=True)
            found = np.flatnonzero(blocks[searched])  # row by row, in order
            first = np.cumsum(counts[searched]) - counts[searched]
            offsets[done:stop] = start + searched[row] * block + found[first[row] + rank] % block
            done = stop
        total += int(ends[-1])
    return offsets, total


def _evaluate(truth: GroundTruth, ground_truth_api, results_api, num_detections: int):
    from ultrafast_pycocotools import COCOeval

    evaluator = COCOeval(ground_truth_api, results_api, truth.iou_type,
                         print_function=_discard)
    try:
        evaluator.evaluate()
    except ValueError as error:  # a mask that passed the shape checks but does not decode
        if truth.iou_type != "segm":
            raise
        raise UserError(f"cannot decode a segmentation: {error}") from None
    evaluator.accumulate()
    evaluator.summarize()
    params = evaluator.params
    category_ids = tuple(truth.category_names)
    assert list(params.catIds) == list(category_ids)  # the K axis is ours, sorted by id
    precision = evaluator.eval["precision"]  # (T, R, K, A, M)
    return CocoMetrics(
        iou_type=truth.iou_type,
        summary={name: float(value) for name, value in zip(SUMMARY_NAMES, evaluator.stats)},
        per_category_ap=_per_category_ap(precision, category_ids),
        category_names=dict(truth.category_names),
        category_ids=category_ids,
        precision=precision,
        recall=evaluator.eval["recall"],
        scores=evaluator.eval["scores"],
        iou_thresholds=np.asarray(params.iouThrs, dtype=np.float64).copy(),
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64).copy(),
        num_images=len(truth.image_ids),
        num_ground_truth=truth.num_annotations,
        num_detections=num_detections,
    )


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
