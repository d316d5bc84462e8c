"""Which layers of a model a compression method wraps, and why the others are left out.

Every method goes layer by layer (never the whole-model helpers of TF-MOT, which raise on the
first layer they cannot wrap), so a custom or unsupported layer is left as it is with a reason
in the report instead of stopping the run.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from typing import Any

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

# Weights that hold a layer's "connections" (what pruning and clustering act on).
KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


@dataclasses.dataclass
class Selection:
    """The outcome of choosing layers: names to wrap, and {layer: reason} for the rest that
    hold weights."""

    wrap: list[str] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"wrapped": list(self.wrap), "skipped": dict(self.skipped)}


def kernels(layer) -> list:
    """The kernel-like variables of ``layer`` (not biases, BN statistics or masks)."""
    found = []
    for weight in layer.weights:
        short = weight.name.split("/")[-1].split(":")[0]
        if short in KERNEL_NAMES:
            found.append(weight)
    return found


def is_conv(layer) -> bool:
    import tf_keras as keras

    return isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D
                      | keras.layers.SeparableConv2D)


def first_conv_name(model) -> str | None:
    """The first convolution in topological order (the layer that sees the pixels)."""
    for layer in model.layers:
        if is_conv(layer):
            return layer.name
    return None


def classifier_names(model) -> set[str]:
    """The last layers with a kernel before the model outputs: the classifier, or each head
    of a detector whose outputs are reshaped and concatenated. Found by walking back from
    every output through weightless layers (softmax, reshape, concatenate, ...)."""
    names = set()
    pending = [output._keras_history.layer for output in model.outputs]
    seen = set()
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if kernels(layer):
            names.add(layer.name)
            continue
        for node in layer._inbound_nodes:
            inbound = node.inbound_layers
            pending.extend(inbound if isinstance(inbound, list) else [inbound])
    return names


def select_layers(model, layers, supports: Callable[[Any], str | None]) -> Selection:
    """Layers to wrap under the options ``layers`` (a :class:`LayerSelection`).

    ``supports(layer)`` returns None when the method can wrap the layer, else the reason it
    cannot. Layers without weights are neither wrapped nor reported.
    """
    import tf_keras as keras

    selection = Selection()
    first_conv = first_conv_name(model) if layers.exclude_first_conv else None
    classifiers = classifier_names(model) if layers.exclude_classifier else set()
    for layer in model.layers:
        if not layer.weights or isinstance(layer, keras.layers.InputLayer):
            continue
        name = layer.name
        if isinstance(layer, keras.Model):
            selection.skipped[name] = "a nested model (its layers are not wrapped)"
        elif layers.only_layers and not any(fnmatch.fnmatch(name, p) for p in layers.only_layers):
            selection.skipped[name] = "not in only_layers"
        elif any(fnmatch.fnmatch(name, p) for p in layers.exclude_layers):
            selection.skipped[name] = "excluded by exclude_layers"
        elif name == first_conv:
            selection.skipped[name] = "the first convolution (exclude_first_conv)"
        elif name in classifiers:
            selection.skipped[name] = "the classifier (exclude_classifier)"
        elif (reason := supports(layer)) is not None:
            selection.skipped[name] = reason
        else:
            selection.wrap.append(name)
    return selection


def copy_model(model):
    """An independent copy (same architecture, same weights), so wrapping and fine-tuning
    never change the caller's model."""
    import tf_keras as keras

    copied = keras.models.clone_model(model)
    copied.set_weights(model.get_weights())
    return copied


def wrap_layers(model, names: list[str], wrap: Callable[[Any], Any]):
    """A copy of ``model`` with each layer named in ``names`` replaced by ``wrap(layer)``.

    The copy is made first, so the wrappers hold the copy's variables and the caller's model
    stays as it was.
    """
    import tf_keras as keras

    copied = copy_model(model)
    chosen = set(names)

    def clone(layer):
        return wrap(layer) if layer.name in chosen else layer

    return keras.models.clone_model(copied, clone_function=clone)
