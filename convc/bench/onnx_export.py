"""Export an `ir.Graph` to an ONNX model, so ONNX Runtime can run the same network.

Stage: benchmark peer setup. Input: a verified graph (canonical attributes,
shapes inferred). Output: an `onnx.ModelProto` at opset 20 whose value names,
initializers (params and consts) and outputs are the graph's own, so results
can be compared by name.

The ir ops follow ONNX semantics, so most nodes map one to one with their
canonical attributes; the table below says where the two differ (inputs that
ONNX takes as attributes or the reverse). An op without an ONNX counterpart
here raises `UnsupportedError`, and the benchmark leaves that peer out.
ONNX Runtime 1.31 reads IR version <= 13 while onnx 1.23 writes 14, hence the
explicit `IR_VERSION`.
"""

from __future__ import annotations

import numpy as np

from ir import Graph, Node, UnsupportedError

OPSET = 20
IR_VERSION = 9  # the IR version that introduced opset 20

ONNX_OPS = {
    "conv": "Conv",
    "conv_transpose": "ConvTranspose",
    "max_pool": "MaxPool",
    "avg_pool": "AveragePool",
    "global_avg_pool": "GlobalAveragePool",
    "global_max_pool": "GlobalMaxPool",
    "gemm": "Gemm",
    "matmul": "MatMul",
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "relu": "Relu",
    "leaky_relu": "LeakyRelu",
    "elu": "Elu",
    "selu": "Selu",
    "sigmoid": "Sigmoid",
    "hard_sigmoid": "HardSigmoid",
    "tanh": "Tanh",
    "softplus": "Softplus",
    "gelu": "Gelu",
    "prelu": "PRelu",
    "clip": "Clip",
    "batch_norm": "BatchNormalization",
    "dropout": "Dropout",
    "flatten": "Flatten",
    "reshape": "Reshape",
    "concat": "Concat",
    "identity": "Identity",
    "pad": "Pad",
    "softmax": "Softmax",
    "log_softmax": "LogSoftmax",
}

#: canonical attributes that are not ONNX attributes of the op (ONNX takes them as inputs
#: or has no such attribute).
DROPPED_ATTRS = {
    "dropout": ("ratio", "training_mode"),
    "batch_norm": ("training_mode",),
}


def to_onnx(graph: Graph):
    """The ONNX model of `graph` (inference semantics); raises UnsupportedError if it has none."""
    from onnx import helper, numpy_helper

    nodes = [_onnx_node(helper, node) for node in graph.topological_nodes()]
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(v.data), v.name)
        for v in graph.values.values()
        if v.is_constant
    ]
    body = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(helper, graph, n) for n in graph.inputs],
        [_value_info(helper, graph, n) for n in graph.outputs],
        initializer=initializers,
    )
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def _value_info(helper, graph: Graph, name: str):
    """A graph input's or output's ONNX type; a symbolic dim (N) becomes a dim_param."""
    value = graph.values[name]
    dims = [int(d) if d.is_Integer else str(d) for d in value.shape]
    elem_type = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
    return helper.make_tensor_value_info(name, elem_type, dims)


def _onnx_node(helper, node: Node):
    """One ONNX NodeProto for an ir node, attributes translated."""
    if node.op not in ONNX_OPS:
        raise UnsupportedError(f"{node.op} '{node.name}': no ONNX export for this op")
    if node.op in ("batch_norm", "dropout") and node.attrs.get("training_mode"):
        raise UnsupportedError(f"{node.op} '{node.name}': training mode is not exported to ONNX")
    dropped = DROPPED_ATTRS.get(node.op, ())
    attrs = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in node.attrs.items()
        if value is not None and key not in dropped
    }
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        attrs.pop("pads", None)
    inputs = ["" if v is None else v for v in node.inputs]
    return helper.make_node(ONNX_OPS[node.op], inputs, list(node.outputs), name=node.name, **attrs)
