"""Reading and checking ONNX models, and translating their tensors and types.

Input: a path, bytes or `onnx.ModelProto`. Output: a checked ModelProto
(`load_model`), NumPy arrays for tensors (`tensor_array`) and `TensorType`s
for graph inputs (`DimNamer.tensor_type`). Everything here raises `OnnxError`
for a malformed model and `UnsupportedError` for a type convc cannot hold.
"""

from __future__ import annotations

import keyword
import os
import re

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from ir import OnnxError, TensorType, UnsupportedError

#: element types convc imports: float tensors, int64 labels/shapes/pads, bool flags.
SUPPORTED_DTYPES = ("float32", "float64", "int64", "bool")


def load_model(source) -> onnx.ModelProto:
    """Read a model and reject it unless every reference resolves and `onnx.checker` passes."""
    model = _read(source)
    check_references(model.graph)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxError(f"ONNX model '{model.graph.name}' fails onnx.checker: {exc}") from exc
    return model


def _read(source) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        if isinstance(source, (bytes, bytearray)):
            return onnx.load_model_from_string(bytes(source))
        if isinstance(source, (str, os.PathLike)):
            return onnx.load(os.fspath(source))
    except (OSError, DecodeError) as exc:
        raise OnnxError(f"cannot read an ONNX model from {_describe(source)}: {exc}") from exc
    raise OnnxError(
        f"from_onnx expects a path, bytes or an onnx.ModelProto; got {type(source).__name__}"
    )


def _describe(source) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"{len(source)} bytes"
    return f"'{os.fspath(source)}'"


def node_label(node: onnx.NodeProto, index: int) -> str:
    """How messages name a node: its name, else its first output, else its position."""
    return node.name or next((o for o in node.output if o), f"{node.op_type}#{index}")


def check_references(graph: onnx.GraphProto) -> None:
    """Every node input must be a graph input, an initializer or an earlier node's output."""
    defined = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    for index, node in enumerate(graph.node):
        for name in node.input:
            if name and name not in defined:
                raise OnnxError(
                    f"{node.op_type} node '{node_label(node, index)}': input '{name}' is not "
                    "a graph input, an initializer or the output of an earlier node"
                )
        defined.update(o for o in node.output if o)
    for output in graph.output:
        if output.name not in defined:
            raise OnnxError(f"graph output '{output.name}' is not produced by any node or input")


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default ('' / 'ai.onnx') operator set the model imports."""
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise OnnxError(f"ONNX model '{model.graph.name}' does not import the default operator set")


def check_dtype(dtype: np.dtype | str, where: str) -> str:
    """The NumPy dtype name, or UnsupportedError naming `where`."""
    name = np.dtype(dtype).name
    if name not in SUPPORTED_DTYPES:
        raise UnsupportedError(
            f"{where}: dtype {name} is not supported; expected one of {list(SUPPORTED_DTYPES)}"
        )
    return name


def tensor_array(tensor: onnx.TensorProto, where: str) -> np.ndarray:
    """A TensorProto as a C-contiguous NumPy array of a supported dtype."""
    elem = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    check_dtype(elem, where)
    return np.asarray(onnx.numpy_helper.to_array(tensor), order="C")


def identifier(text: str) -> str:
    """`text` made a Python identifier, so that it can name a sympy dim symbol."""
    name = re.sub(r"\W", "_", text)
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = f"d_{name}"
    return name


class DimNamer:
    """Turns ONNX dims into ir dims: values stay ints, `dim_param`s become symbols by name.

    A dim with neither gets a fresh symbol `<input>_<axis>` that no other dim uses.
    """

    def __init__(self, inputs):
        self.params = {
            identifier(d.dim_param)
            for value in inputs
            if value.type.WhichOneof("value") == "tensor_type"
            for d in value.type.tensor_type.shape.dim
            if d.HasField("dim_param")
        }
        self.fresh: set[str] = set()

    def tensor_type(self, value: onnx.ValueInfoProto) -> TensorType:
        kind = value.type.WhichOneof("value")
        where = f"graph input '{value.name}'"
        if kind != "tensor_type":
            raise UnsupportedError(f"{where} has ONNX type {kind}; only tensors are supported")
        tensor = value.type.tensor_type
        dtype = check_dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type), where)
        if not tensor.HasField("shape"):
            raise UnsupportedError(f"{where} has no shape (unknown rank)")
        dims = [self._dim(d, value.name, axis) for axis, d in enumerate(tensor.shape.dim)]
        return TensorType(tuple(dims), dtype)

    def _dim(self, d, input_name: str, axis: int):
        if d.HasField("dim_value"):
            return int(d.dim_value)
        if d.HasField("dim_param"):
            return identifier(d.dim_param)
        stem = identifier(f"{input_name}_{axis}")
        name, k = stem, 0
        while name in self.params or name in self.fresh:
            k += 1
            name = f"{stem}_{k}"
        self.fresh.add(name)
        return name
