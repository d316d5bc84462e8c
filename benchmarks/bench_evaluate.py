"""Evaluate benchmark: `edgeline coco-eval` against pycocotools, faster-coco-eval and
ultrafast-pycocotools (the engine inside it), bbox and segm, whole processes and in process.

    python -m benchmarks.run evaluate

A synthetic COCO set (5,000 images, ~7 objects each over 80 categories of COCO-like
frequencies, 100 detections per image: near-misses and duplicates of the objects, wrong
classes, background boxes; scores on a 0.001 grid, so with ties and with zeros) is written as
two JSON files; for segm, 500 images of the same kind whose objects and detections are
polygons. Each contender runs as its own process on the same files, ROUNDS interleaved rounds
(pycocotools once, it takes a minute), median taken:

- edgeline: ``edgeline coco-eval GT DT --json`` (its checks, its reading, the engine);
- pycocotools 2.0.11: ``COCO(gt)``, ``loadRes(dt)``, ``COCOeval`` evaluate / accumulate /
  summarize, as its README runs it;
- faster-coco-eval and ultrafast-pycocotools, each through its own ``COCO`` / ``loadRes`` /
  ``COCOeval`` in a script: what the engine gives without edgeline around it.

Whole process: CPU seconds (user + system, from ``wait4``: the steadier figure on a machine
shared with other work), wall seconds and peak resident memory (VmHWM), interpreter start,
imports and exit included (edgeline's sources byte-compiled first, as an installed copy's
are). In process: the same work timed inside each process once its imports are done, from
reading the files to the 12 numbers (wall seconds). A figure counts as met only when the 12
numbers equal pycocotools' exactly. The speed targets: against pycocotools in CPU (it runs on
one core, so CPU and wall agree); against the engine's own script in both CPU and wall (the
engine scores on every core, so they differ).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NUM_IMAGES = 5_000
SEGM_IMAGES = 500
OBJECTS_PER_IMAGE = 7  # Poisson mean
DETECTIONS_PER_IMAGE = 100
NUM_CATEGORIES = 80
SEED = 2014
ROUNDS = 9
TARGETS = {"pycocotools": 50.0, "ultrafast-pycocotools": 1.0}  # edgeline's speed-up, bbox
# ... in wall time too against these (each scores on every core, so CPU and wall differ)
WALL_TARGETS = ("ultrafast-pycocotools",)
MEMORY_TARGET_MB = 500
CONTENDERS = ("edgeline", "ultrafast-pycocotools", "faster-coco-eval", "pycocotools")


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


def with_polygons(ground_truth: dict, detections: list[dict]) -> tuple[dict, list[dict]]:
    """The set for segm: every box becomes an octagon inside it (so masks and boxes differ)."""
    def octagon(box):
        x, y, w, h = box
        a, b = 0.3 * w, 0.3 * h
        return [[x + a, y, x + w - a, y, x + w, y + b, x + w, y + h - b, x + w - a, y + h,
                 x + a, y + h, x, y + h - b, x, y + b]]

    for annotation in ground_truth["annotations"]:
        annotation["segmentation"] = octagon(annotation["bbox"])
    for detection in detections:
        detection["segmentation"] = octagon(detection["bbox"])
    return ground_truth, detections


# Each process writes its own peak resident memory to stderr as it exits: VmHWM of its address
# space, which exec made new. (wait4's ru_maxrss would not do: Linux carries the forking
# parent's resident size across exec into it, and this parent holds the generated sets.)
_PEAK_HOOK = """import atexit, sys
def _peak():
    with open('/proc/self/status') as status:
        sys.stderr.write([line for line in status if line.startswith('VmHWM')][0])
atexit.register(_peak)
"""
# The script each contender runs: argv = GT, DT, iou type; prints the in-process seconds and
# the 12 numbers as JSON on its last line.
_SCRIPTS = {
    "pycocotools": """
import contextlib, io, json, sys, time
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1])
    ev = COCOeval(gt, gt.loadRes(sys.argv[2]), sys.argv[3])
    ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps({"seconds": time.perf_counter() - started, "stats": ev.stats.tolist()}))
""",
    "faster-coco-eval": """
