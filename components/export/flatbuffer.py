"""Reading and editing a ``.tflite`` flatbuffer, for the export stage's checks and report.

:func:`operator_names` reads the op codes straight from the flatbuffer, so a Flex (Select-TF)
or custom op cannot hide behind a delegate; :func:`tensor_type_counts` shows that an int8
export really is integer; :func:`reorder_outputs` puts a detector's outputs in the order apps
read them. Running a model (and its latency) is the shared runner's,
:mod:`edgeline.common.litert`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence


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
