"""Splitting an output axis so bound checks stay out of its interior.

Stage: part of lowering. Input: a tensor expression's condition (a conjunction
of affine bounds such as `0 <= 2*j + b - 1` and `2*j + b - 1 < 28`), one output
axis `v` and the ranges of the reduction indices. Output: `[lo, hi)`, the
positions of `v` where every bound mentioning `v` holds for *all* reduction
index values, as sympy expressions (symbolic sizes give `Max`/`Min`), or None
when some bound on `v` is not of that form (then nothing is split).

Inside `[lo, hi)` the lowering drops those bounds (and vectorizes); the borders
`[0, lo)` and `[hi, extent)` keep them, so every access stays in bounds.
"""

from __future__ import annotations

import sympy

_GE_ZERO = {
    sympy.Le: lambda a, b: b - a,
    sympy.Lt: lambda a, b: b - a - 1,
    sympy.Ge: lambda a, b: a - b,
    sympy.Gt: lambda a, b: a - b - 1,
}


def conjuncts(cond) -> list:
    """The atoms of a conjunction (`[]` for True)."""
    if cond == sympy.true:
        return []
    return list(cond.args) if isinstance(cond, sympy.And) else [cond]


def _worst_case(expr, reduce_ranges: dict):
    """The minimum of an affine `expr` over the reduction ranges, or None if not affine."""
    expr = sympy.expand(expr)
    for sym, extent in reduce_ranges.items():
        coeff = expr.coeff(sym)
        if coeff.free_symbols & set(reduce_ranges) or not coeff.is_number:
            return None
        expr = expr.subs(sym, 0 if coeff >= 0 else extent - 1)
    return expr


def _bound(atom, v, reduce_ranges):
    """('lo', value) or ('hi', value) that `atom` puts on v, or None when it cannot."""
    if type(atom) not in _GE_ZERO:
        return None
    expr = _worst_case(_GE_ZERO[type(atom)](*atom.args), reduce_ranges)
    if expr is None:
        return None
    coeff = expr.coeff(v)
    rest = sympy.expand(expr - coeff * v)
    if not coeff.is_number or coeff == 0 or v in rest.free_symbols:
        return None
    if coeff > 0:
        return "lo", sympy.ceiling(-rest / coeff)
    return "hi", sympy.floor(rest / -coeff) + 1


def interior(atoms, v, extent, reduce_ranges: dict, out_vars) -> tuple | None:
    """`(lo, hi)` of the interior of axis `v`, or None when `atoms` cannot be split on `v`."""
    lows, highs = [sympy.Integer(0)], [sympy.sympify(extent)]
    for atom in atoms:
        if v not in atom.free_symbols:
            continue
        if (atom.free_symbols & set(out_vars)) - {v}:
            return None
        found = _bound(atom, v, reduce_ranges)
        if found is None:
            return None
        (lows if found[0] == "lo" else highs).append(found[1])
    lo = sympy.Min(sympy.Max(*lows), extent)
    hi = sympy.Max(lo, sympy.Min(*highs))
    return lo, hi
