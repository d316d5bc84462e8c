"""Options of the evaluate stage: the ``evaluate`` step of a pipeline file.

    evaluate:
      stage: evaluate
      inputs: [images, train]       # an Examples artifact and a Model (or TFLiteModel) artifact
      split: validation
      batch_size: 32
      detection: {score_threshold: 0.05, nms: soft, soft_nms_sigma: 0.5}

    evaluate:
      stage: evaluate
      inputs: [cartpole_dqn]        # a Policy artifact (rl output): returns over seeded episodes
      model_form: tflite            # auto/saved_model: the SavedModel policy; tflite: LiteRT
      episodes: 20                  # seeded run seed, run seed + 1, ... (or episode_seed)

No TensorFlow here: the config is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from edgeline.common.environment_options import EnvironmentOptions


def _check(condition: bool, name: str, value: Any, rule: str) -> None:
    if not condition:
        raise ValueError(f"Received: {name}={value!r}; {name} {rule}")


@dataclasses.dataclass(frozen=True)
class DetectionOptions:
    """How a detector's outputs become detections before COCO scoring.

    ``nms: hard`` removes a box overlapping a better one of its class by more than
    ``iou_threshold``; ``nms: soft`` is soft-NMS with the Gaussian decay
    ``exp(-iou^2 / (2 sigma))`` (Bodla et al., "Soft-NMS", ICCV 2017, arXiv:1704.04503).
    COCO scores at most 100 detections per image, hence the default ``max_detections``.

    Attributes:
      score_threshold: detectors: drop detections scoring below it.
      nms: detectors: hard NMS, or Gaussian soft-NMS (Bodla et al., 2017).
      iou_threshold: detectors: the IoU above which hard NMS removes the lower-scoring box.
      soft_nms_sigma: detectors: the sigma of soft-NMS's Gaussian decay.
      max_detections: detectors: detections kept per image.
      pre_nms_top_k: detectors: the best (location, class) candidates kept before NMS.
      class_agnostic: detectors: suppress across classes too.
    """

    score_threshold: float = 0.05
    nms: Literal["hard", "soft"] = "hard"
    iou_threshold: float = 0.5
    soft_nms_sigma: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000
    class_agnostic: bool = False

    def __post_init__(self):
        _check(0.0 <= self.score_threshold < 1.0, "score_threshold", self.score_threshold,
               "must be in [0, 1)")
        _check(0.0 < self.iou_threshold <= 1.0, "iou_threshold", self.iou_threshold,
               "must be in (0, 1]")
        _check(self.soft_nms_sigma > 0.0, "soft_nms_sigma", self.soft_nms_sigma, "must be > 0")
        _check(self.max_detections >= 1, "max_detections", self.max_detections, "must be >= 1")
        _check(self.pre_nms_top_k >= self.max_detections, "pre_nms_top_k", self.pre_nms_top_k,
               f"must be >= max_detections ({self.max_detections})")

    def decode_settings(self) -> dict:
        """Keyword arguments of ``edgeline.models.detector.decode_detections``."""
        return {
            "max_detections": self.max_detections,
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "soft_nms_sigma": self.soft_nms_sigma if self.nms == "soft" else 0.0,
            "pre_nms_top_k": self.pre_nms_top_k,
            "class_agnostic": self.class_agnostic,
        }


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate and how.

    Attributes:
      split: the Examples split to evaluate on (``validation``, or ``train``).
      model_form: ``auto`` picks the form from the artifact (a TFLiteModel's ``.tflite``, a
        Model's Keras model); ``saved_model`` evaluates a Model artifact's SavedModel instead.
      batch_size: images per inference call.
      num_threads: CPU threads of the LiteRT interpreter.
      max_images: evaluate the first N images only (None: all).
      plots: write the PNGs (confusion matrix, precision-recall curves).
      detection: detector decoding (see :class:`DetectionOptions`).
      episodes: a Policy artifact (rl output) plays this many greedy episodes.
      episode_seed: the episodes are seeded episode_seed, episode_seed + 1, ...; None: the
        run's seed.
      environment: the environment to play in; None: the one the Policy artifact was trained
        in (its ``environment`` property).

    For a Policy, ``model_form`` ``auto`` and ``saved_model`` run the SavedModel policy,
    ``tflite`` the exported network in LiteRT, acting with the argmax of its outputs.
    """

    split: str = "validation"
    model_form: Literal["auto", "keras", "saved_model", "tflite"] = "auto"
    batch_size: int = 32
    num_threads: int = 1
    max_images: int | None = None
    plots: bool = True
    detection: DetectionOptions = dataclasses.field(default_factory=DetectionOptions)
    episodes: int = 20
    episode_seed: int | None = None
    environment: EnvironmentOptions | None = None

    def __post_init__(self):
        _check(bool(self.split) and "/" not in self.split, "split", self.split,
               "must be a split name such as 'validation'")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.num_threads >= 1, "num_threads", self.num_threads, "must be >= 1")
        _check(self.max_images is None or self.max_images >= 1, "max_images", self.max_images,
               "must be >= 1 or null")
        _check(self.episodes >= 1, "episodes", self.episodes, "must be >= 1")
        _check(self.episode_seed is None or self.episode_seed >= 0, "episode_seed",
               self.episode_seed, "must be >= 0 or null")
