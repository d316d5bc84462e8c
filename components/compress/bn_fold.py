"""Batch-normalization folding: an equivalent model with the BN layers merged into the layer
before them.

At inference a BatchNormalization layer is an affine map per channel (Ioffe & Szegedy, 2015,
Alg. 2, with the moving statistics). When it directly follows a linear layer
``y = W x + b`` the two compose into one linear layer (Jacob et al., "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018,
Sec. 3.2):

    s  = gamma / sqrt(var + eps)          per output channel
    W' = W * s                            (scales each output channel of the kernel)
    b' = (b - mean) * s + beta

The fold is exact in real arithmetic, so the folded model must reproduce the original's
outputs up to float32 rounding. Two hazards are handled by the arithmetic itself, not by
special cases: a channel whose moving variance is (near) zero stays finite because Keras keeps
``eps > 0``, and a negative ``gamma`` flips the sign of its channel's kernel, exactly as the BN
would flip its output (taking ``abs`` would be a sign error).

The model is rebuilt from its config without the folded BN layers (each consumer of a BN is
rewired to the layer before it, which gets ``use_bias=True``), so custom layers registered
with Keras serialization survive the rebuild. A BN that cannot be folded (it follows a
nonlinearity, an addition, a layer whose output is also used elsewhere, a shared layer) stays
and is reported with the reason.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)


@dataclasses.dataclass
class FoldReport:
    folded: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {bn, into}
    kept: list[dict[str, str]] = dataclasses.field(default_factory=list)  # {bn, reason}

    def to_json(self) -> dict[str, Any]:
        return {"folded": self.folded, "kept": self.kept}


def _foldable_kind(layer) -> str | None:
    """'conv', 'depthwise' or 'dense' for a layer whose kernel BN can scale, else None."""
    import tf_keras as keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if isinstance(layer, keras.layers.Conv2DTranspose):
        return None  # its kernel is (h, w, out, in): a different fold, not needed here
    if isinstance(layer, keras.layers.Conv2D):
        return "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def fold_weights(
    kind: str,
    kernel: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    moving_mean: np.ndarray,
    moving_variance: np.ndarray,
    epsilon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The folded (kernel, bias): W' = W * s, b' = (b - mean) * s + beta.

    Computed in float64 and cast back to the kernel's dtype, so the fold adds no rounding of
    its own beyond the final cast. ``gamma``/``beta`` are None for a BN with scale/center off.
    """
    channels = moving_mean.shape[0]
    gamma64 = np.ones(channels) if gamma is None else gamma.astype(np.float64)
    beta64 = np.zeros(channels) if beta is None else beta.astype(np.float64)
    bias64 = np.zeros(channels) if bias is None else bias.astype(np.float64)
    # s = gamma / sqrt(var + eps): eps > 0 keeps a zero-variance channel finite; the sign of
    # gamma is kept (a negative gamma mirrors its channel).
    scale = gamma64 / np.sqrt(moving_variance.astype(np.float64) + float(epsilon))  # (C,)
    kernel64 = kernel.astype(np.float64)
    if kind == "depthwise":
        # Depthwise kernel (kh, kw, C_in, M): output channel c_in * M + m is scaled by s[c].
        in_channels, multiplier = kernel.shape[2], kernel.shape[3]
        folded_kernel = kernel64 * scale.reshape(in_channels, multiplier)
    else:
        # Conv2D (kh, kw, C_in / groups, C_out) and Dense (C_in, C_out): output axis is last.
        folded_kernel = kernel64 * scale
    folded_bias = (bias64 - moving_mean.astype(np.float64)) * scale + beta64  # (C,)
    return folded_kernel.astype(kernel.dtype), folded_bias.astype(kernel.dtype)


def _bn_weights(bn) -> dict[str, np.ndarray | None]:
    values = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in bn.weights}
    return {
        "gamma": values.get("gamma"),
        "beta": values.get("beta"),
        "moving_mean": values["moving_mean"],
        "moving_variance": values["moving_variance"],
    }


