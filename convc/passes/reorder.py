"""`reorder-activation-pool`: apply a monotone activation after max pooling, not before.

For a non-decreasing f, max over a window of f(x) equals f(max over the window
of x) (padding never wins a max and windows are never empty), so
`max_pool(relu(x))` becomes `relu(max_pool(x))`, which applies the activation
to the pooled (smaller) tensor. The rewrite happens only when the activation's
result feeds nothing else and the pool really shrinks the tensor.
"""

from __future__ import annotations

import sympy

import ir

from .manager import Pass
from .rewrite import Rewriter, single_use

POOLS = ("max_pool", "global_max_pool")


def _monotone(node: ir.Node) -> bool:
    if node.op in ("relu", "clip"):
        return True
    return node.op == "leaky_relu" and node.attrs["alpha"] >= 0


def _shrinks(graph: ir.Graph, pool: ir.Node) -> bool:
    before = sympy.Mul(*graph.type_of(pool.inputs[0]).shape)
    after = sympy.Mul(*graph.type_of(pool.outputs[0]).shape)
    ratio = sympy.simplify(after / before)
    return ratio.is_number and ratio < 1


def _swappable(graph: ir.Graph, pool: ir.Node) -> ir.Node | None:
    """The activation feeding `pool` that can move after it, or None."""
    if pool.op not in POOLS:
        return None
    act = graph.producer(pool.inputs[0])
    if act is None or not _monotone(act) or single_use(graph, act.outputs[0]) is None:
        return None
    return act if _shrinks(graph, pool) else None


def reorder_activation_pool(graph: ir.Graph) -> ir.Graph:
    """Rewrite every `pool(act(x))` that saves work into `act(pool(x))`."""
    swaps = {}
    for node in graph.nodes.values():
        act = _swappable(graph, node)
        if act is not None:
            swaps[act.name] = node
    moved = {pool.name: act for act, pool in ((graph.nodes[a], p) for a, p in swaps.items())}
    rw = Rewriter(graph)
    for node in graph.topological_nodes():
        if node.name in swaps:
            continue
        if node.name not in moved:
            rw.emit(node)
            continue
        act = moved[node.name]
        pooled = rw.new.unique_name(f"{node.outputs[0]}_pre_{act.op}")
        rw.emit(node, inputs=(act.inputs[0],), outputs=(pooled,))
        rw.emit(act, inputs=(pooled, *act.inputs[1:]), outputs=node.outputs)
    return rw.finish()


REORDER_ACTIVATION_POOL = Pass("reorder-activation-pool", reorder_activation_pool)
