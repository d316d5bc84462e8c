"""MediaPipe Tasks on exported files, run by the mobile environment's Python (MediaPipe needs
absl-py 2, which .venv cannot have): ``python mediapipe_tasks.py job.json``.

The job is ``{"model": PATH, "task": "classification" | "detection", "images": [PATH, ...],
"score_threshold": T}``; the result, on stdout, is one row per image: for a classifier its
categories ``[name, index, score]`` best first, for a detector its detections, one per
category, ``[name, score, origin_x, origin_y, width, height]`` (pixels, as MediaPipe gives
them).
"""

import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision


def classify(job):
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=job["model"]))
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in job["images"]:
            result = classifier.classify(mp.Image.create_from_file(path))
            yield [[c.category_name, c.index, c.score]
                   for c in result.classifications[0].categories]


def detect(job):
    options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=job["model"]),
                                           score_threshold=job["score_threshold"])
    with vision.ObjectDetector.create_from_options(options) as detector:
        for path in job["images"]:
            result = detector.detect(mp.Image.create_from_file(path))
            # One row per category: MediaPipe merges detections with the very same box into
            # one with several categories (DetectionsDeduplicateCalculator).
            yield [[c.category_name, c.score, d.bounding_box.origin_x, d.bounding_box.origin_y,
                    d.bounding_box.width, d.bounding_box.height]
                   for d in result.detections for c in d.categories]


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        job = json.load(f)
    run = classify if job["task"] == "classification" else detect
    json.dump(list(run(job)), sys.stdout)
