"""Options of the compress stage: the ``compress`` step of a pipeline file.

A recipe chains methods; each takes a model and gives a new one, fine-tuned on the training
split. The Deep Compression order (Han, Mao & Dally, ICLR 2016) is prune -> cluster -> QAT::

    compress:
      stage: compress
      inputs: [train, images]          # a Model artifact and the Examples it was trained on
      steps:
        - {method: bn_fold}
        - {method: prune, prune: {target_sparsity: 0.8}}
        - {method: cluster, cluster: {number_of_clusters: 16}}
        - {method: qat}
      fine_tune: {epochs: 2, learning_rate: 1.0e-4}

Frontier mode runs several recipes and reports accuracy against size and latency, marking the
smallest model within ``frontier.accuracy_budget`` points of the original::

    frontier:
      stage: compress
      inputs: [train, images]
      mode: frontier
      recipes:
        int8: {steps: [], quantize: int8}
        prune80_cluster16_qat:
          steps: [{method: prune}, {method: cluster}, {method: qat}]
      frontier: {accuracy_budget: 1.0}

No TensorFlow here: the config is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from edgeline.components.train import AugmentationOptions

METHODS = ("bn_fold", "prune", "cluster", "qat", "distill")
Method = Literal["bn_fold", "prune", "cluster", "qat", "distill"]
TfliteQuantize = Literal["auto", "none", "float16", "dynamic", "int8"]


def _check(condition: bool, name: str, value: Any, rule: str) -> None:
    if not condition:
        raise ValueError(f"Received: {name}={value!r}; {name} {rule}")


@dataclasses.dataclass(frozen=True)
class LayerSelection:
    """Which layers a method wraps. Patterns are shell-style (``fnmatch``) on layer names.

    The first convolution and the classifier are the layers that pruning hurts most (the
    SqueezeNet authors' sensitivity analysis, Iandola et al., 2016, Sec. 4.1, and Han et al.,
    2015, Fig. 6: the first conv layer is the most sensitive), so pruning leaves them dense by
    default.
    """

    exclude_first_conv: bool = False
    exclude_classifier: bool = False
    exclude_layers: tuple[str, ...] = ()
    only_layers: tuple[str, ...] = ()  # empty: every supported layer


@dataclasses.dataclass(frozen=True)
class FineTuneOptions:
    """The fine-tuning that follows each method (and trains the student in distillation)."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4  # Adam; small, because the weights are already trained
    steps_per_epoch: int | None = None  # None: one pass over the training split
    # The train stage's augmentation (its defaults): fine-tuning sees the data as training did.
    augmentation: AugmentationOptions = dataclasses.field(default_factory=AugmentationOptions)

    def __post_init__(self):
        _check(self.epochs >= 0, "epochs", self.epochs, "must be >= 0")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        _check(self.steps_per_epoch is None or self.steps_per_epoch >= 1, "steps_per_epoch",
               self.steps_per_epoch, "must be >= 1 or null")


