"""Evaluate benchmark: `edgeline coco-eval`'s metric time against pycocotools' COCOeval.

    python -m benchmarks.run evaluate

A synthetic COCO set (5,000 images, ~7 objects each over 80 categories of COCO-like
frequencies, 100 detections per image: near-misses and duplicates of the objects, wrong
classes, background boxes; scores on a 0.001 grid, so with ties) is written as two JSON files.
Each contender then runs in its own fresh process on the same files and is timed from reading
the files to the 12 summary numbers:

- ours: ``evaluate_files`` (our loading and indexing around faster-coco-eval's C++ engine);
- pycocotools: ``COCO(gt)``, ``loadRes(dt)``, ``COCOeval`` evaluate / accumulate / summarize,
  as its README runs it;
- faster-coco-eval alone, through its own ``COCO`` / ``loadRes`` / ``COCOeval_faster``, to
  show what the work around the engine is worth.

Times are process CPU seconds (all three are single-threaded; CPU time is what the work costs,
whatever else shares the machine); wall-clock seconds are given too. The numbers must agree
with pycocotools' to 1e-9 for a figure to count as met.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

NUM_IMAGES = 5_000
OBJECTS_PER_IMAGE = 7  # Poisson mean
DETECTIONS_PER_IMAGE = 100
NUM_CATEGORIES = 80
SEED = 2014
TARGET_SPEEDUP = 3.0


def make_synthetic_set(
    num_images: int = NUM_IMAGES, seed: int = SEED
) -> tuple[dict, list[dict]]:
    """(ground truth, detections) of a detector-like synthetic COCO set, vectorized."""
    rng = np.random.default_rng(seed)
    width, height = 640.0, 480.0
    # COCO-like long tail: category k drawn with probability ~ 1 / (k + 2)
    frequency = 1.0 / (np.arange(NUM_CATEGORIES) + 2.0)
    frequency /= frequency.sum()

    counts = rng.poisson(OBJECTS_PER_IMAGE, num_images)  # (I,)
    object_images = np.repeat(np.arange(1, num_images + 1), counts)  # (N,)
    n = object_images.size
    # side lengths log-normal: a mix of small (< 32^2), medium and large (> 96^2) objects
    sides = np.clip(np.exp(rng.normal(4.0, 0.9, (n, 2))), 2.0, 400.0)  # (N, 2) w, h
    corners = rng.uniform(0.0, 1.0, (n, 2)) * ([width, height] - sides)  # (N, 2) x, y
    truth_boxes = np.round(np.concatenate([corners, sides], axis=1), 2)  # (N, 4)
    truth_categories = rng.choice(NUM_CATEGORIES, n, p=frequency) + 1  # (N,)
    crowd = rng.random(n) < 0.01

    # Detections: up to 3 per object (a good one, a looser duplicate, a shifted one, some with
    # the wrong class), the rest of each image's 100 are background boxes with low scores.
    copies = np.minimum(rng.integers(1, 4, n), 3)
    source = np.repeat(np.arange(n), copies)  # (M,) the object each near-detection copies
    jitter = rng.normal(0.0, 0.08 + 0.07 * rng.random((source.size, 1)), (source.size, 4))
    near = truth_boxes[source] + jitter * truth_boxes[source][:, [2, 3, 2, 3]]
    near[:, 2:] = np.abs(near[:, 2:])
    near_categories = np.where(rng.random(source.size) < 0.15,
                               rng.choice(NUM_CATEGORIES, source.size, p=frequency) + 1,
                               truth_categories[source])
    near_scores = np.clip(rng.beta(5, 2, source.size), 0.0, 1.0)
    near_images = object_images[source]

    per_image_near = np.bincount(near_images, minlength=num_images + 1)[1:]  # (I,)
    background_counts = np.maximum(DETECTIONS_PER_IMAGE - per_image_near, 0)
    background_images = np.repeat(np.arange(1, num_images + 1), background_counts)
    m = background_images.size
    background_sides = np.clip(np.exp(rng.normal(3.8, 1.0, (m, 2))), 2.0, 400.0)
    background_corners = rng.uniform(0.0, 1.0, (m, 2)) * ([width, height] - background_sides)
    background = np.concatenate([background_corners, background_sides], axis=1)
    background_categories = rng.choice(NUM_CATEGORIES, m, p=frequency) + 1
    background_scores = rng.beta(1, 6, m)

    detection_images = np.concatenate([near_images, background_images])
    order = np.argsort(detection_images, kind="stable")  # results files come image by image
    boxes = np.round(np.concatenate([near, background])[order], 2).tolist()
    categories = np.concatenate([near_categories, background_categories])[order].tolist()
    scores = np.round(np.concatenate([near_scores, background_scores])[order], 3).tolist()

    ground_truth = {
        "info": {"description": "edgeline synthetic COCO set for benchmarks/bench_evaluate.py"},
        "images": [{"id": i, "width": int(width), "height": int(height),
                    "file_name": f"{i:06d}.jpg"} for i in range(1, num_images + 1)],
        "categories": [{"id": c, "name": f"class_{c}", "supercategory": "thing"}
                       for c in range(1, NUM_CATEGORIES + 1)],
        "annotations": [
            {"id": index + 1, "image_id": image_id, "category_id": category_id, "bbox": box,
             "area": round(box[2] * box[3], 2), "iscrowd": int(is_crowd)}
            for index, (image_id, category_id, box, is_crowd) in enumerate(zip(
                object_images.tolist(), truth_categories.tolist(), truth_boxes.tolist(),
                crowd.tolist()))
        ],
    }
    detections = [
        {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score}
        for image_id, category_id, box, score in zip(
            detection_images[order].tolist(), categories, boxes, scores)
    ]
    return ground_truth, detections


def _measure(contender: str, ground_truth_path: str, detections_path: str) -> dict:
    """Run one contender in this process; return its times and 12 numbers."""
    import contextlib
    import io
    import time

    import edgeline  # noqa: F401

    if contender == "ours":
        from edgeline.common.coco import evaluate_files

        def evaluate():
            return list(evaluate_files(ground_truth_path, detections_path, "bbox").summary
                        .values())
    elif contender == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        def evaluate():
            ground_truth = COCO(ground_truth_path)
            evaluator = COCOeval(ground_truth, ground_truth.loadRes(detections_path), "bbox")
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            return [float(v) for v in evaluator.stats]
    else:
        from faster_coco_eval import COCO, COCOeval_faster

        def evaluate():
            ground_truth = COCO(ground_truth_path)
            evaluator = COCOeval_faster(ground_truth, ground_truth.loadRes(detections_path),
                                        "bbox", print_function=lambda *args: None)
            evaluator.run()
            return [float(v) for v in evaluator.stats[:12]]

    started_wall, started_cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        stats = evaluate()
    return {"cpu": time.process_time() - started_cpu,
            "wall": time.perf_counter() - started_wall, "stats": stats}


def _measure_in_fresh_process(contender: str, ground_truth_path: Path, detections_path: Path):
    """A fresh interpreter per contender: no contender pays for another's garbage."""
    code = ("import json, sys; from benchmarks.bench_evaluate import _measure; "
            "print(json.dumps(_measure(*sys.argv[1:])))")
    result = subprocess.run(
        [sys.executable, "-c", code, contender, str(ground_truth_path), str(detections_path)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(workdir: Path) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ground_truth, detections = make_synthetic_set()
    ground_truth_path, detections_path = workdir / "gt.json", workdir / "dt.json"
    ground_truth_path.write_text(json.dumps(ground_truth))
    detections_path.write_text(json.dumps(detections))
    size = (f"{NUM_IMAGES} images, {len(ground_truth['annotations'])} objects, "
            f"{len(detections)} detections")
    del ground_truth, detections

    results = {contender: _measure_in_fresh_process(contender, ground_truth_path,
                                                    detections_path)
               for contender in ("ours", "pycocotools", "faster-coco-eval")}
    ours, reference, engine = results["ours"], results["pycocotools"], results["faster-coco-eval"]
    difference = float(np.max(np.abs(np.subtract(ours["stats"], reference["stats"]))))
    identical = difference <= 1e-9
    cpu_ratio = reference["cpu"] / ours["cpu"]
    wall_ratio = reference["wall"] / ours["wall"]
    return [
        {"figure": "coco-eval bbox metric time, CPU s (load + index + evaluate + summary)",
         "value": ours["cpu"], "baseline": "pycocotools COCOeval", "baseline_value":
         reference["cpu"], "ratio": cpu_ratio, "target": f">= {TARGET_SPEEDUP:g}x, identical",
         "met": cpu_ratio >= TARGET_SPEEDUP and identical, "note": size},
        {"figure": "coco-eval bbox metric time, wall s", "value": ours["wall"],
         "baseline": "pycocotools COCOeval", "baseline_value": reference["wall"],
         "ratio": wall_ratio, "target": f">= {TARGET_SPEEDUP:g}x, identical",
         "met": wall_ratio >= TARGET_SPEEDUP and identical,
         "note": "wall clock on a shared 2-core machine: CPU time is the steadier figure"},
        {"figure": "coco-eval bbox metric time, CPU s, vs the engine's own Python API",
         "value": ours["cpu"], "baseline": "faster-coco-eval COCO + COCOeval_faster",
         "baseline_value": engine["cpu"], "ratio": engine["cpu"] / ours["cpu"],
         "target": "> 1x", "met": engine["cpu"] > ours["cpu"],
         "note": f"engine alone is {reference['cpu'] / engine['cpu']:.2f}x pycocotools"},
        {"figure": "max |difference| of the 12 numbers vs pycocotools", "value": difference,
         "baseline": "pycocotools COCOeval", "baseline_value": 0.0, "ratio": None,
         "target": "<= 1e-9", "met": identical,
         "note": f"AP={ours['stats'][0]:.4f} AP50={ours['stats'][1]:.4f}"},
    ]
