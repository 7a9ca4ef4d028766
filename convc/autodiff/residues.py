"""Splitting a derived expression's reduction by residue: no loop over rejected positions.

Stage: TensorExpr -> TensorExpr (applied to every derived adjoint part).

Solving `s*i + d*a - p = u` for the output index i leaves the condition
`(u + p - d*a) mod s == 0` on the tap a, so a plain loop over a would reject all
but one tap in s. When gcd(d, s) == 1 the taps that pass are exactly
`a = r + s*t` with `r = (u + p) * d^-1 mod s` and `t < ceil(K/s)`; substituting
that (with `X mod s` written `X - s*floor(X/s)`, so the gradient's index
`(u + p - d*a)/s` simplifies to integer arithmetic such as `floor((u + 1)/2) - t`)
removes the condition and the rejected iterations. The pre-split form, which
shows the divisibility condition, is kept (its right-hand side, as text and as
LaTeX) in attrs["derived"] and attrs["derived_latex"] for the printer.
"""

from __future__ import annotations

import math
from dataclasses import replace

import sympy

from convc.texpr import TensorExpr, index
from convc.texpr.printer import texpr_latex, texpr_str


def _divisibility(cond):
    """The parts of a conjunction of the form Eq(Mod(lin, s), 0) with an integer s > 1."""
    parts = cond.args if isinstance(cond, sympy.And) else (cond,)
    return [
        p
        for p in parts
        if isinstance(p, sympy.Eq)
        and p.rhs == 0
        and isinstance(p.lhs, sympy.Mod)
        and p.lhs.args[1].is_Integer
        and p.lhs.args[1] > 1
    ]


def _tap(e: TensorExpr, lin, stride):
    """(a, X) such that lin ≡ 0 (mod stride) iff a ≡ X (mod stride), for a reduction index a."""
    expanded = sympy.expand(lin)
    for a in e.reduce_indices:
        coeff = expanded.coeff(a)
        rest = sympy.expand(expanded - coeff * a)
        if not coeff.is_Integer or coeff == 0 or a in rest.free_symbols:
            continue
        if math.gcd(int(coeff), stride) != 1:
            continue
        if coeff < 0:
            return a, rest * pow(-int(coeff), -1, stride)
        return a, -rest * pow(int(coeff), -1, stride)
    return None


def split_residues(e: TensorExpr) -> TensorExpr:
    """e with each solvable divisibility condition replaced by a stride-s tap loop."""
    derived = e
    for part in _divisibility(e.condition):
        lin, stride = part.lhs.args[0], int(part.lhs.args[1])
        found = _tap(e, lin, stride)
        if found is None:
            continue
        a, target = found
        t = index(f"{a}_{stride}")
        extent = e.reduce_shape[e.reduce_indices.index(a)]
        value = target - stride * sympy.floor(target / stride) + stride * t
        others = [p for p in sympy.And.make_args(e.condition) if p != part]
        e = replace(
            e,
            body=e.body.subs(a, value),
            condition=sympy.And(*(sympy.sympify(p).subs(a, value) for p in others))
            & sympy.Lt(value, extent),
            reduce_indices=tuple(t if r == a else r for r in e.reduce_indices),
            reduce_shape=tuple(
                sympy.ceiling(sympy.Rational(1, stride) * d) if r == a else d
                for r, d in zip(e.reduce_indices, e.reduce_shape)
            ),
        )
    if e is derived:
        return e
    shown = {
        "derived": texpr_str(derived).split(" = ", 1)[1],
        "derived_latex": texpr_latex(derived).split(" = ", 1)[1],
    }
    return replace(e, attrs={**e.attrs, **shown})
