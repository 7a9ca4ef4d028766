"""Walking a checked ONNX graph into an `ir.Graph`.

Input: a ModelProto that passed `model.load_model`. Output: a verified
`ir.Graph`. Initializers are added first (as parameters, under their ONNX
names), then the graph inputs that are not initializers, then every node in
the model's (topological) order through its rule in `rules.RULES`. A rule
sees the node through a `NodeContext`, which knows which inputs are constant
and adds ir nodes named after the ONNX node.
"""

from __future__ import annotations

import numpy as np
import onnx

from ir import ConvcError, Graph, OnnxError, UnsupportedError, Value

from .model import DimNamer, default_opset, node_label, tensor_array
from .rules import RULES, Rule

DEFAULT_DOMAINS = ("", "ai.onnx")


def convert_model(model: onnx.ModelProto, name: str | None = None) -> Graph:
    """Translate every initializer, input and node; set the outputs; verify."""
    graph = Graph(name or model.graph.name or "onnx")
    opset = default_opset(model)
    if model.graph.sparse_initializer:
        first = model.graph.sparse_initializer[0].values.name
        raise UnsupportedError(f"sparse initializer '{first}' is not supported")
    for tensor in model.graph.initializer:
        array = tensor_array(tensor, f"initializer '{tensor.name}'")
        graph.add_param(tensor.name, array, trainable=array.dtype.kind == "f")
    namer = DimNamer(model.graph.input)
    for value in model.graph.input:
        if value.name not in graph.values:
            type_ = namer.tensor_type(value)
            graph.add_input(value.name, type_.shape, type_.dtype)
    onnx_names = {v.name for v in model.graph.input} | {
        n for node in model.graph.node for n in node.output
    }
    for index, node in enumerate(model.graph.node):
        convert_node(graph, node, index, opset, onnx_names)
    graph.set_outputs(*(output.name for output in model.graph.output))
    for output in model.graph.output:
        _check_declared_type(graph, output)
    graph.verify()
    return graph


def _check_declared_type(graph: Graph, output: onnx.ValueInfoProto) -> None:
    """An output's declared dtype and known sizes must be what the shape rules computed."""
    computed = graph.values[output.name].type
    tensor = output.type.tensor_type
    if output.type.WhichOneof("value") != "tensor_type" or not tensor.elem_type:
        return
    declared = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.HasField("shape") and len(sizes) != computed.rank:
        mismatch = f"rank {len(sizes)}"
    elif any(s is not None and d.is_Integer and int(d) != s for s, d in zip(sizes, computed.shape)):
        mismatch = f"shape {sizes}"
    elif declared != computed.dtype:
        mismatch = f"dtype {declared}"
    else:
        return
    raise OnnxError(f"graph output '{output.name}' is declared with {mismatch} but is {computed}")


def convert_node(
    graph: Graph, node: onnx.NodeProto, index: int, opset: int, onnx_names: set
) -> None:
    """Check op, version, attributes and outputs against the node's rule, then apply it.

    `onnx_names` are the model's value names, which names made up here must avoid.
    """
    label = node_label(node, index)
    if label in graph.nodes:
        label = graph.unique_name(label)
    prefix = f"{node.op_type} node '{label}': "
    rule = RULES.get(node.op_type) if node.domain in DEFAULT_DOMAINS else None
    if rule is None:
        op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
        raise UnsupportedError(f"{prefix}op {op} is not supported")
    schema = onnx.defs.get_schema(node.op_type, opset)
    _check_node(rule, schema, node, prefix)
    attrs = {a.name: _attribute_value(a) for a in node.attribute}
    ctx = NodeContext(graph, node, label, schema.since_version, attrs, onnx_names)
    try:
        rule.convert(ctx)
    except ConvcError as exc:
        if str(exc).startswith(prefix):
            raise
        raise type(exc)(prefix + str(exc)) from exc


