"""Options of the export stage (no TensorFlow here: configs are checked before any work).

A pipeline step looks like::

    export_int8:
      stage: export
      inputs: [train, images]      # a Model artifact and the Examples it was trained on
      quantize: int8
      include_preprocessing: true  # uint8 RGB in: the app feeds camera pixels directly
      representative_size: 300
      max_metric_drop: 0.02
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Quantize = Literal["none", "float16", "dynamic", "int8"]
IoType = Literal["float32", "int8"]
Source = Literal["auto", "keras", "saved_model"]

# The largest drop of the task metric a quantized export may show before it is refused, when
# the config does not say: 2 points of top-1, 0.03 of COCO mAP@[.5:.95].
DEFAULT_MAX_METRIC_DROP = {"classification": 0.02, "detection": 0.03}


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to turn a Model artifact into a ``.tflite`` file, and how to check it.

    Attributes:
      quantize: ``none`` (float32), ``float16`` (float16 weights), ``dynamic`` (int8 weights,
        dynamic-range activations) or ``int8`` (full integer, calibrated on
        ``representative_size`` training images, or on a QAT model's own ranges).
      io_type: ``float32`` keeps float inputs/outputs; ``int8`` (with ``quantize: int8``)
        makes them int8, their scale and zero point written to export.json. Detectors always
        return float32 boxes and scores, as mobile detection APIs expect.
      include_preprocessing: put the model's normalization inside the exported graph, so the
        input is uint8 RGB at the model's input size. Detectors always include it.
      per_channel_weights: int8 weights (``dynamic``, ``int8``) with one scale per output
        channel, TFLite's default; false gives one scale per tensor, which makes a narrow
        network's file smaller (every channel's scale and zero point add up) at a possible
        accuracy cost that the parity gate measures.
      source: convert the Model artifact's ``model.keras`` or its ``saved_model/``; ``auto``
        takes the Keras model, or the SavedModel when the Keras file cannot be loaded (TF-MOT
        cannot reload a quantization-aware ``.keras`` file).
      representative_size: how many training images calibrate an int8 export.
      representative_split: the Examples split the calibration images come from.
      parity_split: the held-out Examples split the parity gate runs on.
      parity_size: how many held-out images the gate runs (at most; fewer if the split is
        smaller).
      float_tolerance: a float32 classifier export must match the source model's class
        probabilities to this max absolute difference.
      float_map_tolerance: a float32 detector export must match the source model's COCO mAP
        to within this much.
      max_metric_drop: the most a quantized export (float16, dynamic, int8) may lose in the
        task metric (top-1 for classifiers, COCO mAP@[.5:.95] for detectors) against the
        source model; unset means 0.02 for classifiers and 0.03 for detectors.
      max_relative_metric_drop: the most a quantized export may lose as a fraction of the
        source model's metric (0.05: it keeps at least 95%, the bar EfficientDet-Lite's int8
        files meet); both budgets apply when both are set.
      max_detections: fixed number of detection slots in the exported detector's outputs;
        unset means the model's own decoding setting.
      latency_warmup: untimed LiteRT runs before timing.
      latency_runs: timed runs; the median is reported.
      measure_latency: set false to skip the latency figures (tests, CI).
      check_parity: set false to skip the parity gate (no held-out data at hand); the
        export.json then says the export was not checked.
      metadata: write TFLite Model Metadata into the file (labels, the input's normalization,
        a detector's output roles), which MediaPipe Tasks and the TFLite Task Library need to
        load it; written with tflite-support in the mobile environment (.venv/mobile).
      model_name: the metadata's model name; unset means the network's name and its task.
      model_description: the metadata's description; unset means the task, the classes and
        the quantization.
      model_version: the metadata's model version; unset means the edgeline version.
      model_author: the metadata's author.
      model_license: the metadata's license (e.g. Apache-2.0); unset writes none.
    """

    quantize: Quantize = "none"
    io_type: IoType = "float32"
    include_preprocessing: bool = False
    per_channel_weights: bool = True
    source: Source = "auto"
    representative_size: int = 300
    representative_split: str = "train"
    parity_split: str = "validation"
    parity_size: int = 500
    float_tolerance: float = 1e-4
    float_map_tolerance: float = 0.01
    max_metric_drop: float | None = None
    max_relative_metric_drop: float | None = None
    max_detections: int | None = None
    latency_warmup: int = 5
    latency_runs: int = 30
    measure_latency: bool = True
    check_parity: bool = True
    metadata: bool = True
    model_name: str | None = None
    model_description: str | None = None
    model_version: str | None = None
    model_author: str = "edgeline"
    model_license: str | None = None

    def __post_init__(self):
        if self.io_type == "int8" and self.quantize != "int8":
            raise ValueError(
                f"Received: io_type='int8' with quantize={self.quantize!r}; integer "
                "inputs/outputs need quantize='int8'"
            )
        for name in ("representative_size", "parity_size", "latency_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"Received: {name}={getattr(self, name)}; {name} must be >= 1")
        if self.latency_warmup < 0:
            raise ValueError(f"Received: latency_warmup={self.latency_warmup}; "
                             "latency_warmup must be >= 0")
        for name in ("float_tolerance", "float_map_tolerance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Received: {name}={getattr(self, name)}; {name} must be > 0")
        if self.max_metric_drop is not None and not 0.0 <= self.max_metric_drop <= 1.0:
            raise ValueError(f"Received: max_metric_drop={self.max_metric_drop}; "
                             "max_metric_drop must be in [0, 1]")
        if (self.max_relative_metric_drop is not None
                and not 0.0 <= self.max_relative_metric_drop <= 1.0):
            raise ValueError(f"Received: max_relative_metric_drop={self.max_relative_metric_drop}"
                             "; max_relative_metric_drop must be in [0, 1]")
        if self.max_detections is not None and self.max_detections < 1:
            raise ValueError(f"Received: max_detections={self.max_detections}; "
                             "max_detections must be >= 1")
        for name in ("representative_split", "parity_split"):
            if not getattr(self, name).strip():
                raise ValueError(f"Received: {name}={getattr(self, name)!r}; a split name "
                                 "must not be empty")

    def metric_budget(self, task: str, source_metric: float) -> float:
        """The allowed metric drop for a quantized export of a ``task`` model whose source
        scores ``source_metric``: the absolute budget, tightened by the relative one."""
        budget = (self.max_metric_drop if self.max_metric_drop is not None
                  else DEFAULT_MAX_METRIC_DROP[task])
        if self.max_relative_metric_drop is not None:
            budget = min(budget, self.max_relative_metric_drop * source_metric)
        return budget
