"""The one registry of networks: a name maps to a builder function and a preset of its options.

    from edgeline import models
    models.names()                          # ['cnn', 'densenet121', ..., 'wide_resnet28_10']
    model = models.build("resnet50", num_classes=10, input_shape=(64, 64, 3))
    model = models.build("resnet110_cifar", final_survival_probability=0.8)

A builder is a function ``builder(*, num_classes, input_shape, name, **options)`` with explicit
keyword options: ``num_classes`` is the number of outputs (classes, or actions for a
Q-network), ``input_shape`` is ``(height, width, channels)`` without the batch dimension,
``name`` is the model's name, and the builder's docstring describes its options. A registered
name fixes some of them (its *preset*, e.g. ``depth=50``) and gives the default input shape
and number of classes. Options given to :func:`build` override the preset; an option the
builder does not take is refused with the list of those it takes.

Builders are referenced as ``"module:function"`` strings and imported on first build, so that
listing the registry (``edgeline models list``) does not import TensorFlow. Other modules add
their own networks with :func:`register` (a callable or a ``"module:function"`` string); the
optional modules in :data:`PLUGIN_MODULES` (e.g. ``edgeline.models.qnetworks``, the Q-networks
of the RL stage) are imported on the first lookup when they exist, so their ``register`` calls
run before any name is listed or built. A name is registered once: a second registration is
refused, as is an unknown name, which is answered with the list of known ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

PLUGIN_MODULES = ("edgeline.models.qnetworks",)

# Arguments that :func:`build` passes itself; everything else a builder takes is an option.
_BUILD_ARGUMENTS = ("num_classes", "input_shape", "name")


class UnknownModelError(ValueError):
    """A model name that is not registered; the message lists the registered names."""


class DuplicateModelError(ValueError):
    """A second registration under a name that is already taken."""


class ModelOptionError(ValueError):
    """An option that the model's builder does not take; the message lists those it takes."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one name.

    Attributes:
      name: the registered name.
      builder: the builder function, or ``"module:function"`` imported on first use.
      preset: options that this name fixes (they may still be overridden at build time).
      default_input_shape: input shape without the batch dimension, e.g. ``(224, 224, 3)``.
      default_num_classes: number of outputs (classes, or actions for a Q-network).
      task: ``"classification"``, ``"detection"`` or ``"q_network"``: what the outputs mean.
      description: one line for ``edgeline models list`` and for error messages.
      min_input_size: the smallest height/width the architecture takes (0: no spatial input).
    """

    name: str
    builder: Callable[..., Any] | str
    preset: Mapping[str, Any]
    default_input_shape: tuple[int | None, ...]
    default_num_classes: int
    task: str
    description: str
    min_input_size: int = 32

    def resolve_builder(self) -> Callable[..., Any]:
        if callable(self.builder):
            return self.builder
        module_name, _, attribute = self.builder.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def option_names(self) -> list[str]:
        """The options the builder takes (its keyword arguments other than num_classes,
        input_shape and name). A ``"module:function"`` builder is read from its module's
        source, not imported: checking a config's options must not cost a TensorFlow import."""
        if isinstance(self.builder, str):
            names = _parameter_names_from_source(self.builder)
            if names is not None:
                return [name for name in names if name not in _BUILD_ARGUMENTS]
        parameters = inspect.signature(self.resolve_builder()).parameters
        return [name for name in parameters if name not in _BUILD_ARGUMENTS]

    def default_options(self) -> dict[str, Any]:
        """Every option with the value it takes for this name: the builder's default, or the
        preset's value."""
        parameters = inspect.signature(self.resolve_builder()).parameters
        options = {
            name: parameter.default
            for name, parameter in parameters.items()
            if name not in _BUILD_ARGUMENTS and parameter.default is not inspect.Parameter.empty
        }
        options.update(self.preset)
        return options


