"""Running a ``.tflite`` file in LiteRT, the runtime that phones use.

:class:`LiteRTModel` wraps ``ai_edge_litert.interpreter.Interpreter``: it quantizes float
inputs for int8/uint8 inputs and dequantizes int8/uint8 outputs with each tensor's own
``(scale, zero_point)`` (real = scale * (q - zero_point), the TFLite quantization spec), runs
batches by resizing the batch dimension where the model allows it, and measures latency as the
median of repeated invocations after warm-up. :func:`operator_names` reads the op codes straight
from the flatbuffer, so a Flex (Select-TF) or custom op cannot hide behind a delegate.
"""

from __future__ import annotations

import collections
import os
import statistics
import time
from collections.abc import Sequence

import numpy as np

from edgeline.components.evaluate.predictors import dequantize, quantize

# Float outputs of integer tensors: int8 in [-128, 127], uint8 in [0, 255].
_INTEGER_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255),
                  np.dtype(np.int16): (-32768, 32767)}


def all_threads() -> int:
    """The thread count that "all threads" means in latency figures: every core we may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _signature_names(interpreter) -> dict[int, str]:
    """Tensor index -> its name in the first signature (``pixels``, ``probabilities``):
    the names an app's signature runner uses, unlike the converter's tensor names."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    names = {}
    for details in (runner.get_input_details(), runner.get_output_details()):
        names.update({detail["index"]: name for name, detail in details.items()})
    return names


def _tensor_spec(detail: dict, signature_names: dict[int, str]) -> dict:
    """One input/output detail as JSON-able data (names, shape, dtype, quantization)."""
    scale, zero_point = detail["quantization"]
    params = detail.get("quantization_parameters", {})
    per_channel = len(params.get("scales", ())) > 1
    return {
        "name": detail["name"],
        "signature_name": signature_names.get(int(detail["index"])),
        "index": int(detail["index"]),
        "shape": [int(d) for d in detail["shape"]],
        "shape_signature": [int(d) for d in detail.get("shape_signature", detail["shape"])],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": (
            {"scale": float(scale), "zero_point": int(zero_point), "per_channel": per_channel}
            if scale != 0.0
            else None
        ),
    }


