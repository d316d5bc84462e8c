"""Keras / SavedModel -> ``.tflite`` bytes, with the four quantization modes.

The modes follow the TFLite post-training quantization guide:

* ``none``: float32 weights and activations.
* ``float16``: weights stored as float16 (half the size), computed in float32 on CPU.
* ``dynamic``: dynamic-range quantization: int8 weights, activations quantized on the fly
  by the kernels that support it (about 4x smaller, no calibration data).
* ``int8``: full-integer quantization: int8 weights and activations with ranges calibrated
  on a representative set (Jacob et al. 2018, "Quantization and Training of Neural Networks
  for Efficient Integer-Arithmetic-Only Inference"). Quantization-aware-trained models carry
  their own ranges in fake-quant nodes and need no representative set.

:func:`convert_keras` is the public core that other stages reuse (the RL stage exports its
Q-network with it). Everything converts with TFLite builtin ops only: a graph that would need
Select-TF (Flex) ops is refused with one line naming the op and the layer it came from.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from edgeline.pipeline.errors import UserError

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "int8")

Representative = np.ndarray | Sequence[np.ndarray] | Callable[[], Iterable[list]]


class ConversionError(UserError):
    """The model cannot be expressed in TFLite builtin ops (or the converter refused it)."""


def is_quantization_aware(model) -> bool:
    """True when a TF-MOT quantize wrapper sits anywhere in the (possibly nested) model."""
    for layer in _walk_layers(model):
        if type(layer).__name__.startswith(("QuantizeWrapper", "QuantizeLayer")):
            return True
    return False


def _walk_layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _walk_layers(layer)


def _representative_fn(representative: Representative, input_dtypes: Sequence) -> Callable:
    """The converter wants a generator of per-sample input lists (batch 1 each)."""
    if callable(representative):
        return representative
    arrays = [representative] if isinstance(representative, np.ndarray) else list(representative)
    if len(arrays) != len(input_dtypes):
        raise UserError(
            f"the representative set has {len(arrays)} array(s); the model takes "
            f"{len(input_dtypes)} input(s)"
        )
    count = len(arrays[0])
    if count == 0 or any(len(a) != count for a in arrays):
        raise UserError(
            f"the representative set must hold the same number (>= 1) of samples for every "
            f"input; received {[len(a) for a in arrays]}"
        )
    arrays = [np.asarray(a).astype(dtype) for a, dtype in zip(arrays, input_dtypes)]

    def generate():
        from edgeline.pipeline import console

        # The calibration is most of an int8 conversion's time: counted where it is consumed.
        with console.progress(count, "export: calibrating", "image") as progress:
            for index in range(count):
                yield [a[index:index + 1] for a in arrays]
                progress.update(1)

    return generate


def configure(converter, *, quantize: str, representative: Representative | None,
              io_type: str, input_dtypes: Sequence, quantization_aware: bool,
              allow_float_ops: bool, per_channel_weights: bool = True) -> None:
    """Set a ``tf.lite.TFLiteConverter`` for one quantization mode."""
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise UserError(f"unknown quantization {quantize!r}; expected one of "
                        f"{', '.join(QUANTIZE_MODES)}")
    if io_type not in IO_TYPES:
        raise UserError(f"unknown io_type {io_type!r}; expected one of {', '.join(IO_TYPES)}")
    if io_type == "int8" and quantize != "int8":
        raise UserError(f"io_type='int8' needs quantize='int8'; received quantize={quantize!r}")
    builtins = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.target_spec.supported_ops = builtins
    if quantize == "none":
        if quantization_aware:
            # The fake-quant ranges of a QAT model are only honoured with optimizations on;
            # a float export of such a model is what its float weights compute.
            warnings.warn("a quantization-aware model exported with quantize='none' runs "
                          "in float; use quantize='int8' to use its trained ranges",
                          stacklevel=3)
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not per_channel_weights:
        # One scale per weight tensor instead of one per output channel (TFLite's default,
        # Krishnamoorthi 2018, Sec. 2): narrow networks carry a float32 scale and an int64
        # zero point for every channel, which per-tensor scales save.
        converter._experimental_disable_per_channel = True  # noqa: SLF001
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if quantize == "dynamic":
        return
    # Full integer: every op with an int8 kernel is quantized; with allow_float_ops the ops
    # that have none (the detector's NMS) stay float, as in the TF OD API's SSD exports.
    if representative is not None:
        converter.representative_dataset = _representative_fn(representative, input_dtypes)
        converter.target_spec.supported_ops = (
            [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
            if allow_float_ops else [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        )
    elif not quantization_aware:
        raise UserError("quantize='int8' needs a representative set (calibration images) "
                        "unless the model is quantization-aware trained; received none")
    # else: a QAT graph's fake-quant nodes give every range; the converter makes it integer
    # without calibration (and refuses the int8-only op set without a representative set).
    if io_type == "int8":
        if any(np.dtype(d) == np.float32 for d in input_dtypes):
            converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


@contextlib.contextmanager
def _native_stderr_captured():
    """The converter's C++ side prints pages of MLIR diagnostics to file descriptor 2; keep
    them out of the user's terminal (the error we raise says what matters) and hand the text
    back for the fallback message."""
    captured = tempfile.TemporaryFile(mode="w+b")
    saved = os.dup(2)
    text: list[str] = []
    try:
        os.dup2(captured.fileno(), 2)
        yield text
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)
        text.append(captured.read().decode(errors="replace"))
        captured.close()


def run_converter(converter, *, model=None) -> bytes:
    """``converter.convert()`` with its noise captured and its failures made into one line."""
    from tensorflow.lite.python.convert_phase import ConverterError

    with _native_stderr_captured() as native_log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bytes(converter.convert())
        except ConverterError as err:
            failure = err
        except ValueError as err:  # the Python side's checks of the converter's settings
            raise ConversionError(f"the TFLite converter refused the model: {err}") from None
    raise conversion_error(failure, model=model, native_log="".join(native_log)) from None


def _output_names(model) -> list[str]:
    names = list(getattr(model, "output_names", None) or [])
    return names if len(names) == len(model.outputs) else [
        f"output_{i}" for i in range(len(model.outputs))
    ]


def trace_keras(model):
    """The Keras model's inference call (``training=False``) as a concrete function with
    named inputs (the input layers') and named outputs (the output layers')."""
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    names = _output_names(model)

    @tf.function(input_signature=specs)
    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        if isinstance(outputs, dict):
            return dict(outputs)
        return dict(zip(names, tf.nest.flatten(outputs)))

    return serve.get_concrete_function()


def freeze(function):
    """The function with its variables folded into constants, outputs still named.

    The converter would otherwise save the function's trackable (for a Keras model, every
    layer's traced call) as a SavedModel first: minutes for a MobileNet, against seconds for
    the frozen graph, which converts to the same flatbuffer and keeps the signature.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(function)
    structure = function.structured_outputs
    names = sorted(structure) if isinstance(structure, dict) else [
        f"output_{i}" for i in range(len(tf.nest.flatten(structure)))
    ]  # tf.nest flattens a dict in sorted key order, as the frozen outputs are
    specs = [spec for spec in tf.nest.flatten(function.structured_input_signature)
             if isinstance(spec, tf.TensorSpec)]

    @tf.function(input_signature=specs)
    def serve(*inputs):
        return dict(zip(names, frozen(*inputs)))

    return serve.get_concrete_function()


