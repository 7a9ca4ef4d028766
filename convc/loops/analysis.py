"""Index analysis shared by the loop-IR verifier and codegen, and index substitution.

Stage: loop IR (sympy only). `known_multiple` proves divisibility of an index expression:
the verifier uses it to check that arena offsets are multiples of 64 for every binding of the
symbols, codegen to give vector loads and stores the alignment they provably have.
`substitute` rewrites the index symbols of a statement tree.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import sympy


@lru_cache(maxsize=65536)
def known_multiple(e: sympy.Expr, var: str = "", var_multiple: int = 1) -> int:
    """A positive integer that divides `e` for all values of its symbols, given that the
    symbol named `var` is always a multiple of `var_multiple` (0 means e == 0: divisible by
    anything). Conservative: 1 when nothing is known."""
    e = sympy.expand(e)
    if e.is_Integer:
        return abs(int(e))
    if e.is_Symbol:
        return var_multiple if e.name == var else 1
    if isinstance(e, (sympy.Add, sympy.Max, sympy.Min)):  # Max/Min: one of the arguments
        return math.gcd(*(known_multiple(t, var, var_multiple) for t in e.args))
    if isinstance(e, sympy.Mul):
        out = 1
        for f in e.args:
            out *= known_multiple(f, var, var_multiple)
        return out
    return 1


def substitute(node, mapping: dict):
    """`node` (a loop-IR statement or value, or a tuple of them) with the index symbols in
    `mapping` replaced by their expressions everywhere: indices, bounds, `Index` values.
    Local and buffer names are kept. Used to place one nest's body inside another's loops
    (`convc.lower.pool_fusion`)."""
    if isinstance(node, sympy.Basic):
        return node.xreplace(mapping)
    if isinstance(node, tuple):
        return tuple(substitute(item, mapping) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {
            f.name: substitute(getattr(node, f.name), mapping) for f in dataclasses.fields(node)
        }
        return dataclasses.replace(node, **changes)
    return node