class LiteRTModel:
    """A ``.tflite`` model in the LiteRT interpreter.

    Args:
        model_content: the flatbuffer bytes.
        num_threads: CPU threads the interpreter (and its XNNPACK delegate) may use.
    """

    def __init__(self, model_content: bytes, *, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        if num_threads < 1:
            raise ValueError(f"Received: num_threads={num_threads}; num_threads must be >= 1")
        self.model_content = bytes(model_content)
        self.num_threads = num_threads
        self._interpreter = Interpreter(model_content=self.model_content,
                                        num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._batch = 1

    @property
    def input_details(self) -> list[dict]:
        names = _signature_names(self._interpreter)
        return [_tensor_spec(d, names) for d in self._interpreter.get_input_details()]

    @property
    def output_details(self) -> list[dict]:
        names = _signature_names(self._interpreter)
        return [_tensor_spec(d, names) for d in self._interpreter.get_output_details()]

    @property
    def batchable(self) -> bool:
        """True when every input has a free batch dimension (shape_signature[0] == -1)."""
        return all(d["shape_signature"][:1] == [-1] for d in self.input_details)

    def _resize_batch(self, batch: int) -> None:
        if batch == self._batch:
            return
        for detail in self._interpreter.get_input_details():
            shape = list(detail["shape"])
            shape[0] = batch
            self._interpreter.resize_tensor_input(detail["index"], shape, strict=False)
        self._interpreter.allocate_tensors()
        self._batch = batch

    def _set_input(self, detail: dict, values: np.ndarray) -> None:
        dtype = np.dtype(detail["dtype"])
        scale, zero_point = detail["quantization"]
        values = np.asarray(values)
        if dtype in _INTEGER_RANGE and scale != 0.0 and values.dtype != dtype:
            values = quantize(values, scale=scale, zero_point=zero_point, dtype=dtype)
        elif values.dtype != dtype:
            if dtype in _INTEGER_RANGE and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(
                    f"input {detail['name']!r} takes {dtype.name} values (no quantization "
                    f"parameters to convert floats with); received {values.dtype.name}"
                )
            values = values.astype(dtype)
        self._interpreter.set_tensor(detail["index"], values)

    def _get_output(self, detail: dict, raw: bool) -> np.ndarray:
        values = self._interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if not raw and np.dtype(detail["dtype"]) in _INTEGER_RANGE and scale != 0.0:
            return dequantize(values, scale=scale, zero_point=zero_point)
        return np.array(values)  # a copy: the interpreter reuses its buffers

    def invoke(self, *inputs: np.ndarray, raw: bool = False) -> list[np.ndarray]:
        """One call on one batch, as the model's inputs are shaped (after a batch resize)."""
        details = self._interpreter.get_input_details()
        if len(inputs) != len(details):
            raise ValueError(f"the model takes {len(details)} input(s); received {len(inputs)}")
        self._resize_batch(int(np.shape(inputs[0])[0]))
        for detail, values in zip(details, inputs):
            self._set_input(detail, values)
        self._interpreter.invoke()
        return [self._get_output(d, raw) for d in self._interpreter.get_output_details()]

    def predict(self, *inputs: np.ndarray, batch_size: int = 32, raw: bool = False
                ) -> list[np.ndarray]:
        """Run on N examples (first axis), ``batch_size`` at a time when the model allows
        a free batch dimension, else one at a time. Outputs are stacked along axis 0."""
        count = int(np.shape(inputs[0])[0])
        step = batch_size if self.batchable else 1
        pieces: list[list[np.ndarray]] = []
        for start in range(0, count, step):
            pieces.append(self.invoke(*(x[start:start + step] for x in inputs), raw=raw))
        return [np.concatenate(column, axis=0) for column in zip(*pieces)]

    def latency_ms(self, *, warmup: int = 5, runs: int = 30, seed: int = 0) -> float:
        """Median wall time of one batch-1 invocation, in milliseconds, after ``warmup``
        untimed runs (which also let XNNPACK pack its weights)."""
        if warmup < 0 or runs < 1:
            raise ValueError(f"Received: warmup={warmup}, runs={runs}; need warmup >= 0, "
                             "runs >= 1")
        self._resize_batch(1)
        rng = np.random.default_rng(seed)
        for detail in self._interpreter.get_input_details():
            self._interpreter.set_tensor(detail["index"], _random_input(detail, rng))
        for _ in range(warmup):
            self._interpreter.invoke()
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            self._interpreter.invoke()
            times.append((time.perf_counter() - started) * 1000.0)
        return float(statistics.median(times))


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    shape = [max(1, int(d)) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype in _INTEGER_RANGE:
        low, high = _INTEGER_RANGE[dtype]
        return rng.integers(low, high + 1, size=shape).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        return np.zeros(shape, dtype)
    return rng.standard_normal(shape).astype(dtype)


def measure_latency(model_content: bytes, *, thread_counts: Sequence[int], warmup: int = 5,
                    runs: int = 30) -> dict[int, float]:
    """Median batch-1 latency (ms) for each thread count, each in a fresh interpreter."""
    return {
        threads: LiteRTModel(model_content, num_threads=threads).latency_ms(warmup=warmup,
                                                                            runs=runs)
        for threads in thread_counts
    }


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def operator_names(model_content: bytes) -> collections.Counter:
    """How often each operator appears in all subgraphs, read from the flatbuffer.

    Builtin ops by their schema name (``CONV_2D``), custom ops by their custom code; Select-TF
    ops are custom ops whose code starts with ``Flex`` (``FlexMatrixInverse``).
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_content, 0)
    builtin = _builtin_names()
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode; older files used the int8 DeprecatedBuiltinCode.
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = builtin.get(number, f"BUILTIN_{number}")
        if name == "CUSTOM":
            name = (code.CustomCode() or b"?").decode()
        codes.append(name)
    counts: collections.Counter = collections.Counter()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            counts[codes[subgraph.Operators(o).OpcodeIndex()]] += 1
    return counts


def flex_operators(model_content: bytes) -> list[str]:
    """Select-TF (Flex) ops in the model: they need the TF runtime on the phone."""
    return sorted(name for name in operator_names(model_content) if name.startswith("Flex"))


def tensor_type_counts(model_content: bytes) -> dict[str, int]:
    """How many tensors of each type the main subgraph holds (weights and activations):
    a quick way to see that an int8 export really is integer."""
    from ai_edge_litert import schema_py_generated as schema

    type_names = {v: k for k, v in vars(schema.TensorType).items()
                  if not k.startswith("_") and isinstance(v, int)}
    model = schema.Model.GetRootAs(model_content, 0)
    subgraph = model.Subgraphs(0)
    counts: collections.Counter = collections.Counter()
    for t in range(subgraph.TensorsLength()):
        counts[type_names.get(subgraph.Tensors(t).Type(), "UNKNOWN").lower()] += 1
    return dict(sorted(counts.items()))


def reorder_outputs(model_content: bytes, order: Sequence[str]) -> bytes:
    """The model with its main subgraph's outputs in ``order`` (names of the first
    signature's outputs). Apps that read outputs by position, such as the TFLite Task
    Library's object detector without metadata, need boxes, classes, scores, count in that
    order, which the converter does not promise; the signature keeps naming each tensor."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_content, 0))
    signature = model.signatureDefs[0]
    by_name = {entry.name.decode() if isinstance(entry.name, bytes) else entry.name:
               entry.tensorIndex for entry in signature.outputs}
    if sorted(by_name) != sorted(order):
        raise ValueError(f"the model's outputs are {sorted(by_name)}; received order={order}")
    subgraph = model.subgraphs[signature.subgraphIndex]
    subgraph.outputs = [by_name[name] for name in order]
    builder = flatbuffers.Builder(len(model_content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