@dataclasses.dataclass(frozen=True)
class PruneLayerSelection(LayerSelection):
    """Pruning's selection: the first convolution and the classifier stay dense unless the
    config says otherwise (its own class, so that a partial ``layers`` block keeps them)."""

    exclude_first_conv: bool = True
    exclude_classifier: bool = True


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """Magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017; TF-MOT
    ``prune_low_magnitude``).

    ``polynomial_decay`` raises the sparsity from ``initial_sparsity`` to ``target_sparsity``
    along Zhu & Gupta's cubic schedule over the first ``ramp_fraction`` of the fine-tuning
    steps, then trains at the target so the network recovers; ``constant`` prunes to the
    target at once. ``structure: "2:4"`` keeps the 2 largest of every 4 consecutive weights
    along the input-channel axis (the NVIDIA Ampere / XNNPack pattern, 50% sparsity), in which
    case ``target_sparsity`` is not used.
    """

    target_sparsity: float = 0.8
    schedule: Literal["polynomial_decay", "constant"] = "polynomial_decay"
    initial_sparsity: float = 0.0
    ramp_fraction: float = 0.6
    pruning_frequency: int | None = None  # steps between mask updates; None: ~16 updates
    structure: Literal["unstructured", "2:4"] = "unstructured"
    layers: PruneLayerSelection = dataclasses.field(default_factory=PruneLayerSelection)

    def __post_init__(self):
        _check(0.0 < self.target_sparsity < 1.0, "target_sparsity", self.target_sparsity,
               "must be in (0, 1)")
        _check(0.0 <= self.initial_sparsity <= self.target_sparsity, "initial_sparsity",
               self.initial_sparsity, f"must be in [0, target_sparsity={self.target_sparsity}]")
        _check(0.0 < self.ramp_fraction <= 1.0, "ramp_fraction", self.ramp_fraction,
               "must be in (0, 1]")
        _check(self.pruning_frequency is None or self.pruning_frequency >= 1,
               "pruning_frequency", self.pruning_frequency, "must be >= 1 or null")


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
    """Weight clustering (TF-MOT ``cluster_weights``): each kernel keeps
    ``number_of_clusters`` distinct values, the centroids fine-tuned with the network: the
    "trained quantization and weight sharing" step of Deep Compression (Han et al., 2016,
    Sec. 3). With ``preserve_sparsity`` the zeros of an earlier pruning step stay zeros."""

    number_of_clusters: int = 16
    centroid_initialization: Literal["kmeans++", "linear", "density-based", "random"] = (
        "kmeans++"
    )
    preserve_sparsity: bool = True
    layers: LayerSelection = dataclasses.field(default_factory=LayerSelection)

    def __post_init__(self):
        _check(self.number_of_clusters >= 2, "number_of_clusters", self.number_of_clusters,
               "must be >= 2")


@dataclasses.dataclass(frozen=True)
class QatOptions:
    """Quantization-aware training (Jacob et al., CVPR 2018; TF-MOT ``quantize_model``).

    ``preserve`` chooses the collaborative scheme: ``auto`` looks at the model (sparse kernels
    -> pruning-preserving, few distinct values -> cluster-preserving, both -> both), so that
    QAT after pruning or clustering does not undo them; ``layers.only_layers`` quantizes a
    subset (``quantize_annotate_layer``).
    """

    preserve: Literal["auto", "none", "sparsity", "clusters", "sparsity_and_clusters"] = "auto"
    layers: LayerSelection = dataclasses.field(default_factory=LayerSelection)


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    """Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
    Network", 2015): the input model is the teacher; the student is a registry model trained
    from scratch on ``alpha * CE(y, student) + (1 - alpha) * T^2 * KL(teacher_T || student_T)``
    with both distributions softened at temperature ``T``."""

    student: str = "cnn"
    student_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    temperature: float = 4.0
    alpha: float = 0.1
    epochs: int = 10
    learning_rate: float = 1e-3

    def __post_init__(self):
        _check(bool(self.student.strip()), "student", self.student,
               "must name a registered model")
        from edgeline.models import registry  # checked with the config (no TensorFlow)

        registry.check(self.student, self.student_options)
        _check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        _check(0.0 <= self.alpha <= 1.0, "alpha", self.alpha, "must be in [0, 1]")
        _check(self.epochs >= 1, "epochs", self.epochs, "must be >= 1")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")


