"""Graph verification: the invariants every pass must leave intact."""

from __future__ import annotations

import networkx as nx

from .errors import GraphError
from .ops import InferContext, get_op
from .ops.registry import canonical_attrs


def verify_graph(graph) -> None:
    """Raise GraphError unless names, wiring, order and types are consistent."""
    if not nx.is_directed_acyclic_graph(graph._dag):
        raise GraphError(f"graph '{graph.name}' has a cycle")
    defined = {v for v, value in graph.values.items() if value.kind != "node"}
    for node in graph.nodes.values():
        _verify_node(graph, node, defined)
        defined.update(node.outputs)
    for name in graph.inputs:
        if graph.values.get(name) is None or graph.values[name].kind != "input":
            raise GraphError(f"graph '{graph.name}': input '{name}' is not an input value")
    for name in graph.outputs:
        if name not in graph.values:
            raise GraphError(f"graph '{graph.name}': output '{name}' is not defined")
    for value in graph.values.values():
        if value.kind == "node" and value.producer not in graph.nodes:
            raise GraphError(f"value '{value.name}' has no producer node")
        if value.kind in ("param", "const") and value.data is None:
            raise GraphError(f"{value.kind} '{value.name}' has no data")


def _verify_node(graph, node, defined: set) -> None:
    opdef = get_op(node.op)
    graph._check_arity(opdef, node.name, node.inputs)
    for v in node.present_inputs:
        if v not in defined:
            raise GraphError(f"{node.op} '{node.name}': input '{v}' is used before it is defined")
    ctx = InferContext(
        op=node.op,
        node=node.name,
        inputs=[None if v is None else graph.values[v].type for v in node.inputs],
        attrs=canonical_attrs(opdef, node.name, dict(node.attrs)),
        constants=[None if v is None else graph.values[v].data for v in node.inputs],
    )
    types = opdef.infer(ctx)
    for out, expected in zip(node.outputs, types):
        value = graph.values.get(out)
        if value is None or value.producer != node.name:
            raise GraphError(
                f"{node.op} '{node.name}': output '{out}' is not recorded as produced by it"
            )
        if value.type != expected:
            raise GraphError(
                f"{node.op} '{node.name}': output '{out}' is typed {value.type} but its rule gives {expected}"
            )