def _is_ref(value: Any) -> bool:
    """A node reference in a functional config: [layer_name, node_index, tensor_index(, kw)]."""
    return (
        isinstance(value, list | tuple)
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _refs(value: Any):
    """Every node reference inside an inbound_nodes / output_layers structure."""
    if _is_ref(value):
        yield value
        if len(value) == 4:
            yield from _refs(value[3])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _refs(item)


def _rewire(value: Any, old: str, new: str) -> Any:
    """``value`` with every reference to layer ``old`` pointed at layer ``new``."""
    if _is_ref(value):
        rest = [_rewire(v, old, new) for v in value[3:]]
        return [new if value[0] == old else value[0], value[1], value[2], *rest]
    if isinstance(value, list | tuple):
        return [_rewire(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _rewire(v, old, new) for k, v in value.items()}
    return value


def _reason_not_foldable(bn, source, bn_entry, config) -> str | None:
    """Why ``bn`` cannot merge into ``source`` (None when it can)."""
    nodes = bn_entry["inbound_nodes"]
    if len(nodes) != 1 or len(list(_refs(nodes[0]))) != 1:
        return "the BN layer is shared (called more than once)"
    axis = bn.axis if isinstance(bn.axis, list | tuple) else [bn.axis]
    rank = len(bn.input_shape)
    if list(axis) != [rank - 1]:
        return f"BN normalizes axis {list(axis)}, not the channel axis {rank - 1}"
    if source is None:
        return "it follows the model input"
    kind = _foldable_kind(source)
    if kind is None:
        return f"it follows a {type(source).__name__}, not a Conv2D/DepthwiseConv2D/Dense"
    if getattr(source, "data_format", "channels_last") != "channels_last":
        return f"{source.name} is channels_first"
    activation = getattr(source.activation, "__name__", str(source.activation))
    if activation != "linear":
        return f"{source.name} applies '{activation}' before the BN"
    source_entry = next(e for e in config["layers"] if e["name"] == source.name)
    if len(source_entry["inbound_nodes"]) != 1:
        return f"{source.name} is shared (called more than once)"
    uses = [
        ref
        for entry in config["layers"]
        for ref in _refs(entry["inbound_nodes"])
        if ref[0] == source.name
    ] + [ref for ref in _refs(config["output_layers"]) if ref[0] == source.name]
    if len(uses) != 1:
        return f"the output of {source.name} is also used without the BN"
    return None


def fold_batch_norm(model) -> tuple[Any, FoldReport]:
    """A new model equal to ``model`` at inference, with every foldable BN merged away.

    ``model`` is a functional or Sequential tf_keras model; it is not modified.
    """
    import tf_keras as keras

    report = FoldReport()
    if isinstance(model, keras.Sequential):
        # A Sequential model is a chain; the functional rebuild below handles it, and the
        # result is returned as a functional model with the same layers and outputs.
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    elif not getattr(model, "_is_graph_network", False):
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                report.kept.append({"bn": layer.name, "reason": "the model is subclassed"})
        return model, report

    config = copy.deepcopy(model.get_config())
    layers = {layer.name: layer for layer in model.layers}
    new_weights: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(
            isinstance(sub, keras.layers.BatchNormalization) for sub in layer.submodules
        ):
            report.kept.append(
                {"bn": f"{layer.name}/*", "reason": "inside a nested model (not rebuilt)"}
            )
    for bn in [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]:
        bn_entry = next(e for e in config["layers"] if e["name"] == bn.name)
        refs = list(_refs(bn_entry["inbound_nodes"]))
        source = layers.get(refs[0][0]) if refs else None
        if isinstance(source, keras.layers.InputLayer):
            source = None
        reason = _reason_not_foldable(bn, source, bn_entry, config)
        if reason is not None:
            report.kept.append({"bn": bn.name, "reason": reason})
            continue
        kernel, bias = new_weights.get(source.name) or _kernel_and_bias(source)
        stats = _bn_weights(bn)
        new_weights[source.name] = list(
            fold_weights(
                _foldable_kind(source), kernel, bias, stats["gamma"], stats["beta"],
                stats["moving_mean"], stats["moving_variance"], bn.epsilon,
            )
        )
        source_entry = next(e for e in config["layers"] if e["name"] == source.name)
        source_entry["config"]["use_bias"] = True
        # Drop the BN and point its consumers at the layer before it.
        config["layers"] = [
            _rewire(e, bn.name, source.name) for e in config["layers"] if e is not bn_entry
        ]
        config["output_layers"] = _rewire(config["output_layers"], bn.name, source.name)
        report.folded.append({"bn": bn.name, "into": source.name})

    if not report.folded:
        return model, report
    folded = keras.Model.from_config(config)
    for layer in folded.layers:
        if layer.name in new_weights:
            layer.set_weights(new_weights[layer.name])
        else:
            layer.set_weights(layers[layer.name].get_weights())
    return folded, report


def _kernel_and_bias(layer) -> tuple[np.ndarray, np.ndarray | None]:
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    bias = layer.bias.numpy() if getattr(layer, "use_bias", False) else None
    return kernel.numpy(), bias