import json, sys, time
from faster_coco_eval import COCO, COCOeval_faster
started = time.perf_counter()
gt = COCO(sys.argv[1])
ev = COCOeval_faster(gt, gt.loadRes(sys.argv[2]), sys.argv[3], print_function=lambda *a: None)
ev.run()
print(json.dumps({"seconds": time.perf_counter() - started, "stats": ev.stats[:12].tolist()}))
""",
    "ultrafast-pycocotools": """
import json, sys, time
from ultrafast_pycocotools import COCO, COCOeval
started = time.perf_counter()
gt = COCO(sys.argv[1], verbose=False)
ev = COCOeval(gt, gt.loadRes(sys.argv[2]), sys.argv[3], print_function=lambda *a: None)
ev.run()
print(json.dumps({"seconds": time.perf_counter() - started, "stats": ev.stats.tolist()}))
""",
    # In process for edgeline: the same function the command calls, timed the same way.
    "edgeline-in-process": """
import json, sys, time
from edgeline.common.coco import evaluate_files
import orjson, ultrafast_pycocotools  # what evaluate_files imports on first use
started = time.perf_counter()
metrics = evaluate_files(sys.argv[1], sys.argv[2], sys.argv[3], standalone=True)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "stats": list(metrics.summary.values())}))
""",
}


def _measure(contender: str, ground_truth: Path, detections: Path, iou_type: str) -> dict:
    """One whole process of ``contender``, and (a second process) its in-process time."""
    files = [str(ground_truth), str(detections)]
    if contender == "edgeline":
        # what `python -m edgeline coco-eval ...` runs (edgeline/__main__.py), with the hook
        command = [sys.executable, "-c", _PEAK_HOOK + "from edgeline.cli import console_main\n"
                   "sys.argv[0] = 'edgeline'\nconsole_main()", "coco-eval", *files,
                   "--iou-type", iou_type, "--json"]
    else:
        command = [sys.executable, "-c", _PEAK_HOOK + _SCRIPTS[contender], *files, iou_type]
    whole = _timed(command)
    if contender == "edgeline":
        report = json.loads(whole.pop("out"))
        stats = list(report["summary"].values())
        inner = json.loads(_timed([sys.executable, "-c", _SCRIPTS["edgeline-in-process"],
                                   *files, iou_type])["out"].strip().splitlines()[-1])
    else:
        inner = json.loads(whole.pop("out").strip().splitlines()[-1])
        stats = inner["stats"]
    return {**whole, "in_process": inner["seconds"], "stats": stats}


def _timed(command: list[str]) -> dict:
    """CPU (user + system), wall and peak RSS of one child process, measured by the kernel."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=Path(__file__).resolve().parents[1])
    # wait4 rather than communicate's wait: it returns this child's own rusage (RUSAGE_CHILDREN
    # would fold every earlier child's peak memory into the maximum).
    out = process.stdout.read()
    err = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"{command[:5]} failed: {err.decode()[-2000:]}")
    peaks = [line.split()[1] for line in err.decode().splitlines() if line.startswith("VmHWM")]
    return {"out": out.decode(), "wall": time.perf_counter() - started,
            "cpu": usage.ru_utime + usage.ru_stime,
            "peak_mb": int(peaks[-1]) / 1024 if peaks else float("nan")}


def _median_runs(ground_truth: Path, detections: Path, iou_type: str) -> dict[str, dict]:
    """ROUNDS interleaved rounds of the fast contenders (pycocotools once), median per figure."""
    runs: dict[str, list[dict]] = {contender: [] for contender in CONTENDERS}
    for round_index in range(ROUNDS):
        for contender in CONTENDERS:
            if contender == "pycocotools" and round_index:
                continue
            runs[contender].append(_measure(contender, ground_truth, detections, iou_type))
    medians = {
        contender: {key: (statistics.median(run[key] for run in measured)
                          if key != "stats" else measured[0]["stats"])
                    for key in measured[0]}
        for contender, measured in runs.items()
    }
    # Each round's whole-process wall time minus the same round's engine script's: how far
    # the host's noise reaches next to the gated ratio of medians (quartiles of the rounds).
    for contender in WALL_TARGETS:
        differences = [ours["wall"] - theirs["wall"]
                       for ours, theirs in zip(runs["edgeline"], runs[contender])]
        medians["edgeline"][f"paired_wall_{contender}"] = statistics.quantiles(differences)
    return medians


