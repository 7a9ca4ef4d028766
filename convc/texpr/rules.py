"""The rule table: op name -> function building that op's tensor expressions.

Stage: (ir.Graph, ir.Node) -> list[TensorExpr]. Each op family module in this
package registers its rules with `@rule("op", ...)`; `texpr_of` dispatches. The
helpers here (shapes, index names, bound conditions, broadcasting) are shared by
the families so that every rule reads as its formula.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from ir import Graph, Node, UnsupportedError

from .expr import TensorExpr, access, in_bounds, index

RULES: dict[str, Callable[[Graph, Node], list[TensorExpr]]] = {}


def rule(*ops: str):
    """Register the decorated function as the tensor-expression rule of `ops`."""

    def register(fn):
        for op in ops:
            RULES[op] = fn
        return fn

    return register


def texpr_of(graph: Graph, node: Node | str) -> list[TensorExpr]:
    """The tensor expressions defining `node`'s outputs, temporaries first.

    Every present output of the node is defined by exactly one expression with
    role "output" and the output's value name.
    """
    if isinstance(node, str):
        node = graph.nodes[node]
    fn = RULES.get(node.op)
    if fn is None:
        raise UnsupportedError(f"{node.op} '{node.name}': no tensor expression for this op")
    return fn(graph, node)


def shape_of(graph: Graph, value: str) -> tuple:
    return graph.values[value].type.shape


def dtype_of(graph: Graph, value: str) -> str:
    return graph.values[value].type.dtype


def axis_names(rank: int) -> tuple[str, ...]:
    """Readable index names for a tensor of `rank` axes (n, c, then spatial i, j, k)."""
    if rank == 1:
        return ("i",)
    if 2 <= rank <= 5:
        return ("n", "c", "i", "j", "k")[:rank]
    return tuple(f"i{a}" for a in range(rank))


def axis_indices(rank: int) -> tuple[sympy.Symbol, ...]:
    return tuple(index(n) for n in axis_names(rank))


def broadcast_access(graph: Graph, value: str, out_idx, out_shape) -> sympy.Expr:
    """Read `value` at the output position, NumPy-broadcast: leading axes dropped, size-1 axes at 0."""
    shape = shape_of(graph, value)
    lead = len(out_shape) - len(shape)
    idx = [
        sympy.Integer(0) if d == 1 and out_shape[lead + k] != 1 else out_idx[lead + k]
        for k, d in enumerate(shape)
    ]
    return access(value, idx, dtype_of(graph, value))


def _affine_range(expr, ranges: dict):
    """(min, max) of an expression affine in the index symbols over their ranges, or None."""
    expanded = sympy.expand(expr)
    lo = hi = rest = expanded
    for sym, extent in ranges.items():
        coeff = expanded.coeff(sym)
        if coeff == 0:
            continue
        if coeff.free_symbols & set(ranges):
            return None
        rest = rest - coeff * sym
        if coeff.is_nonnegative:
            lo, hi = lo.subs(sym, 0), hi.subs(sym, extent - 1)
        elif coeff.is_nonpositive:
            lo, hi = lo.subs(sym, extent - 1), hi.subs(sym, 0)
        else:
            return None
    if sympy.expand(rest).free_symbols & set(ranges):
        return None
    return lo, hi


def bound_condition(expr, extent, ranges: dict) -> sympy.Boolean:
    """0 <= expr < extent, leaving out each half that provably holds over `ranges`."""
    span = _affine_range(expr, ranges)
    if span is None:
        return in_bounds(expr, extent)
    lo, hi = span
    parts = []
    if sympy.Le(0, lo) is not sympy.true:
        parts.append(sympy.Le(0, expr))
    if sympy.Lt(hi, extent) is not sympy.true:
        parts.append(sympy.Lt(expr, extent))
    return sympy.And(*parts)


def simplify_condition(cond, ranges: dict) -> sympy.Boolean:
    """Drop the inequalities of a conjunction that hold for every index value in `ranges`."""
    parts = cond.args if isinstance(cond, sympy.And) else (cond,)
    kept = []
    for part in parts:
        if isinstance(part, (sympy.LessThan, sympy.StrictLessThan)):
            span = _affine_range(part.rhs - part.lhs, ranges)
            strict = isinstance(part, sympy.StrictLessThan)
            if span is not None and (span[0] > 0 if strict else span[0] >= 0) is sympy.true:
                continue
        kept.append(part)
    return sympy.And(*kept)


def temp_name(graph: Graph, node: Node, what: str) -> str:
    """`<node>.<what>` for a temporary of the node, never the name of a graph value.

    The temporaries live beside graph values (a program reads both, the lowering
    gives both buffers), so a clash, e.g. with a parameter the DSL named
    `loss.weight`, is avoided with a numeric suffix.
    """
    name, k = f"{node.name}.{what}", 0
    while name in graph.values:
        k += 1
        name = f"{node.name}.{what}_{k}"
    return name


def out_value(node: Node, k: int = 0) -> str | None:
    """The name of the node's output `k`, or None when that output is not requested."""
    return node.outputs[k] if k < len(node.outputs) else None
