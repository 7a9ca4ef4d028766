"""Index arithmetic: sympy index expressions -> i64 IR, and their shape in a vector variable.

Stage: used by the kernel emitter. Supported sympy nodes: Integer, Symbol (looked up by name
in the environment), Add, Mul (integer coefficients), ``floor``/``ceiling`` of a quotient by
a positive integer, ``Mod``, ``Min``, ``Max``, and Pow with a small positive integer
exponent. Anything else (a rational that is not integral, an unknown symbol) raises
`IndexCodegenError`, which the kernel emitter turns into a `CodegenError` naming the kernel.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import sympy
from llvmlite import ir

from .llvmutil import floordiv, i64, smax, smin

NONLINEAR = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Min, sympy.Max)


class IndexCodegenError(Exception):
    """An index expression codegen cannot turn into integer arithmetic."""


class IndexEmitter:
    """Emits index expressions into one function, reusing values already computed.

    The cache is a stack of scopes that mirrors dominance: a value computed in an enclosing
    block is reused inside nested loops and branches; `scope()` opens a scope for a nested
    block and drops what was computed inside it on exit. Keys include the IR values bound to
    the expression's symbols, so an unrolled or per-lane rebinding of a variable never hits
    a stale entry. (The floor/Mod of fused loop indices otherwise dominate kernel IR size.)
    """

    def __init__(self, b: ir.IRBuilder, env: dict[str, ir.Value]):
        self.b, self.env = b, env
        self._scopes: list[dict] = [{}]

    @contextmanager
    def scope(self):
        self._scopes.append({})
        try:
            yield
        finally:
            self._scopes.pop()

    def emit(self, e: sympy.Expr) -> ir.Value:
        """Emit `e` as i64 arithmetic over the values bound in `env`."""
        if e.is_Integer:
            return i64(int(e))
        if e.is_Symbol:
            if e.name not in self.env:
                raise IndexCodegenError(f"unknown index symbol '{e.name}'")
            return self.env[e.name]
        bound = tuple(self.env.get(name) for name in symbol_names(e))
        key = (e, tuple(map(id, bound)))
        for scope in reversed(self._scopes):
            if key in scope:
                return scope[key][0]
        value = self._emit_compound(e)
        self._scopes[-1][key] = (value, bound)  # holding `bound` keeps the ids in the key valid
        return value

    def _emit_compound(self, e: sympy.Expr) -> ir.Value:
        b = self.b
        if isinstance(e, (sympy.floor, sympy.ceiling)):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            if not (den.is_Integer and den > 0):
                raise IndexCodegenError(f"{e}: the divisor must be a positive integer")
            if isinstance(e, sympy.floor):
                return self._floordiv(num, den)
            return b.neg(self._floordiv(-num, den))
        if isinstance(e, sympy.Mod):
            x, d = self.emit(e.args[0]), self.emit(e.args[1])
            if e.args[0].is_nonnegative and e.args[1].is_positive:
                return b.urem(x, d)
            return b.sub(x, b.mul(d, floordiv(b, x, d)))
        if isinstance(e, (sympy.Min, sympy.Max)):
            pick = smin if isinstance(e, sympy.Min) else smax
            args = [self.emit(a) for a in e.args]
            out = args[0]
            for a in args[1:]:
                out = pick(b, out, a)
            return out
        return self._emit_arith(e)

    def _floordiv(self, num: sympy.Expr, den: sympy.Expr) -> ir.Value:
        """``floor(num / den)``; a plain unsigned division when num is provably >= 0."""
        x = self.emit(num)
        if num.is_nonnegative:
            return self.b.udiv(x, i64(int(den)))
        return floordiv(self.b, x, i64(int(den)))

    def _emit_arith(self, e: sympy.Expr) -> ir.Value:
        b = self.b
        if isinstance(e, sympy.Add):
            out = None
            for term in e.args:
                v = self.emit(term)
                out = v if out is None else b.add(out, v, flags=("nsw",))
            return out
        if isinstance(e, sympy.Mul):
            coeff, rest = e.as_coeff_Mul()
            if not coeff.is_Integer:
                raise IndexCodegenError(f"{e} is not an integer expression (coefficient {coeff})")
            factors = sympy.Mul.make_args(rest)
            out = self.emit(factors[0])
            for f in factors[1:]:
                out = b.mul(out, self.emit(f), flags=("nsw",))
            return out if coeff == 1 else b.mul(out, i64(int(coeff)), flags=("nsw",))
        if isinstance(e, sympy.Pow) and e.exp.is_Integer and 0 < e.exp <= 4:
            base = self.emit(e.base)
            out = base
            for _ in range(int(e.exp) - 1):
                out = b.mul(out, base, flags=("nsw",))
            return out
        raise IndexCodegenError(f"unsupported index expression {e} ({type(e).__name__})")


def emit_index(b: ir.IRBuilder, e: sympy.Expr, env: dict[str, ir.Value]) -> ir.Value:
    """One-off emission of `e` (no reuse across calls)."""
    return IndexEmitter(b, env).emit(e)


@lru_cache(maxsize=65536)
def symbol_names(e: sympy.Expr) -> tuple[str, ...]:
    """Sorted names of the free symbols of `e` (cached: sympy recomputes them every time)."""
    return tuple(sorted(s.name for s in e.free_symbols))


def depends_on(e: sympy.Expr, var: str) -> bool:
    return var in symbol_names(e)


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
