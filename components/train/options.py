"""Options of the train stage: the ``train`` step of a pipeline file.

    train:
      stage: train
      inputs: [images]              # an Examples artifact (and optionally a Model to start from)
      model: mobilenet_v2           # a name from `edgeline models list`
      model_options: {width_multiplier: 0.35}
      epochs: 10
      batch_size: 64                # the global batch, split over the replicas
      data: {input_size: [96, 96]}
      optimizer: {name: sgd, learning_rate: 0.1, momentum: 0.9, weight_decay: 5.0e-5}
      schedule: {name: cosine, warmup_epochs: 1}
      ema_decay: 0.999

No TensorFlow here: the config is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from edgeline.pipeline.config import ExistingPath


def _check(condition: bool, name: str, value: Any, rule: str) -> None:
    if not condition:
        raise ValueError(f"Received: {name}={value!r}; {name} {rule}")


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    _check(len(value) == 2, name, value, "must be [low, high]")
    _check(low <= value[0] <= value[1] <= high, name, value,
           f"must satisfy {low} <= low <= high <= {high}")


@dataclasses.dataclass(frozen=True)
class AugmentationOptions:
    """Training-time augmentation.

    Classification uses the random-resized crop of Szegedy et al., "Going Deeper with
    Convolutions" (2015), as the Inception and ResNet ImageNet recipes do: a crop covering
    ``crop_area_range`` of the image with an aspect ratio in ``crop_aspect_ratio_range``,
    decoded and cropped in one step. Detection uses box-aware horizontal flips and scale
    jitter (resize by a factor from ``scale_jitter_range``, then crop or pad back to the input
    size), as the RetinaNet recipe of TF Model Garden does.
    """

    random_resized_crop: bool = True
    crop_area_range: tuple[float, float] = (0.08, 1.0)
    crop_aspect_ratio_range: tuple[float, float] = (0.75, 1.3333333)
    horizontal_flip: bool = True
    scale_jitter_range: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self):
        _check_range("crop_area_range", self.crop_area_range, 0.0, 1.0)
        _check(self.crop_area_range[0] > 0, "crop_area_range", self.crop_area_range,
               "must start above 0")
        _check_range("crop_aspect_ratio_range", self.crop_aspect_ratio_range, 0.01, 100.0)
        _check_range("scale_jitter_range", self.scale_jitter_range, 0.1, 10.0)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """The tf.data input pipeline and the preprocessing the model will expect."""

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    resize: Literal["bilinear", "bicubic", "area", "nearest"] = "bilinear"
    # Evaluation center crop as a fraction of the shorter side (224/256); detection uses 1.0.
    crop_fraction: float = 0.875
    shuffle_buffer: int = 1024
    interleave_cycle_length: int = 8  # shards read at once
    num_parallel_calls: int | None = None  # None: tf.data.AUTOTUNE
    max_boxes: int = 100  # detection: boxes kept per image after augmentation
    augmentation: AugmentationOptions = dataclasses.field(default_factory=AugmentationOptions)

    def __post_init__(self):
        _check(len(self.input_size) == 2 and min(self.input_size) >= 8, "input_size",
               self.input_size, "must be [height, width], each >= 8")
        _check(len(self.mean) == 3, "mean", self.mean, "must have 3 values (RGB)")
        _check(len(self.std) == 3 and min(self.std) > 0, "std", self.std,
               "must have 3 values > 0 (RGB)")
        _check(0.0 < self.crop_fraction <= 1.0, "crop_fraction", self.crop_fraction,
               "must be in (0, 1]")
        _check(self.shuffle_buffer >= 1, "shuffle_buffer", self.shuffle_buffer, "must be >= 1")
        _check(self.interleave_cycle_length >= 1, "interleave_cycle_length",
               self.interleave_cycle_length, "must be >= 1")
        _check(self.num_parallel_calls is None or self.num_parallel_calls >= 1,
               "num_parallel_calls", self.num_parallel_calls, "must be >= 1 or null")
        _check(self.max_boxes >= 1, "max_boxes", self.max_boxes, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class OptimizerOptions:
    """The optimizer. ``weight_decay`` is decoupled (Loshchilov & Hutter, "Decoupled Weight
    Decay Regularization", ICLR 2019) and skips biases and normalization scales and offsets
    ("no bias decay", He et al., "Bag of Tricks for Image Classification", CVPR 2019)."""

    name: Literal["sgd", "rmsprop", "adam"] = "sgd"
    learning_rate: float = 0.1  # the peak rate, reached after the warmup
    momentum: float = 0.9  # sgd and rmsprop
    nesterov: bool = False  # sgd
    rho: float = 0.9  # rmsprop: decay of the squared-gradient average
    beta_1: float = 0.9  # adam
    beta_2: float = 0.999  # adam
    epsilon: float = 1e-7  # rmsprop and adam
    weight_decay: float = 0.0
    clipnorm: float | None = None  # clip each gradient to this L2 norm

    def __post_init__(self):
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "must be in [0, 1)")
        _check(0 <= self.rho < 1, "rho", self.rho, "must be in [0, 1)")
        _check(0 <= self.beta_1 < 1, "beta_1", self.beta_1, "must be in [0, 1)")
        _check(0 <= self.beta_2 < 1, "beta_2", self.beta_2, "must be in [0, 1)")
        _check(self.epsilon > 0, "epsilon", self.epsilon, "must be > 0")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        _check(self.clipnorm is None or self.clipnorm > 0, "clipnorm", self.clipnorm,
               "must be > 0 or null")


@dataclasses.dataclass(frozen=True)
class ScheduleOptions:
    """The learning-rate schedule: a linear warmup (Goyal et al., "Accurate, Large Minibatch
    SGD", 2017), then ``constant``, ``cosine`` (Loshchilov & Hutter, "SGDR", ICLR 2017, without
    restarts), ``step`` (multiply by ``decay_rate`` at each epoch of ``boundaries``) or
    ``exponential`` (multiply by ``decay_rate`` every ``decay_epochs``)."""

    name: Literal["constant", "cosine", "step", "exponential"] = "cosine"
    warmup_epochs: float = 0.0
    final_fraction: float = 0.0  # cosine: the last rate as a fraction of the peak
    boundaries: tuple[float, ...] = ()  # step: epochs at which the rate drops
    decay_rate: float = 0.1  # step and exponential
    decay_epochs: float = 1.0  # exponential

    def __post_init__(self):
        _check(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "must be >= 0")
        _check(0 <= self.final_fraction <= 1, "final_fraction", self.final_fraction,
               "must be in [0, 1]")
        _check(list(self.boundaries) == sorted(self.boundaries) and
               all(b > 0 for b in self.boundaries), "boundaries", self.boundaries,
               "must be increasing epochs > 0")
        _check(0 < self.decay_rate <= 1, "decay_rate", self.decay_rate, "must be in (0, 1]")
        _check(self.decay_epochs > 0, "decay_epochs", self.decay_epochs, "must be > 0")
        _check(self.name != "step" or bool(self.boundaries), "boundaries", self.boundaries,
               "must list at least one epoch for the step schedule")


@dataclasses.dataclass(frozen=True)
class TransferOptions:
    """Start from another model and fine-tune it.

    The starting weights come from ``initial_model`` (a Model artifact directory or a Keras
    SavedModel) or, in a pipeline, from a Model artifact among the step's inputs. Layers are
    matched by name and shape, so a classifier head with another number of classes starts
    fresh. For ``freeze_backbone_epochs`` epochs only the layers outside the backbone train;
    then everything trains with the learning rate scaled by ``fine_tune_learning_rate_scale``.
    """

    initial_model: ExistingPath | None = None
    freeze_backbone_epochs: int = 0
    fine_tune_learning_rate_scale: float = 0.1

    def __post_init__(self):
        _check(self.freeze_backbone_epochs >= 0, "freeze_backbone_epochs",
               self.freeze_backbone_epochs, "must be >= 0")
        _check(0 < self.fine_tune_learning_rate_scale <= 1, "fine_tune_learning_rate_scale",
               self.fine_tune_learning_rate_scale, "must be in (0, 1]")


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything about one training run; see the module docstring for an example."""

    model: str = "mobilenet_v2"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    task: Literal["auto", "classification", "detection"] = "auto"  # auto: from the Examples
    epochs: int = 10
    batch_size: int = 64  # global: split over all replicas
    steps_per_epoch: int | None = None  # None: one pass over the training split
    validation_steps: int | None = None  # None: the whole validation split
    label_smoothing: float = 0.0  # Szegedy et al., "Rethinking the Inception...", 2016
    ema_decay: float | None = None  # evaluate and save an average of the weights
    # Detection: options of the detector's loss (edgeline.models.detector.LossSettings, e.g.
    # box_loss, focal_gamma) and of its decoding (score_threshold, iou_threshold, ...).
    loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    decoding: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    optimizer: OptimizerOptions = dataclasses.field(default_factory=OptimizerOptions)
    schedule: ScheduleOptions = dataclasses.field(default_factory=ScheduleOptions)
    transfer: TransferOptions = dataclasses.field(default_factory=TransferOptions)
    distribution: Literal["auto", "one_device", "mirrored", "multi_worker"] = "auto"
    mixed_precision: Literal["off", "auto", "mixed_float16", "mixed_bfloat16"] = "off"
    jit_compile: bool = False  # XLA
    # Keep the weights of the best epoch by this validation metric ("auto": val_top1 for
    # classifiers, val_loss for detectors); the artifact holds them.
    monitor: str = "auto"
    keep_best: bool = True
    box_map: bool = True  # detection: compute the COCO box mAP on the validation split at the end
    tensorboard: bool = True
    # auto: a bar with the live loss in a terminal and a line per epoch; bar; epoch: the
    # lines only (CI logs); off.
    progress: Literal["auto", "bar", "epoch", "off"] = "auto"

    def __post_init__(self):
        _check(bool(self.model.strip()), "model", self.model, "must name a registered model")
        # The network and its options are checked now, with the config, not when the step
        # starts after earlier steps have run (the registry's messages list what is known).
        from edgeline.models import registry

        registry.check(self.model, self.model_options)
        _check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch",
               self.steps_per_epoch, "must be >= 1 or null")
        _check(self.validation_steps is None or self.validation_steps >= 1, "validation_steps",
               self.validation_steps, "must be >= 1 or null")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing,
               "must be in [0, 1)")
        _check(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay", self.ema_decay,
               "must be in (0, 1) or null")
        _check(self.transfer.freeze_backbone_epochs <= self.epochs,
               "transfer.freeze_backbone_epochs", self.transfer.freeze_backbone_epochs,
               f"must be <= epochs ({self.epochs})")
        _check(self.monitor == "auto" or self.monitor.startswith("val_"), "monitor",
               self.monitor, "must be 'auto' or a validation metric such as val_top1")
