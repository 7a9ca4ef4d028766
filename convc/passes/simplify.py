"""Clean-up passes: drop inference no-ops and dead code.

- `remove-noops`: inference dropout (training_mode=0, mask unused) and
  identity forward their input. A node whose output is a graph output is
  kept (as an identity copy) so output names never change.
- `dce`: nodes none of whose outputs reach a graph output are removed, and
  so are parameters and constants no remaining node reads.
"""

from __future__ import annotations

import ir

from .manager import Pass
from .rewrite import Rewriter


def _is_noop(graph: ir.Graph, node: ir.Node) -> bool:
    if node.op == "identity":
        return True
    if node.op != "dropout" or node.attrs["training_mode"]:
        return False
    if len(node.outputs) == 1:
        return True
    mask = node.outputs[1]
    return not graph.consumers(mask) and mask not in graph.outputs


def remove_noops(graph: ir.Graph) -> ir.Graph:
    """Forward the input of inference dropout and identity nodes to their consumers."""
    rw = Rewriter(graph)
    for node in graph.topological_nodes():
        if not _is_noop(graph, node):
            rw.emit(node)
        elif node.outputs[0] in graph.outputs:
            rw.emit(node, op="identity", attrs={}, outputs=node.outputs[:1])
        else:
            rw.alias(node.outputs[0], node.inputs[0])
    return rw.finish()


def live_nodes(graph: ir.Graph) -> set[str]:
    """Names of nodes whose results reach a graph output."""
    live, pending = set(), list(graph.outputs)
    while pending:
        producer = graph.values[pending.pop()].producer
        if producer is not None and producer not in live:
            live.add(producer)
            pending.extend(graph.nodes[producer].present_inputs)
    return live


def eliminate_dead_code(graph: ir.Graph) -> ir.Graph:
    """Keep only the nodes that contribute to an output."""
    live = live_nodes(graph)
    rw = Rewriter(graph)
    for node in graph.topological_nodes():
        if node.name in live:
            rw.emit(node)
    return rw.finish()


REMOVE_NOOPS = Pass("remove-noops", remove_noops)
DCE = Pass("dce", eliminate_dead_code)
