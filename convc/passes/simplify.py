"""Clean-up passes: drop inference no-ops and dead code.

- `remove-noops`: inference dropout (training_mode=0, mask unused) and
  identity forward their input. Output names never change: a no-op whose
  output is a graph output instead renames the output of the node computing
  its input (when that value has no other use), else stays as an identity
  copy. (A gradient graph returns every gradient through an identity: without
  the rename each one costs a copy pass, 0.6 ms for a 56x56x64 batch of 8.)
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


def _renamed_output(graph: ir.Graph, value: str, readers: dict) -> str | None:
    """The graph output that a computed `value` can be written as directly: the output of
    the only node reading it, a no-op (`value` itself is no output)."""
    if value in graph.outputs or len(readers.get(value, ())) != 1:
        return None
    reader = readers[value][0]
    noop = _is_noop(graph, reader) and reader.inputs[0] == value
    return reader.outputs[0] if noop and reader.outputs[0] in graph.outputs else None


def remove_noops(graph: ir.Graph) -> ir.Graph:
    """Forward the input of inference dropout and identity nodes to their consumers."""
    rw, readers = Rewriter(graph), {}
    for node in graph.nodes.values():
        for name in set(node.present_inputs):
            readers.setdefault(name, []).append(node)
    for node in graph.topological_nodes():
        if not _is_noop(graph, node):
            renames = {v: _renamed_output(graph, v, readers) for v in node.outputs}
            rw.emit(node, outputs=[renames[v] or v for v in node.outputs])
            for old, new in renames.items():
                if new is not None:
                    rw.alias(old, new)
        elif rw.resolve(node.inputs[0]) == node.outputs[0]:
            continue  # its producer already writes this output
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