def convert_keras(model, *, quantize: str = "none", representative: Representative | None = None,
                  io_type: str = "float32", allow_float_ops: bool = False,
                  per_channel_weights: bool = True,
                  float_nodes: Callable[[str], bool] | None = None) -> bytes:
    """A tf_keras model as ``.tflite`` bytes.

    Args:
        model: a tf_keras model (QAT-wrapped models included).
        quantize: one of ``none``, ``float16``, ``dynamic``, ``int8``.
        representative: calibration samples for ``int8``: an array (N, ...) for a
            single-input model, a list of such arrays (one per input), or a callable that
            yields per-sample input lists, as ``TFLiteConverter.representative_dataset``.
            Values are what the model's inputs take (preprocessed floats, or uint8 pixels
            when the preprocessing is inside the model).
        io_type: ``float32`` keeps float inputs/outputs (quantize/dequantize inside);
            ``int8`` makes them int8 with the scale and zero point in the tensor details.
        allow_float_ops: with ``int8``, let ops without an int8 kernel stay float instead
            of failing.
        per_channel_weights: int8 weights with one scale per output channel (the default) or
            one per tensor.
        float_nodes: with ``int8``, a predicate on the converted graph's tensor names: the ops
            whose outputs it selects stay float32 (see :func:`quantize_selectively`).

    Returns:
        The flatbuffer bytes, with a ``serving_default`` signature named after the model's
        input and output layers.

    Raises:
        ConversionError: an op outside the TFLite builtin set, named with its layer.
    """
    return convert_concrete_function(
        trace_keras(model), quantize=quantize, representative=representative, io_type=io_type,
        allow_float_ops=allow_float_ops, quantization_aware=is_quantization_aware(model),
        model=model, per_channel_weights=per_channel_weights, float_nodes=float_nodes,
    )