def _rows(iou_type: str, size: str, results: dict[str, dict]) -> list[dict]:
    ours, reference = results["edgeline"], results["pycocotools"]
    rows = []
    for contender in CONTENDERS:
        difference = float(np.max(np.abs(np.subtract(results[contender]["stats"],
                                                     reference["stats"]))))
        rows.append({
            "figure": f"{iou_type}: {contender} max |difference| of the 12 numbers",
            "value": difference, "baseline": "pycocotools", "baseline_value": 0.0,
            "ratio": None, "target": "0 (identical)" if contender == "edgeline" else "",
            "met": difference == 0.0 if contender == "edgeline" else None,
            "note": f"AP={results[contender]['stats'][0]:.4f}"})
    identical = rows[0]["met"]
    for contender in CONTENDERS[1:]:
        other = results[contender]
        target = TARGETS.get(contender) if iou_type == "bbox" else None
        for figure, key in (("whole process, CPU s", "cpu"), ("whole process, wall s", "wall"),
                            ("in process, s", "in_process")):
            ratio = other[key] / ours[key]
            gated = target and (key == "cpu" or (key == "wall" and contender in WALL_TARGETS))
            rows.append({
                "figure": f"{iou_type}: edgeline coco-eval {figure}", "value": ours[key],
                "baseline": contender, "baseline_value": other[key], "ratio": ratio,
                "target": f">= {target:g}x, identical" if gated else "",
                "met": (ratio >= target and identical) if gated else None,
                "note": size if key == "cpu" else ""})
    if iou_type == "bbox":
        for contender in WALL_TARGETS:
            low, middle, high = ours[f"paired_wall_{contender}"]
            rows.append({
                "figure": f"{iou_type}: edgeline minus {contender}'s script, wall ms, per round",
                "value": middle * 1000, "baseline": contender, "baseline_value": None,
                "ratio": None, "target": "", "met": None,
                "note": f"median of {ROUNDS} rounds; quartiles {low * 1000:+.0f} to "
                        f"{high * 1000:+.0f} ms"})
    for contender in CONTENDERS:
        peak = results[contender]["peak_mb"]
        is_ours = contender == "edgeline"
        rows.append({
            "figure": f"{iou_type}: peak memory MB, whole process", "value": peak,
            "baseline": contender if not is_ours else "", "baseline_value": None, "ratio": None,
            "target": f"<= {MEMORY_TARGET_MB}" if is_ours else "",
            "met": peak <= MEMORY_TARGET_MB if is_ours else None,
            "note": "edgeline" if is_ours else contender})
    return rows


def _compile_edgeline() -> None:
    """Byte-compile edgeline's sources, as ``pip install`` compiles every package it installs
    (the engines' included). An editable checkout under PYTHONDONTWRITEBYTECODE=1 (this
    machine's sessions set it) never caches its bytecode, so each ``edgeline`` process would
    compile its modules anew: about 15 ms that no installed copy pays and no contender here."""
    import compileall

    repo = Path(__file__).resolve().parents[1]
    for folder in ("edgeline", "pipeline", "common", "components"):
        compileall.compile_dir(repo / folder, quiet=1)


def run(workdir: Path) -> list[dict]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _compile_edgeline()
    rows = []
    for iou_type, num_images in (("bbox", NUM_IMAGES), ("segm", SEGM_IMAGES)):
        ground_truth, detections = make_synthetic_set(num_images)
        if iou_type == "segm":
            ground_truth, detections = with_polygons(ground_truth, detections)
        ground_truth_path = workdir / f"{iou_type}_gt.json"
        detections_path = workdir / f"{iou_type}_dt.json"
        ground_truth_path.write_text(json.dumps(ground_truth))
        detections_path.write_text(json.dumps(detections))
        size = (f"{num_images} images, {len(ground_truth['annotations'])} objects, "
                f"{len(detections)} detections; median of {ROUNDS} interleaved rounds "
                "(pycocotools: 1)")
        del ground_truth, detections
        print(f"[bench] evaluate {iou_type}: {size}", file=sys.stderr, flush=True)
        rows += _rows(iou_type, size, _median_runs(ground_truth_path, detections_path,
                                                   iou_type))
    return rows