def _check_node(rule: Rule, schema, node: onnx.NodeProto, prefix: str) -> None:
    if schema.since_version not in rule.versions:
        raise UnsupportedError(
            f"{prefix}{node.op_type}-{schema.since_version} is not supported; "
            f"supported versions: {', '.join(map(str, rule.versions))}"
        )
    for attribute in node.attribute:
        if attribute.name not in rule.attrs:
            value = _attribute_value(attribute)
            raise UnsupportedError(f"{prefix}attribute {attribute.name}={value!r} is not supported")
    for i, output in enumerate(node.output):
        if output and i >= rule.outputs:
            formal = schema.outputs[min(i, len(schema.outputs) - 1)].name
            raise UnsupportedError(f"{prefix}output {formal} ('{output}') is not supported")


def _attribute_value(attribute: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    return value


class NodeContext:
    """One ONNX node as a rule sees it: its inputs (None when absent), attributes and outputs."""

    def __init__(self, graph, node, label: str, since: int, attrs: dict, onnx_names: set):
        self.graph = graph
        self.onnx_names = onnx_names
        self.op_type = node.op_type
        self.label = label
        self.since = since
        self.attrs = attrs
        self.inputs = [name or None for name in node.input]
        self.outputs = self._output_names(list(node.output))

    def input(self, index: int) -> str | None:
        return self.inputs[index] if index < len(self.inputs) else None

    def value(self, index: int) -> Value:
        return self.graph.values[self.inputs[index]]

    def const(self, index: int) -> np.ndarray | None:
        """The array of input `index` when it is a parameter or constant, else None."""
        name = self.input(index)
        if name is None:
            return None
        value = self.graph.values[name]
        return value.data if value.is_constant else None

    def constant_scalar(self, index: int, what: str, default):
        """Input `index` as a Python scalar: `default` when absent, UnsupportedError if run-time."""
        if self.input(index) is None:
            return default
        array = self.const(index)
        if array is None:
            raise self.unsupported(
                f"input {what} ('{self.input(index)}') must be a constant or initializer, "
                "not a run-time input"
            )
        if array.size != 1:
            raise self.malformed(f"input {what} has shape {array.shape}; expected a scalar")
        return array.reshape(()).item()

    def unsupported(self, message: str) -> UnsupportedError:
        return UnsupportedError(f"{self.op_type} node '{self.label}': {message}")

    def malformed(self, message: str) -> OnnxError:
        return OnnxError(f"{self.op_type} node '{self.label}': {message}")

    def add_const(self, suffix: str, array: np.ndarray) -> str:
        """A constant named after this node (e.g. `pad1/pads`); returns its name."""
        name = self.fresh_name(f"{self.label}/{suffix}")
        self.graph.add_const(name, np.asarray(array, order="C"))
        return name

    def emit(self, op: str, inputs, attrs=None) -> None:
        """Add the ir node that produces this ONNX node's outputs."""
        self.graph.add_node(op, inputs, attrs, name=self.label, outputs=self.outputs or None)

    def emit_step(self, op: str, suffix: str, inputs, attrs=None) -> str:
        """Add an intermediate ir node named `<label>/<suffix>`; returns its output's name."""
        name = self.fresh_name(f"{self.label}/{suffix}")
        return self.graph.add_node(op, inputs, attrs, name=name)[0].name

    def fresh_name(self, stem: str) -> str:
        """A value name based on `stem` that neither the graph nor the ONNX model uses."""
        name, k = stem, 0
        while name in self.onnx_names or name in self.graph.values or name in self.graph.nodes:
            k += 1
            name = f"{stem}_{k}"
        return name

    def _output_names(self, outputs: list) -> list:
        """ONNX outputs, trailing absent ones dropped and inner absent ones given unused names."""
        while outputs and not outputs[-1]:
            outputs.pop()
        return [
            name or self.fresh_name(f"{self.label}:unused{i}") for i, name in enumerate(outputs)
        ]
