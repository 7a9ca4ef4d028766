"""Text forms of tensor expressions: readable index notation and LaTeX.

Stage: TensorExpr -> str, for `convc show --stage texpr [--latex]`. Deterministic:
names come from the graph, nodes are printed in topological order, and sympy's
canonical printing orders terms.

    y[n, o, i, j] = Σ_{c<3, a<5, b<5} w[o, c, a, b]*x[n, c, a + 2*i - 1, b + 2*j - 1]  where ...

An epilogue is printed on the defining line with `acc` standing for the reduction,
which follows on an indented line. Index expressions are printed over a common
denominator, `(u2 + 1 - a)/2` rather than `-a/2 + u2/2 + 1/2`; conditions read
`0 <= u < S`, `a == b`, `x mod 2 == 0`, and piecewise values `(p if c else q)`.
"""

from __future__ import annotations

import sympy
from sympy.printing.str import StrPrinter

from ir import Graph, UnsupportedError

from .expr import ACC, TensorExpr
from .rules import texpr_of

REDUCE_SIGN = {"sum": "Σ", "max": "max"}
REDUCE_LATEX = {"sum": r"\sum", "max": r"\max"}


class _IndexPrinter(StrPrinter):
    """sympy's str form with index-friendly fractions, relations and piecewise values."""

    printmethod = "_convc_str"  # not Indexed's own _sympystr, so _print_Indexed applies

    def _print_Indexed(self, expr):
        idx = ", ".join(self._print(sympy.together(i)) for i in expr.indices)
        return f"{expr.base.label}[{idx}]"

    def _print_Equality(self, expr):
        return f"{self._print(sympy.together(expr.lhs))} == {self._print(expr.rhs)}"

    def _print_Unequality(self, expr):
        return f"{self._print(expr.lhs)} != {self._print(expr.rhs)}"

    def _print_Max(self, expr):
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr):
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_Mod(self, expr):
        return f"({self._print(expr.args[0])}) mod {self._print(expr.args[1])}"

    def _print_Piecewise(self, expr):
        *pairs, (last, _) = expr.args
        text = self._print(last)
        for value, cond in reversed(pairs):
            text = f"{self._print(value)} if {_relations(cond)} else {text}"
        return f"({text})"


def show(expr) -> str:
    return _IndexPrinter().doprint(expr)


def _lhs(e: TensorExpr) -> str:
    return f"{e.name}[{', '.join(map(str, e.indices))}]" if e.indices else e.name


def _condition(e: TensorExpr) -> str:
    return "" if e.condition is sympy.true else f"  where {_relations(e.condition)}"


def _relations(cond) -> str:
    """`0 <= u < S` chains instead of sympy's `(0 <= u) & (u < S)`."""
    parts = list(cond.args) if isinstance(cond, sympy.And) else [cond]
    lows = {p.rhs for p in parts if isinstance(p, sympy.LessThan) and p.lhs == 0}
    uppers = {p.lhs for p in parts if isinstance(p, sympy.StrictLessThan)}
    out = []
    for p in parts:
        if isinstance(p, sympy.StrictLessThan) and p.lhs in lows:
            out.append(f"0 <= {show(sympy.together(p.lhs))} < {show(p.rhs)}")
        elif isinstance(p, sympy.LessThan) and p.lhs == 0 and p.rhs in uppers:
            continue
        elif isinstance(p, (sympy.LessThan, sympy.StrictLessThan)):
            sign = "<=" if isinstance(p, sympy.LessThan) else "<"
            out.append(f"{show(sympy.together(p.lhs))} {sign} {show(sympy.together(p.rhs))}")
        else:
            out.append(show(p))
    return " and ".join(out)


def _reduction(e: TensorExpr) -> str:
    if e.reduction == "none":
        text = show(e.body)
        if e.condition is not sympy.true:
            text += f"  where {_relations(e.condition)}, else {show(e.identity)}"
        return text
    ranges = ", ".join(f"{s}<{show(d)}" for s, d in zip(e.reduce_indices, e.reduce_shape))
    return f"{REDUCE_SIGN[e.reduction]}_{{{ranges}}} {show(e.body)}{_condition(e)}"


def texpr_str(e: TensorExpr) -> str:
    """One expression in readable index notation (two lines with an epilogue)."""
    if e.epilogue is None:
        return f"{_lhs(e)} = {_reduction(e)}"
    return f"{_lhs(e)} = {show(e.epilogue)}\n    {ACC} = {_reduction(e)}"


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
