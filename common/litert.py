"""The one LiteRT runner: a ``.tflite`` file run in ``ai_edge_litert``, the runtime phones use.

Every stage that runs a ``.tflite`` runs it here: evaluate (images, and a Policy's network),
export (the parity gate, the report's tensor specs, latency) and the export's selective
quantization (the op list of a calibrated model). This module is the only one that constructs
an ``Interpreter``.

:class:`LiteRTModel` quantizes float inputs of integer tensors and dequantizes integer outputs
with each tensor's own ``(scale, zero_point)``, following the TFLite quantization spec
``real = scale * (q - zero_point)``
(https://ai.google.dev/edge/litert/models/quantization_spec); it runs batches by resizing the
batch dimension where the model allows it (``shape_signature[0] == -1``), else one example at
a time; and it measures latency as the median of repeated invocations after warm-up.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeline.pipeline.errors import UserError

# Closed integer ranges of the quantized tensor types TFLite uses.
INTEGER_RANGE = {
    np.dtype(np.int8): (-128, 127),
    np.dtype(np.uint8): (0, 255),
    np.dtype(np.int16): (-32768, 32767),
}


def quantize(values: np.ndarray, *, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float -> integer with a tensor's affine parameters: ``q = round(real / scale) + zp``."""
    low, high = INTEGER_RANGE[np.dtype(dtype)]
    quantized = np.round(np.asarray(values, np.float32) / scale) + zero_point
    return np.clip(quantized, low, high).astype(dtype)


def dequantize(values: np.ndarray, *, scale: float, zero_point: int) -> np.ndarray:
    """Integer -> float: ``real = scale * (q - zp)``."""
    return (scale * (np.asarray(values).astype(np.float32) - zero_point)).astype(np.float32)