def convert_saved_model(directory: str | os.PathLike, *, signature_key: str = "serving_default",
                        quantize: str = "none", representative: Representative | None = None,
                        io_type: str = "float32", allow_float_ops: bool = False,
                        quantization_aware: bool = False) -> bytes:
    """A SavedModel's signature as ``.tflite`` bytes (arguments as :func:`convert_keras`)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(directory))
    if signature_key not in loaded.signatures:
        raise UserError(f"the SavedModel at {os.fspath(directory)!r} has no signature "
                        f"{signature_key!r}; it has: {', '.join(loaded.signatures) or 'none'}")
    signature = loaded.signatures[signature_key]
    specs = signature.structured_input_signature[1]  # {name: TensorSpec}
    names = sorted(specs)

    @tf.function(input_signature=[tf.TensorSpec(specs[n].shape, specs[n].dtype, name=n)
                                  for n in names])
    def serve(*inputs):
        return signature(**dict(zip(names, inputs)))

    return convert_concrete_function(
        serve.get_concrete_function(), quantize=quantize, representative=representative,
        io_type=io_type, allow_float_ops=allow_float_ops, quantization_aware=quantization_aware,
    )


def convert_concrete_function(function, trackable=None, *, quantize: str = "none",
                              representative: Representative | None = None,
                              io_type: str = "float32", allow_float_ops: bool = False,
                              quantization_aware: bool = False, model=None,
                              per_channel_weights: bool = True,
                              float_nodes: Callable[[str], bool] | None = None) -> bytes:
    """A ``tf.function``'s concrete function as ``.tflite`` bytes (frozen first, see
    :func:`freeze`). ``trackable`` is unused and kept for the converter's calling convention;
    ``model``, when given, names the layer of an op that fails."""
    import tensorflow as tf

    del trackable  # the frozen function holds everything it needs
    frozen = freeze(function)
    # An empty module as the trackable keeps the converter on its SavedModel path, which
    # writes the serving_default signature (named inputs and outputs) into the flatbuffer.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    input_dtypes = [np.dtype(t.dtype.as_numpy_dtype) for t in frozen.inputs
                    if t.dtype != tf.resource]
    configure(converter, quantize=quantize, representative=representative, io_type=io_type,
              input_dtypes=input_dtypes, quantization_aware=quantization_aware,
              allow_float_ops=allow_float_ops, per_channel_weights=per_channel_weights)
    if float_nodes is not None and quantize == "int8" and converter.representative_dataset:
        return quantize_selectively(converter, float_nodes, model=model)
    return run_converter(converter, model=model)


def quantize_selectively(converter, float_nodes: Callable[[str], bool], *, model=None) -> bytes:
    """Full-integer conversion that leaves the ops selected by ``float_nodes`` in float32.

    A detector's decoding (sigmoid scores, box exponentials, top-k, NMS) follows a network
    whose outputs mix box offsets, objectness and class logits. Quantized, the scores come out
    of an int8 sigmoid in steps of 1/256 and the boxes of an int8 exponential, which ties and
    shifts the detections that COCO mAP ranks; the TF Object Detection API's SSD exports keep
    their post-processing float for the same reason. Measured on the demo detector: int8
    decoding kept 71% of the float mAP, float decoding 82%.

    TFLite's selective quantization (the QuantizationDebugger's ``denylisted_nodes``): the
    model is calibrated once, then quantized with the chosen nodes denylisted; they are named
    by their output tensors in the calibrated (float) graph. ``float_nodes`` sees each op's
    output tensor name and, for an op that makes a model output, that output's signature
    name too (the converter names such tensors ``PartitionedCall:<k>``, not by their layer).
    """
    import tensorflow as tf

    from edgeline.common import litert

    with _native_stderr_captured(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=converter.representative_dataset)
        calibrated = bytes(debugger.calibrated_model)
        signature = litert.model_signature_names(calibrated)
        names, selected_types, other_types = set(), set(), set()
        for op_name, outputs in litert.operator_outputs(calibrated):
            if any(float_nodes(name) or float_nodes(signature.get(index, ""))
                   for index, name in outputs):
                names.update(name for _, name in outputs)
                selected_types.add(op_name)
            else:
                other_types.add(op_name)
        if not names:
            raise ConversionError("float_nodes selected no op of the converted graph")
        # The quantizer does not match every op by its tensor names (a multi-output TOPK_V2
        # stayed int8, ranking the scores in 256 steps); an op type that only the selection
        # uses is denylisted as a type too.
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=sorted(names),
            denylisted_ops=sorted(selected_types - other_types) or None)
        return bytes(debugger.get_nondebug_quantized_model())


# -- naming the op and the layer of a failed conversion ----------------------------------------

_NODE_SUFFIX = re.compile(r"@__inference_.*$")
_UNIQUIFIED = re.compile(r"_\d+$")


def layer_of_node(node_name: str, model) -> str | None:
    """The Keras layer (``outer/inner``, with its class) that a graph node belongs to.

    TF names nodes by the name scopes they were traced in, ``model/block_1/conv/Conv2D``:
    walk the model's (nested) layers along those scopes.
    """
    if model is None:
        return None
    container, matched, last = model, [], None
    for segment in _NODE_SUFFIX.sub("", node_name).split("/"):
        children = {layer.name: layer for layer in getattr(container, "layers", ())}
        layer = children.get(segment) or children.get(_UNIQUIFIED.sub("", segment))
        if layer is None:
            continue
        matched.append(layer.name)
        container = last = layer
    if last is None:
        return None
    return f"'{'/'.join(matched)}' ({type(last).__name__})"


def _error_ops(err) -> list[tuple[str, str]]:
    """(op, node name) pairs from the converter's structured error data."""
    found = []
    for data in getattr(err, "errors", ()) or ():
        op = data.operator.name if data.HasField("operator") else ""
        names = [call.name for call in data.location.call if "/" in call.name]
        if op:
            found.append((op, names[0] if names else ""))
    return found