@dataclasses.dataclass(frozen=True)
class CompressStep:
    """One method of a recipe, with its own options (only the method's own block is read)."""

    method: Method
    prune: PruneOptions = dataclasses.field(default_factory=PruneOptions)
    cluster: ClusterOptions = dataclasses.field(default_factory=ClusterOptions)
    qat: QatOptions = dataclasses.field(default_factory=QatOptions)
    distill: DistillOptions = dataclasses.field(default_factory=DistillOptions)
    fine_tune: FineTuneOptions | None = None  # None: the stage's fine_tune


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Steps in order, then how the result becomes a ``.tflite`` for the frontier: ``auto``
    gives int8 to a quantization-aware model and float32 to the others."""

    steps: tuple[CompressStep, ...] = ()
    quantize: TfliteQuantize = "auto"


@dataclasses.dataclass(frozen=True)
class FrontierOptions:
    """How frontier mode measures and chooses.

    The chosen model is the one with the smallest gzip-compressed TFLite file among those whose
    accuracy (top-1 for classifiers, box mAP for detectors, measured on the TFLite model) is at
    most ``accuracy_budget`` points below the original's float TFLite.
    """

    accuracy_budget: float = 1.0  # percentage points
    evaluation_images: int | None = None  # None: the whole validation split
    calibration_images: int = 100  # representative set for post-training int8
    latency_runs: int = 50
    # The frontier's files are what ships: uint8 pixels in and the normalization inside, as
    # the export steps of the configs write them, so each loads in MediaPipe Tasks (which
    # applies no per-channel normalization to a float input) and is measured as it ships.
    include_preprocessing: bool = True

    def __post_init__(self):
        _check(self.accuracy_budget >= 0, "accuracy_budget", self.accuracy_budget,
               "must be >= 0")
        _check(self.evaluation_images is None or self.evaluation_images >= 1,
               "evaluation_images", self.evaluation_images, "must be >= 1 or null")
        _check(self.calibration_images >= 1, "calibration_images", self.calibration_images,
               "must be >= 1")
        _check(self.latency_runs >= 1, "latency_runs", self.latency_runs, "must be >= 1")


def check_order(name: str, steps: tuple[CompressStep, ...]) -> None:
    """distill only first (it trains a new network from the teacher); qat only last (its
    fake-quant wrappers are what the int8 converter reads; nothing can wrap them again)."""
    methods = [step.method for step in steps]
    _check("distill" not in methods[1:], name, methods, "may hold distill only as the first step")
    _check("qat" not in methods[:-1], name, methods, "may hold qat only as the last step")


def default_recipes() -> dict[str, Recipe]:
    """The recipes a frontier run compares when the config names none."""
    prune80 = CompressStep(method="prune", prune=PruneOptions(target_sparsity=0.8))
    return {
        "float": Recipe(steps=(), quantize="none"),
        "ptq_int8": Recipe(steps=(), quantize="int8"),
        "bn_fold_qat": Recipe(steps=(CompressStep(method="bn_fold"), CompressStep(method="qat"))),
        "prune50": Recipe(steps=(CompressStep(method="prune",
                                              prune=PruneOptions(target_sparsity=0.5)),)),
        "prune80": Recipe(steps=(prune80,)),
        "prune80_cluster16_qat": Recipe(steps=(
            CompressStep(method="bn_fold"), prune80, CompressStep(method="cluster"),
            CompressStep(method="qat"),
        )),
    }


@dataclasses.dataclass(frozen=True)
class CompressOptions:
    """The compress step; see the module docstring for examples."""

    mode: Literal["recipe", "frontier"] = "recipe"
    steps: tuple[CompressStep, ...] = ()  # recipe mode
    recipes: dict[str, Recipe] = dataclasses.field(default_factory=dict)  # frontier mode
    fine_tune: FineTuneOptions = dataclasses.field(default_factory=FineTuneOptions)
    frontier: FrontierOptions = dataclasses.field(default_factory=FrontierOptions)
    evaluation_images: int | None = None  # recipe mode: None evaluates the whole split

    def __post_init__(self):
        _check(self.mode == "frontier" or bool(self.steps), "steps", self.steps,
               "must list at least one method in recipe mode")
        _check(self.mode == "recipe" or not self.steps, "steps", self.steps,
               "belong to recipe mode; in frontier mode use recipes")
        for name in self.recipes:
            _check(name.replace("_", "").replace("-", "").isalnum(), "recipes", name,
                   "names must be letters, digits, '_' or '-'")
        _check(self.evaluation_images is None or self.evaluation_images >= 1,
               "evaluation_images", self.evaluation_images, "must be >= 1 or null")
        check_order("steps", self.steps)
        for name, recipe in self.recipes.items():
            check_order(f"recipes.{name}.steps", recipe.steps)

    def resolved_recipes(self) -> dict[str, Recipe]:
        return dict(self.recipes) if self.recipes else default_recipes()


@dataclasses.dataclass(frozen=True)
class CompressFrontierOptions(CompressOptions):
    """The ``compress_frontier`` stage: :class:`CompressOptions` in frontier mode."""

    mode: Literal["frontier"] = "frontier"
