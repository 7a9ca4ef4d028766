"""Tensor expressions: each compute op's one definition in sympy index notation.

`texpr_of(graph, node)` gives a node's expressions (see `expr.TensorExpr` for
their meaning), `texpr_text(graph)` prints a whole graph's (`--stage texpr`).
The family modules register their rules on import.
"""

from . import conv, dense, elementwise, loss, movement, norm, pool, serialize  # noqa: F401  (registration)
from .expr import ACC, REDUCTIONS, TensorExpr, access, accesses, in_bounds, index, tensor
from .printer import texpr_latex, texpr_str, texpr_text
from .rules import RULES, texpr_of

__all__ = [
    "ACC",
    "REDUCTIONS",
    "RULES",
    "TensorExpr",
    "access",
    "accesses",
    "in_bounds",
    "index",
    "tensor",
    "texpr_latex",
    "texpr_of",
    "texpr_str",
    "texpr_text",
]
