"""The graph IR: named values, nodes applying ops, inputs, parameters and outputs.

A `Graph` keeps its values in a dict and its dataflow in a `networkx.DiGraph`
whose vertices are node names (an edge runs from a value's producer to each
consumer). Nodes are added in an order where every input already exists, so
insertion order is a topological order; passes that rewrite the graph keep it
so, and `verify()` checks it. Shape inference runs inside `add_node`, so a
mistake is reported at the call that built the node.

Values have a kind: 'input' (fed at run time), 'param' (a named, usually
trainable array such as `conv1.weight`), 'const' (a fixed array such as a
reshape target) or 'node' (computed).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .errors import GraphError, ShapeError
from .ops import InferContext, get_op
from .ops.registry import canonical_attrs
from .types import DTYPES, TensorType

VALUE_KINDS = ("input", "param", "const", "node")


@dataclass
class Value:
    """A named tensor in the graph; `data` holds the array of params and consts."""

    name: str
    type: TensorType
    kind: str
    data: np.ndarray | None = None
    producer: str | None = None
    trainable: bool = False

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def is_constant(self) -> bool:
        return self.kind in ("param", "const")


@dataclass
class Node:
    """One application of an op. Absent optional inputs are None."""

    name: str
    op: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict)

    @property
    def present_inputs(self) -> tuple:
        return tuple(v for v in self.inputs if v is not None)


class Graph:
    """A dataflow graph of ops over named tensors."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.values: dict[str, Value] = {}
        self.nodes: dict[str, Node] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._dag = nx.DiGraph()

    # ----- building -------------------------------------------------------------------------
    def _new_value(self, value: Value) -> Value:
        if not isinstance(value.name, str) or not value.name:
            raise GraphError(f"value name {value.name!r} must be a non-empty string")
        if value.name in self.values:
            raise GraphError(f"graph '{self.name}': value '{value.name}' is defined twice")
        self.values[value.name] = value
        return value

    def add_input(self, name: str, shape, dtype: str = "float32") -> Value:
        """Declare a run-time input; dims may be ints or names (symbols), e.g. ("N", 1, 32, 32)."""
        value = self._new_value(Value(name, TensorType(tuple(shape), dtype), "input"))
        self.inputs.append(name)
        return value

    def add_param(self, name: str, data, trainable: bool = True) -> Value:
        """A named array the model owns (weights, biases, statistics)."""
        return self._new_value(
            Value(name, _array_type(name, data), "param", np.asarray(data), None, trainable)
        )

    def add_const(self, name: str, data) -> Value:
        """A fixed array (reshape targets, clip bounds)."""
        return self._new_value(Value(name, _array_type(name, data), "const", np.asarray(data)))

    def unique_name(self, stem: str) -> str:
        """`stem` if unused as a node or value name, else `stem_1`, `stem_2`, ..."""
        name, k = stem, 0
        while name in self.nodes or name in self.values:
            k += 1
            name = f"{stem}_{k}"
        return name

    def add_node(self, op: str, inputs, attrs=None, name=None, outputs=None) -> list[Value]:
        """Apply `op` to values (names or Values; None for an absent optional input).

        `outputs` names the output values (default: the node's name, then
        `name:1`, ...); its length picks how many of the op's outputs exist.
        Returns the output Values, typed by the op's shape rule.
        """
        opdef = get_op(op)
        name = name or self.unique_name(op)
        if name in self.nodes:
            raise GraphError(f"graph '{self.name}': node '{name}' is defined twice")
        inputs = tuple(v.name if isinstance(v, Value) else v for v in inputs)
        self._check_arity(opdef, name, inputs)
        ctx = InferContext(
            op=op,
            node=name,
            inputs=[None if v is None else self.values[v].type for v in inputs],
            attrs=canonical_attrs(opdef, name, dict(attrs or {})),
            constants=[None if v is None else self.values[v].data for v in inputs],
        )
        types = opdef.infer(ctx)
        count = len(outputs) if outputs else opdef.num_required_outputs
        if not 1 <= count <= len(types):
            raise GraphError(f"{op} '{name}': has {len(types)} outputs, {count} requested")
        names = tuple(outputs) if outputs else (name, *(f"{name}:{i}" for i in range(1, count)))
        node = Node(name, op, inputs, names, ctx.attrs)
        for out_name, out_type in zip(names, types):
            if out_name in self.values:
                raise GraphError(f"{op} '{name}': output value '{out_name}' is already defined")
        self.nodes[name] = node
        self._dag.add_node(name)
        for v in node.present_inputs:
            producer = self.values[v].producer
            if producer is not None:
                self._dag.add_edge(producer, name)
        return [self._new_value(Value(n, t, "node", producer=name)) for n, t in zip(names, types)]

    def _check_arity(self, opdef, name: str, inputs: tuple):
        most = len(opdef.inputs)
        if len(inputs) < opdef.min_inputs or (len(inputs) > most and not opdef.variadic):
            raise GraphError(
                f"{opdef.name} '{name}': got {len(inputs)} inputs; expected "
                f"{opdef.min_inputs}..{most} ({', '.join(opdef.inputs)})"
            )
        for i, v in enumerate(inputs):
            if v is None:
                if i < opdef.min_inputs:
                    raise GraphError(f"{opdef.name} '{name}': required input {i} is missing")
            elif v not in self.values:
                raise GraphError(f"{opdef.name} '{name}': input '{v}' is not defined")

    def set_outputs(self, *names) -> None:
        """Mark the graph's outputs (names or Values), in order."""
        resolved = [v.name if isinstance(v, Value) else v for v in names]
        for v in resolved:
            if v not in self.values:
                raise GraphError(f"graph '{self.name}': output '{v}' is not defined")
        if len(set(resolved)) != len(resolved):
            raise GraphError(f"graph '{self.name}': outputs {resolved} repeat a name")
        self.outputs = resolved

    # ----- queries ---------------------------------------------------------------------------
    def topological_nodes(self) -> list[Node]:
        """Nodes in a deterministic topological order (insertion order breaks ties)."""
        order = {n: i for i, n in enumerate(self.nodes)}
        return [
            self.nodes[n] for n in nx.lexicographical_topological_sort(self._dag, key=order.get)
        ]

    def producer(self, value: str) -> Node | None:
        p = self.values[value].producer
        return None if p is None else self.nodes[p]

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes.values() if value in n.inputs]

    def params(self, trainable_only: bool = False) -> dict[str, np.ndarray]:
        """Named parameter arrays, in definition order."""
        return {
            v.name: v.data
            for v in self.values.values()
            if v.kind == "param" and (v.trainable or not trainable_only)
        }

    def type_of(self, value: str) -> TensorType:
        return self.values[value].type

    @property
    def symbols(self) -> set:
        """Free dim symbols of the inputs (the batch N, ...), bound at run time."""
        return (
            set().union(*(self.values[v].type.free_symbols for v in self.inputs))
            if self.inputs
            else set()
        )

    # ----- rewriting -------------------------------------------------------------------------
    def set_param(self, name: str, data) -> None:
        """Replace a parameter's array; shape and dtype must stay the same."""
        value = self.values.get(name)
        if value is None or value.kind != "param":
            raise GraphError(f"graph '{self.name}': no parameter named '{name}'")
        array = np.asarray(data)
        if array.shape != value.type.concrete_shape() or array.dtype != np.dtype(value.dtype):
            raise ShapeError(
                f"parameter '{name}' is {value.type}; got an array of shape {array.shape} and dtype {array.dtype}"
            )
        value.data = array

    def copy(self) -> Graph:
        """A deep copy (arrays included) for passes that rewrite."""
        return copy.deepcopy(self)

    def with_constants(self, arrays: dict) -> Graph:
        """A rebuilt graph in which the named inputs are constants holding `arrays`.

        Shapes are inferred afresh, so dims that depended on those inputs' values (a
        reshape or pad whose target arrives at run time) become concrete. The caller
        validates the arrays against the input types (`ir.binding.bind_inputs`).
        """
        for name in arrays:
            if name not in self.inputs:
                raise GraphError(f"graph '{self.name}': '{name}' is not an input")
        rebuilt = Graph(self.name)
        for value in self.values.values():
            if value.name in arrays:
                rebuilt.add_const(value.name, np.asarray(arrays[value.name]))
            elif value.kind == "input":
                rebuilt.add_input(value.name, value.shape, value.dtype)
            elif value.kind == "param":
                rebuilt.add_param(value.name, value.data, value.trainable)
            elif value.kind == "const":
                rebuilt.add_const(value.name, value.data)
        for node in self.topological_nodes():
            rebuilt.add_node(node.op, node.inputs, node.attrs, node.name, node.outputs)
        rebuilt.set_outputs(*self.outputs)
        return rebuilt

    def remove_node(self, name: str) -> None:
        """Remove a node whose outputs nobody reads."""
        node = self.nodes[name]
        for out in node.outputs:
            if self.consumers(out) or out in self.outputs:
                raise GraphError(f"node '{name}': output '{out}' is still used")
            del self.values[out]
        del self.nodes[name]
        self._dag.remove_node(name)

    # ----- checking and printing -------------------------------------------------------------
    def verify(self) -> None:
        """Check names, arity, topological order and that every stored type matches its rule."""
        from .verify import verify_graph

        verify_graph(self)

    def fingerprint(self) -> str:
        """A hash of the graph's text form and parameter bytes (cache key)."""
        digest = hashlib.sha256(self.to_text().encode())
        for name, v in sorted(self.values.items()):
            if v.data is not None:
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(v.data).tobytes())
        return digest.hexdigest()

    def to_text(self) -> str:
        from .printer import graph_text

        return graph_text(self)

    def to_dot(self) -> str:
        from .printer import graph_dot

        return graph_dot(self)

    def summary(self, bindings=None):
        """The layer table (shapes, parameters, MACs, receptive field); see `ir.report`."""
        from .report import summarize

        return summarize(self, bindings)

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.nodes)} nodes, inputs {self.inputs}, outputs {self.outputs}>"


def _array_type(name: str, data) -> TensorType:
    array = np.asarray(data)
    if array.dtype.name not in DTYPES:
        raise ShapeError(
            f"value '{name}' has unsupported dtype {array.dtype}; expected one of {sorted(DTYPES)}"
        )
    return TensorType(array.shape, array.dtype.name)
