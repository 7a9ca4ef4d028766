"""Text forms of tensor expressions: readable index notation and LaTeX.

Stage: TensorExpr -> str, for `convc show --stage texpr [--latex]`. Deterministic:
names come from the graph, nodes are printed in topological order, and sympy's
canonical printing orders terms.

    y[n, o, i, j] = Σ_{c<3, a<5, b<5} x[n, c, 2*i + a - 1, j + b]*w[o, c, a, b]  where ...

An epilogue is printed on the defining line with `acc` standing for the reduction,
which follows on an indented line.
"""

from __future__ import annotations

import sympy

from ir import Graph, UnsupportedError

from .expr import ACC, TensorExpr
from .rules import texpr_of

REDUCE_SIGN = {"sum": "Σ", "max": "max"}
REDUCE_LATEX = {"sum": r"\sum", "max": r"\max"}


def _lhs(e: TensorExpr) -> str:
    return f"{e.name}[{', '.join(map(str, e.indices))}]" if e.indices else e.name


def _condition(e: TensorExpr) -> str:
    return "" if e.condition is sympy.true else f"  where {_relations(e.condition)}"


def _relations(cond) -> str:
    """`0 <= u < S` chains instead of sympy's `(0 <= u) & (u < S)`."""
    parts = list(cond.args) if isinstance(cond, sympy.And) else [cond]
    lows = {p.rhs: p for p in parts if isinstance(p, sympy.LessThan) and p.lhs == 0}
    out = []
    for p in parts:
        if isinstance(p, sympy.StrictLessThan) and p.lhs in lows:
            out.append(f"0 <= {p.lhs} < {p.rhs}")
        elif not (isinstance(p, sympy.LessThan) and p.lhs == 0 and _has_upper(parts, p.rhs)):
            out.append(str(p))
    return " and ".join(out)


def _has_upper(parts, expr) -> bool:
    return any(isinstance(p, sympy.StrictLessThan) and p.lhs == expr for p in parts)


def _reduction(e: TensorExpr) -> str:
    if e.reduction == "none":
        text = str(e.body)
        if e.condition is not sympy.true:
            text += f"  where {_relations(e.condition)}, else {e.identity}"
        return text
    ranges = ", ".join(f"{s}<{d}" for s, d in zip(e.reduce_indices, e.reduce_shape))
    return f"{REDUCE_SIGN[e.reduction]}_{{{ranges}}} {e.body}{_condition(e)}"


def texpr_str(e: TensorExpr) -> str:
    """One expression in readable index notation (two lines with an epilogue)."""
    if e.epilogue is None:
        return f"{_lhs(e)} = {_reduction(e)}"
    return f"{_lhs(e)} = {e.epilogue}\n    {ACC} = {_reduction(e)}"


def texpr_latex(e: TensorExpr) -> str:
    """One expression in LaTeX (sympy.latex for every sub-expression)."""
    lhs = sympy.latex(e.output) if e.indices else sympy.latex(sympy.Symbol(e.name))
    body = sympy.latex(e.body)
    if e.reduction != "none":
        ranges = ", ".join(
            f"{sympy.latex(s)} < {sympy.latex(d)}" for s, d in zip(e.reduce_indices, e.reduce_shape)
        )
        body = f"{REDUCE_LATEX[e.reduction]}_{{{ranges}}} {body}"
    if e.condition is not sympy.true:
        body += rf" \quad \text{{where }} {sympy.latex(e.condition)}"
    if e.epilogue is None:
        return f"{lhs} = {body}"
    return f"{lhs} = {sympy.latex(e.epilogue)}, \\quad {sympy.latex(ACC)} = {body}"


def texpr_text(graph: Graph, latex: bool = False) -> str:
    """Every node's tensor expressions, in topological order, one block a node."""
    fmt = texpr_latex if latex else texpr_str
    blocks = [f"texpr {graph.name}"]
    for node in graph.topological_nodes():
        try:
            exprs = texpr_of(graph, node)
        except UnsupportedError as error:
            blocks.append(f"# {node.name} ({node.op}): {error}")
            continue
        lines = [f"# {node.name} ({node.op})"] + [fmt(e) for e in exprs]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