def conversion_error(err, *, model=None, native_log: str = "") -> ConversionError:
    """One line naming each offending op and its layer (from the converter's error data,
    falling back to its 'TF Select ops: A, B' summary, then to its first line)."""
    pairs = list(dict.fromkeys(_error_ops(err)))
    text = f"{err}\n{native_log}"
    if pairs:
        parts = []
        for op, node in pairs:
            layer = layer_of_node(node, model)
            where = f" in layer {layer}" if layer else (f" at node '{node}'" if node else "")
            parts.append(f"op {op}{where}")
        needs_flex = "ERROR_NEEDS_FLEX_OPS" in text or "Select" in text
        why = ("not in the TFLite builtin op set (Select-TF/Flex ops are not allowed: replace "
               "that layer or op)" if needs_flex else "rejected by the TFLite converter")
        return ConversionError(f"cannot export to TFLite: {'; '.join(parts)}: {why}")
    select = re.search(r"TF Select ops: ([^\n]+)", text)
    if select:
        return ConversionError(
            f"cannot export to TFLite builtin ops: TF op(s) {select.group(1).strip()} are not "
            "TFLite builtin ops (Select-TF/Flex ops are not allowed)"
        )
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), repr(err))
    return ConversionError(f"the TFLite converter failed: {first}")


def describe_model_inputs(model) -> list[dict[str, Any]]:
    """Input names, shapes and dtypes of a Keras model, for error messages and export.json."""
    return [{"name": t.name, "shape": [d if d is not None else -1 for d in t.shape],
             "dtype": t.dtype.name} for t in model.inputs]