def _parameter_names_from_source(builder: str) -> list[str] | None:
    """The parameter names of the top-level function ``"module:function"``, read from the
    module's source with :mod:`ast`; None when it cannot be found that way."""
    import ast

    module_name, _, function_name = builder.partition(":")
    module_spec = importlib.util.find_spec(module_name)
    if module_spec is None or not module_spec.origin or not module_spec.origin.endswith(".py"):
        return None
    with open(module_spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function_name:
            arguments = node.args
            return [a.arg for a in (*arguments.posonlyargs, *arguments.args,
                                    *arguments.kwonlyargs)]
    return None


_REGISTRY: dict[str, ModelSpec] = {}
_plugins_loaded = False


def register(
    name: str,
    builder: Callable[..., Any] | str,
    *,
    default_input_shape: tuple[int | None, ...],
    default_num_classes: int,
    task: str,
    description: str,
    preset: Mapping[str, Any] | None = None,
    min_input_size: int = 32,
) -> ModelSpec:
    """Registers ``name``; refuses a name that is already registered."""
    if not name or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(
            f"Received: name={name!r}; a model name is lower-case letters, digits and '_'"
        )
    if name in _REGISTRY:
        raise DuplicateModelError(
            f"Received: name={name!r}; a model named {name!r} is already registered "
            f"({_REGISTRY[name].description})"
        )
    if isinstance(builder, str) and ":" not in builder:
        raise ValueError(f"Received: builder={builder!r}; expected 'module:function'")
    spec = ModelSpec(
        name=name,
        builder=builder,
        preset=dict(preset or {}),
        default_input_shape=tuple(default_input_shape),
        default_num_classes=int(default_num_classes),
        task=task,
        description=description,
        min_input_size=int(min_input_size),
    )
    _REGISTRY[name] = spec
    return spec


def unregister(name: str) -> None:
    """Removes ``name`` (for tests and for plugins that replace their own entries)."""
    get(name)
    del _REGISTRY[name]


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module_name in PLUGIN_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            importlib.import_module(module_name)


def names(task: str | None = None) -> list[str]:
    """The registered names in alphabetical order, optionally only those of one task."""
    _load_plugins()
    return sorted(name for name, spec in _REGISTRY.items() if task in (None, spec.task))


def get(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; an unknown name raises :class:`UnknownModelError`."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"Received: model={name!r}; unknown model. Known models: {', '.join(names())}"
        ) from None


def check(name: str, options: Mapping[str, Any] = ()) -> ModelSpec:
    """What :func:`build` checks before it builds: ``name`` is registered and its builder
    takes every key of ``options``. Configs call it when they are loaded, so that a misspelt
    model or option stops a pipeline before its first step rather than when its step starts.
    It reads the builder's signature from its source: TensorFlow is not imported."""
    spec = get(name)
    accepted = spec.option_names()
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        received = ", ".join(f"{key}={options[key]!r}" for key in unknown)
        raise ModelOptionError(
            f"Received: {received}; model {name!r} takes the options: {', '.join(accepted)}"
        )
    return spec


def build(
    name: str,
    num_classes: int | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    **options: Any,
):
    """Builds the network registered as ``name``.

    Args:
      name: a registered name (see :func:`names`).
      num_classes: number of outputs; defaults to the name's default (1000 for ImageNet
        networks, 10 for CIFAR ones).
      input_shape: ``(height, width, channels)`` without the batch dimension; defaults to the
        name's default.
      **options: the builder's named options, overriding the name's preset.

    Returns:
      The model (a ``tf_keras.Model``; see the module docstring of each family for what its
      outputs mean).
    """
    spec = check(name, options)
    num_classes = spec.default_num_classes if num_classes is None else num_classes
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"Received: num_classes={num_classes}; num_classes must be >= 1")
    input_shape = spec.default_input_shape if input_shape is None else tuple(input_shape)
    _check_input_shape(spec, input_shape)
    merged = {**spec.preset, **options}
    return spec.resolve_builder()(
        num_classes=int(num_classes), input_shape=input_shape, name=name, **merged
    )


def _check_input_shape(spec: ModelSpec, input_shape: tuple[int | None, ...]) -> None:
    if len(input_shape) != len(spec.default_input_shape):
        raise ValueError(
            f"Received: input_shape={input_shape}; model {spec.name!r} takes inputs of rank "
            f"{len(spec.default_input_shape)}, e.g. {spec.default_input_shape}"
        )
    if spec.min_input_size and len(input_shape) == 3:
        for size in input_shape[:2]:
            if size is not None and size < spec.min_input_size:
                raise ValueError(
                    f"Received: input_shape={input_shape}; model {spec.name!r} needs a height "
                    f"and width of at least {spec.min_input_size}"
                )


# The networks written in this package. Each family's module docstring cites its paper.
_IMAGENET = (224, 224, 3)
_CIFAR = (32, 32, 3)

# ResNet depth -> (block type, blocks per stage): He et al. (2016), Table 1. The deeper ones
# are a ``blocks_per_stage`` away: (3, 4, 23, 3) is ResNet-101, (3, 8, 36, 3) ResNet-152.
_RESNET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}
for _depth, (_block, _blocks) in _RESNET_STAGES.items():
    register(
        f"resnet{_depth}",
        "edgeline.models.resnet:resnet",
        preset={"block_type": _block, "blocks_per_stage": _blocks},
        default_input_shape=_IMAGENET,
        default_num_classes=1000,
        task="classification",
        description=f"ResNet-{_depth} v1, ImageNet stem (He et al., 2016)",
    )
