"""Index analysis shared by the loop-IR verifier and codegen.

Stage: loop IR (sympy only). `known_multiple` proves divisibility of an index expression:
the verifier uses it to check that arena offsets are multiples of 64 for every binding of the
symbols, codegen to give vector loads and stores the alignment they provably have.
"""

from __future__ import annotations

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
