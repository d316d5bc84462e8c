"""Options of ``edgeline predict``: what is drawn, printed and played.

No TensorFlow here: the flags are checked before any heavy import.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def _check(condition: bool, name: str, value: Any, rule: str) -> None:
    if not condition:
        raise ValueError(f"Received: {name}={value!r}; {name} {rule}")


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """How ``edgeline predict`` runs a model on images, or a Policy on episodes.

    Attributes:
      score_threshold: detectors: draw and print the detections scoring at least this (0.25,
        as yolo predict). predictions.json keeps every detection the model returns, down to
        its own decoding threshold (preprocessing.json's decoding, 0.05 by default), as
        evaluate and the export's parity gate score them: its COCO mAP is the model's.
      top_k: classifiers: the best K labels printed and written per image.
      num_threads: CPU threads of the LiteRT interpreter (.tflite models).
      episodes: a Policy: play this many greedy episodes.
      seed: a Policy: the episodes are seeded seed, seed + 1, ...; the first becomes a GIF.
      max_gif_frames: a Policy: the GIF holds at most this many frames of the first episode.
    """

    score_threshold: float = 0.25
    top_k: int = 5
    num_threads: int = 1
    episodes: int = 5
    seed: int = 0
    max_gif_frames: int = 1000

    def __post_init__(self):
        _check(0.0 <= self.score_threshold <= 1.0, "score_threshold", self.score_threshold,
               "must be in [0, 1]")
        _check(self.top_k >= 1, "top_k", self.top_k, "must be >= 1")
        _check(self.num_threads >= 1, "num_threads", self.num_threads, "must be >= 1")
        _check(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        _check(self.seed >= 0, "seed", self.seed, "must be >= 0")
        _check(self.max_gif_frames >= 1, "max_gif_frames", self.max_gif_frames, "must be >= 1")