register(
    "resnet50_v2",
    "edgeline.models.resnet:resnet",
    preset={"block_type": "bottleneck", "blocks_per_stage": (3, 4, 6, 3), "version": 2},
    default_input_shape=_IMAGENET,
    default_num_classes=1000,
    task="classification",
    description="ResNet-50 v2, pre-activation ordering (He et al., 2016b)",
)
# CIFAR ResNets (He et al., 2016, Sec. 4.2): depth 6n + 2, n basic blocks in each of three
# stages of widths 16, 32, 64, parameter-free zero-padding shortcuts.
_CIFAR_RESNET = {
    "stem": "cifar",
    "block_type": "basic",
    "stage_widths": (16, 32, 64),
    "shortcut": "zero_pad",
}
register(
    "resnet20_cifar",
    "edgeline.models.resnet:resnet",
    preset={**_CIFAR_RESNET, "blocks_per_stage": (3, 3, 3)},
    default_input_shape=_CIFAR,
    default_num_classes=10,
    task="classification",
    description="ResNet-20 for CIFAR, zero-padding shortcuts (He et al., 2016, Sec. 4.2)",
)
register(
    "resnet110_cifar",
    "edgeline.models.resnet:resnet",
    preset={
        **_CIFAR_RESNET,
        "blocks_per_stage": (18, 18, 18),
        "final_survival_probability": 0.5,
        "survival_rule": "linear",
    },
    default_input_shape=_CIFAR,
    default_num_classes=10,
    task="classification",
    description="ResNet-110 for CIFAR with stochastic depth, p_L=0.5 (Huang et al., 2016)",
)
# WRN-d-k (Zagoruyko & Komodakis, 2016, Table 1): pre-activation basic blocks, n = (d - 4) / 6
# per stage, widths 16k, 32k, 64k after a 16-channel stem, projection shortcuts.
for _depth, _width in ((16, 4), (28, 10)):
    register(
        f"wide_resnet{_depth}_{_width}",
        "edgeline.models.resnet:resnet",
        preset={
            "stem": "cifar",
            "version": 2,
            "block_type": "basic",
            "stage_widths": (16, 32, 64),
            "width_factor": _width,
            "blocks_per_stage": ((_depth - 4) // 6,) * 3,
        },
        default_input_shape=_CIFAR,
        default_num_classes=10,
        task="classification",
        description=f"WRN-{_depth}-{_width} (Zagoruyko & Komodakis, 2016)",
    )
register(
    "mobilenet_v1",
    "edgeline.models.mobilenet:mobilenet_v1",
    default_input_shape=_IMAGENET,
    default_num_classes=1000,
    task="classification",
    description="MobileNet v1, depthwise separable convolutions (Howard et al., 2017)",
)
register(
    "mobilenet_v2",
    "edgeline.models.mobilenet:mobilenet_v2",
    default_input_shape=_IMAGENET,
    default_num_classes=1000,
    task="classification",
    description="MobileNet v2, inverted residuals and linear bottlenecks (Sandler et al., 2018)",
)
for _version in ("1_0", "1_1"):
    register(
        f"squeezenet{_version}",
        "edgeline.models.squeezenet:squeezenet",
        preset={"version": _version.replace("_", ".")},
        default_input_shape=_IMAGENET,
        default_num_classes=1000,
        task="classification",
        description=f"SqueezeNet {_version.replace('_', '.')}, fire modules (Iandola et al., 2016)",
    )
# DenseNet-BC for ImageNet (Huang et al., 2017, Table 1): growth rate 32, four dense blocks.
# DenseNet-169 and -201 are blocks_per_stage=(6, 12, 32, 32) and (6, 12, 48, 32).
register(
    "densenet121",
    "edgeline.models.densenet:densenet",
    preset={"blocks_per_stage": (6, 12, 24, 16)},
    default_input_shape=_IMAGENET,
    default_num_classes=1000,
    task="classification",
    description="DenseNet-121 (DenseNet-BC, ImageNet; Huang et al., 2017)",
)
# DenseNet-BC (L=100, k=12) for CIFAR: three blocks of (100 - 4) / 6 = 16 bottleneck layers.
register(
    "densenet_bc100_cifar",
    "edgeline.models.densenet:densenet",
    preset={"blocks_per_stage": (16, 16, 16), "growth_rate": 12, "stem": "cifar"},
    default_input_shape=_CIFAR,
    default_num_classes=10,
    task="classification",
    description="DenseNet-BC (L=100, k=12) for CIFAR (Huang et al., 2017)",
)
register(
    "mobilenet_v2_detector",
    "edgeline.models.detector:build_detector",
    default_input_shape=(128, 128, 3),
    default_num_classes=80,
    task="detection",
    description="single-stage detector: MobileNet v2 + small FPN + box/objectness/class head",
)
register(
    "cnn",
    "edgeline.models.cnn:cnn",
    default_input_shape=_CIFAR,
    default_num_classes=10,
    task="classification",
    description="a small plain CNN (conv-BN-ReLU-pool stages) for tests and quick runs",
    min_input_size=8,
)
