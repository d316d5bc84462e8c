"""The plan: everything a worker needs besides the file refs, written once per run.

The pipeline graph stays small (units of work only); the label maps, the ground truth and
the COCO annotations go into one pickle beside the output that each worker loads once.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any, Literal

SPLITS = ("train", "validation")


@dataclasses.dataclass
class CocoImage:
    image_id: Any  # int in COCO files; kept as given
    file_name: str
    width: int  # 0 when the file does not say
    height: int
    annotations: list[dict]  # sorted by annotation id


@dataclasses.dataclass
class IngestPlan:
    task: Literal["classification", "detection"]
    shard_counts: dict[str, int]  # split -> number of shards
    output_dir: str
    report_dir: str
    reencode_quality: int
    verify_decode: bool
    # classification
    class_index: dict[str, int] = dataclasses.field(default_factory=dict)  # wnid -> label
    class_text: dict[str, str] = dataclasses.field(default_factory=dict)  # wnid -> text
    # ground truth of a flat validation folder or tar: match_key(file name) -> wnid
    val_ground_truth: dict[Any, str] = dataclasses.field(default_factory=dict)
    # detection: split -> image id -> image; category id -> name
    coco_images: dict[str, dict[Any, CocoImage]] = dataclasses.field(default_factory=dict)
    categories: dict[int, str] = dataclasses.field(default_factory=dict)

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)


# Plans loaded in this process, newest last. A worker of a long-lived cluster (dask) serves run
# after run, and the driver's forget_plan does not reach it, so only the latest few are kept.
_LOADED: dict[str, IngestPlan] = {}
_KEEP_PLANS = 2


def load_plan(path: str) -> IngestPlan:
    """The plan at ``path``, read once per worker process."""
    if path not in _LOADED:
        with open(path, "rb") as f:
            plan = pickle.load(f)
        while len(_LOADED) >= _KEEP_PLANS:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[path] = plan
    return _LOADED[path]


def forget_plan(path: str) -> None:
    """Drop a finished run's plan from this process's cache."""
    _LOADED.pop(path, None)