def all_threads() -> int:
    """The thread count that "all threads" means in latency figures: every core we may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _interpreter(model_content: bytes, num_threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_content, num_threads=num_threads)


def signature_names(interpreter) -> dict[int, str]:
    """Tensor index -> its name in the first signature (``pixels``, ``detection_boxes``): the
    names an app's signature runner uses and that say what a tensor is, unlike the converter's
    tensor names (often ``PartitionedCall:N``)."""
    signatures = interpreter.get_signature_list()
    if not signatures:
        return {}
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    names = {}
    for details in (runner.get_input_details(), runner.get_output_details()):
        names.update({detail["index"]: name for name, detail in details.items()})
    return names


def _tensor_spec(detail: dict, names: dict[int, str]) -> dict:
    """One input/output detail as JSON-able data (names, shape, dtype, quantization)."""
    scale, zero_point = detail["quantization"]
    params = detail.get("quantization_parameters", {})
    per_channel = len(params.get("scales", ())) > 1
    return {
        "name": detail["name"],
        "signature_name": names.get(int(detail["index"])),
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
        model: the flatbuffer bytes, or the path of a ``.tflite`` file.
        num_threads: CPU threads the interpreter (and its XNNPACK delegate) may use.

    Raises:
        UserError: the content is not a loadable ``.tflite`` model.
    """

    def __init__(self, model: bytes | str | os.PathLike, *, num_threads: int = 1):
        if num_threads < 1:
            raise ValueError(f"Received: num_threads={num_threads}; num_threads must be >= 1")
        if isinstance(model, bytes | bytearray):
            content, where = bytes(model), "model content"
        else:
            content, where = Path(model).read_bytes(), os.fspath(model)
        self.model_content = content
        self.num_threads = num_threads
        try:
            self._interpreter = _interpreter(content, num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise UserError(f"{where}: not a loadable .tflite model ({err})") from None
        self._batch = int(self._interpreter.get_input_details()[0]["shape"][0])

    @property
    def input_details(self) -> list[dict]:
        names = signature_names(self._interpreter)
        return [_tensor_spec(d, names) for d in self._interpreter.get_input_details()]

    @property
    def output_details(self) -> list[dict]:
        names = signature_names(self._interpreter)
        return [_tensor_spec(d, names) for d in self._interpreter.get_output_details()]

    @property
    def output_names(self) -> list[str]:
        """One name per output, in output order: its name in the model's one signature
        (``detection_boxes``...), or the tensor name when the model has not exactly one."""
        names = (signature_names(self._interpreter)
                 if len(self._interpreter.get_signature_list()) == 1 else {})
        return [names.get(d["index"], d["name"]) for d in self._interpreter.get_output_details()]

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
        if dtype in INTEGER_RANGE and scale != 0.0 and values.dtype != dtype:
            values = quantize(values, scale=scale, zero_point=zero_point, dtype=dtype)
        elif values.dtype != dtype:
            if dtype in INTEGER_RANGE and not np.issubdtype(values.dtype, np.integer):
                # An integer input without quantization parameters takes raw pixel values
                # (an export with the preprocessing inside): round floats into its range.
                low, high = INTEGER_RANGE[dtype]
                values = np.clip(np.round(values), low, high)
            values = values.astype(dtype)
        self._interpreter.set_tensor(detail["index"], values)

    def _get_output(self, detail: dict, raw: bool) -> np.ndarray:
        values = self._interpreter.get_tensor(detail["index"])
        scale, zero_point = detail["quantization"]
        if not raw and np.dtype(detail["dtype"]) in INTEGER_RANGE and scale != 0.0:
            return dequantize(values, scale=scale, zero_point=zero_point)
        return np.array(values)  # a copy: the interpreter reuses its buffers

    def invoke(self, *inputs: np.ndarray, raw: bool = False) -> list[np.ndarray]:
        """One call on one batch, as the model's inputs are shaped (after a batch resize).
        ``raw`` returns integer outputs as their integer codes, undequantized."""
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


class TFLitePolicy:
    """An exported ``.tflite`` policy network (the rl stage's ``policy.tflite``): one
    observation in, action values or logits out, the argmax is the action. Both the rl stage's
    parity check and the evaluate stage's scoring play it here."""

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1):
        self._runtime = LiteRTModel(path, num_threads=num_threads)
        self._input = self._runtime._interpreter.get_input_details()[0]  # noqa: SLF001

    @property
    def input_details(self) -> dict:
        """The interpreter's detail of the one input (``dtype`` a numpy type, ``shape``...)."""
        return self._input

    def action_values(self, observation: np.ndarray) -> np.ndarray:
        """(*obs) -> (num_actions,), as the network computes them (integer codes stay raw:
        the argmax does not need them dequantized)."""
        batch = np.asarray(observation, dtype=self._input["dtype"])[None]  # (1, *obs)
        return self._runtime.invoke(batch, raw=True)[0][0]

    def action(self, observation: np.ndarray) -> int:
        return int(np.argmax(self.action_values(observation)))

    def actions(self, time_steps) -> np.ndarray:
        """A batch of time steps (B, ...) -> (B,): the model takes one observation at a time."""
        return np.asarray([self.action(obs) for obs in time_steps.observation], dtype=np.int64)


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    shape = [max(1, int(d)) for d in detail["shape"]]
    dtype = np.dtype(detail["dtype"])
    if dtype in INTEGER_RANGE:
        low, high = INTEGER_RANGE[dtype]
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


def operator_outputs(model_content: bytes) -> list[tuple[str, list[tuple[int, str]]]]:
    """Each op of the model as ``(op name, [(output tensor index, tensor name), ...])``, in
    execution order, and without allocating tensors (a calibrated model may not allocate)."""
    interpreter = _interpreter(model_content)
    tensors = interpreter.get_tensor_details()
    return [(op["op_name"], [(index, tensors[index]["name"]) for index in op["outputs"]])
            for op in interpreter._get_ops_details()]  # noqa: SLF001


def model_signature_names(model_content: bytes) -> dict[int, str]:
    """:func:`signature_names` of a model's bytes, without allocating its tensors."""
    return signature_names(_interpreter(model_content))
