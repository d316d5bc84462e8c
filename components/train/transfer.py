"""Transfer learning: reading a starting model's weights, copying those that match by name
and shape, and telling a network's backbone (frozen in a frozen-backbone phase) from its head.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.models import io as model_io
from edgeline.pipeline.errors import UserError


def leaf_layers(model, prefix: str = ""):
    """(path, layer) of every layer, descending into nested models ("backbone/conv1")."""
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer, prefix=f"{path}/")
        else:
            yield path, layer


def _ancestors(layers) -> list:
    """Every layer that feeds ``layers`` in the functional graph (not the layers themselves)."""
    found: dict[int, Any] = {}
    stack = list(layers)
    while stack:
        layer = stack.pop()
        for node in layer._inbound_nodes:
            parents = node.inbound_layers
            for parent in parents if isinstance(parents, list | tuple) else [parents]:
                if id(parent) not in found:
                    found[id(parent)] = parent
                    stack.append(parent)
    return list(found.values())


def backbone_layers(model) -> list:
    """The layers frozen in a frozen-backbone phase: everything that feeds the head.

    For a detector with a feature pyramid, the layers feeding its lateral projections
    (``fpn_lateral*``); for a classifier, those feeding its global pooling (``global_pool``);
    a model whose layers are named ``backbone...`` says which they are.
    """
    named = [layer for layer in model.layers if layer.name.startswith("backbone")]
    if named:
        return named
    heads = [layer for layer in model.layers if layer.name.startswith("fpn_lateral")]
    heads = heads or [layer for layer in model.layers if layer.name == "global_pool"]
    if not heads:
        raise UserError(
            f"transfer.freeze_backbone_epochs: cannot tell the backbone of {model.name!r} (no "
            "'global_pool', 'fpn_lateral*' or 'backbone*' layer)"
        )
    return [layer for layer in _ancestors(heads) if layer.weights]


def load_source_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Variable name -> value of a Model artifact (its Keras model) or of any SavedModel with
    a ``serving_default`` signature (the variables that signature reads)."""
    path = Path(path)
    if model_io.is_model_dir(path):
        try:
            source = model_io.load_model_dir(path).load_keras()
        except model_io.ModelDirError as err:
            raise UserError(f"transfer.initial_model: {err}") from None
        weights = {v.name: v.numpy() for v in source.variables}
        del source
        return weights
    if (path / "saved_model.pb").is_file():
        try:
            loaded = tf.saved_model.load(str(path))
            signature = loaded.signatures["serving_default"]
        except (KeyError, OSError, ValueError) as err:
            raise UserError(
                f"transfer.initial_model: cannot read the serving_default signature of the "
                f"SavedModel {str(path)!r} ({type(err).__name__})"
            ) from None
        return {v.name: v.numpy() for v in signature.variables}
    raise UserError(
        f"transfer.initial_model: {str(path)!r} is neither a Model artifact (model.keras) "
        "nor a SavedModel (saved_model.pb)"
    )


def transfer_weights(model, source: dict[str, np.ndarray]) -> tuple[int, int]:
    """Copies every variable whose name and shape match (a classifier head with another
    number of classes keeps its fresh initialization); returns (copied, total)."""
    copied = 0
    for variable in model.variables:
        value = source.get(variable.name)
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            copied += 1
    return copied, len(model.variables)

