"""Index arithmetic: sympy index expressions -> i64 IR, and their shape in a vector variable.

Stage: used by the kernel emitter. Supported sympy nodes: Integer, Symbol (looked up by name
in the environment), Add, Mul (integer coefficients), ``floor``/``ceiling`` of a quotient by
a positive integer, ``Mod``, ``Min``, ``Max``, and Pow with a small positive integer
exponent. Anything else (a rational that is not integral, an unknown symbol) raises
`IndexCodegenError`, which the kernel emitter turns into a `CodegenError` naming the kernel.
"""

from __future__ import annotations

import math
from functools import lru_cache

import sympy
from llvmlite import ir

from .llvmutil import floordiv, i64, smax, smin

NONLINEAR = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Min, sympy.Max)


class IndexCodegenError(Exception):
    """An index expression codegen cannot turn into integer arithmetic."""


def emit_index(b: ir.IRBuilder, e: sympy.Expr, env: dict[str, ir.Value]) -> ir.Value:
    """Emit `e` as i64 arithmetic; `env` maps symbol names to i64 values."""
    if e.is_Integer:
        return i64(int(e))
    if e.is_Symbol:
        if e.name not in env:
            raise IndexCodegenError(f"unknown index symbol '{e.name}'")
        return env[e.name]
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        if not (den.is_Integer and den > 0):
            raise IndexCodegenError(f"{e}: the divisor must be a positive integer")
        if isinstance(e, sympy.floor):
            return floordiv(b, emit_index(b, num, env), i64(int(den)))
        return b.neg(floordiv(b, emit_index(b, -num, env), i64(int(den))))
    if isinstance(e, sympy.Mod):
        x, d = emit_index(b, e.args[0], env), emit_index(b, e.args[1], env)
        return b.sub(x, b.mul(d, floordiv(b, x, d)))
    if isinstance(e, (sympy.Min, sympy.Max)):
        pick = smin if isinstance(e, sympy.Min) else smax
        args = [emit_index(b, a, env) for a in e.args]
        out = args[0]
        for a in args[1:]:
            out = pick(b, out, a)
        return out
    return _emit_arith(b, e, env)


def _emit_arith(b: ir.IRBuilder, e: sympy.Expr, env: dict[str, ir.Value]) -> ir.Value:
    if isinstance(e, sympy.Add):
        out = None
        for term in e.args:
            v = emit_index(b, term, env)
            out = v if out is None else b.add(out, v, flags=("nsw",))
        return out
    if isinstance(e, sympy.Mul):
        coeff, rest = e.as_coeff_Mul()
        if not coeff.is_Integer:
            raise IndexCodegenError(f"{e} is not an integer expression (coefficient {coeff})")
        factors = sympy.Mul.make_args(rest)
        out = emit_index(b, factors[0], env)
        for f in factors[1:]:
            out = b.mul(out, emit_index(b, f, env), flags=("nsw",))
        return out if coeff == 1 else b.mul(out, i64(int(coeff)), flags=("nsw",))
    if isinstance(e, sympy.Pow) and e.exp.is_Integer and 0 < e.exp <= 4:
        base = emit_index(b, e.base, env)
        out = base
        for _ in range(int(e.exp) - 1):
            out = b.mul(out, base, flags=("nsw",))
        return out
    raise IndexCodegenError(f"unsupported index expression {e} ({type(e).__name__})")


def depends_on(e: sympy.Expr, var: str) -> bool:
    return any(s.name == var for s in e.free_symbols)


@lru_cache(maxsize=65536)
def stride_in(e: sympy.Expr, var: str) -> sympy.Expr | None:
    """The step of `e` when `var` grows by 1, if `e` is affine in `var`, else None."""
    sym = next((s for s in e.free_symbols if s.name == var), None)
    if sym is None:
        return sympy.Integer(0)
    if any(depends_on(a, var) for a in e.atoms(*NONLINEAR)):
        return None
    d = sympy.expand(sympy.diff(e, sym))
    return None if depends_on(d, var) else d


@lru_cache(maxsize=65536)
def known_multiple(e: sympy.Expr, var: str, var_multiple: int) -> int:
    """A positive integer that divides `e` for all values of its symbols, given that `var`
    is always a multiple of `var_multiple` (0 stands for "any multiple": e == 0)."""
    e = sympy.expand(e)
    if e.is_Integer:
        return abs(int(e))
    if e.is_Symbol:
        return var_multiple if e.name == var else 1
    if isinstance(e, sympy.Add):
        return math.gcd(*(known_multiple(t, var, var_multiple) for t in e.args))
    if isinstance(e, sympy.Mul):
        out = 1
        for f in e.args:
            out *= known_multiple(f, var, var_multiple)
        return out
    return 1
