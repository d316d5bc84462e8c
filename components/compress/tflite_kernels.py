"""The kernels inside a ``.tflite`` file, read from its flatbuffer.

What the converter wrote is what ships, so sparsity and clusters are checked there: an int8
kernel keeps a pruned zero as the integer 0 (weights are quantized symmetrically, zero point
0), and a clustered kernel holds at most k distinct integers per output channel (each channel
has its own scale; TFLite's kernels are (C_out, ..., C_in), output channel first).
"""

from __future__ import annotations

import dataclasses

import numpy as np

_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8}


@dataclasses.dataclass
class TfliteKernel:
    name: str
    op: str
    values: np.ndarray  # as stored: int8 for quantized kernels, else float

    @property
    def sparsity(self) -> float:
        return float(np.mean(self.values == 0))

    @property
    def max_distinct_per_channel(self) -> int:
        """Most distinct stored values in one output channel (the first axis; for a
        depthwise kernel (1, kh, kw, C) the channel is the last axis)."""
        values = self.values
        if self.op == "DEPTHWISE_CONV_2D":
            values = np.moveaxis(values, -1, 0)
        rows = values.reshape(values.shape[0], -1)
        return max(int(np.unique(row).size) for row in rows)


def kernels(model_content: bytes) -> list[TfliteKernel]:
    """The weight tensor (input 1) of every convolution and fully connected op."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_content, 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    found = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            operator = subgraph.Operators(o)
            code = model.OperatorCodes(operator.OpcodeIndex())
            op = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "")
            if op not in _KERNEL_OPS or operator.InputsLength() < 2:
                continue
            tensor = subgraph.Tensors(operator.Inputs(1))
            dtype = _NUMPY_TYPES.get(type_names.get(tensor.Type(), ""))
            data = model.Buffers(tensor.Buffer()).DataAsNumpy()
            if dtype is None or not isinstance(data, np.ndarray):
                continue  # a kernel computed at run time (dequantized from another tensor)
            values = data.view(dtype).reshape(tensor.ShapeAsNumpy())
            found.append(TfliteKernel(tensor.Name().decode(), op, values))
    return found


def summary(model_content: bytes) -> dict:
    """Overall sparsity of the stored kernels and the largest per-channel distinct count."""
    found = kernels(model_content)
    size = sum(k.values.size for k in found)
    zeros = sum(int(np.sum(k.values == 0)) for k in found)
    return {
        "kernels": len(found),
        "sparsity": zeros / size if size else 0.0,
        "max_distinct_per_channel": max((k.max_distinct_per_channel for k in found), default=0),
    }
