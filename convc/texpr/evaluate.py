"""Brute-force NumPy evaluation of tensor expressions: the executable meaning of a TensorExpr.

Stage: (TensorExpr, arrays by name, symbol values) -> np.ndarray. Used by the tests
to check every op's definition against the independent NumPy interpreter, and by
the interpreter to run `texpr` nodes (derived gradients, optimizer updates). It
materialises the (output x reduction) index space, in blocks along the first
output axis (`BLOCK_ELEMENTS`), so it suits reference runs on modest shapes; it
makes no further attempt at speed.

Every index symbol becomes an `np.arange` broadcast along its own axis; accesses
are gathered (indices clipped into range: an access is only meaningful where the
condition holds, and terms elsewhere are replaced by the identity before the
reduction), and the remaining scalar algebra is evaluated with `sympy.lambdify`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sympy

from .expr import ACC, TensorExpr

_vmax = sympy.Function("vmax")
_vmin = sympy.Function("vmin")
_verf = sympy.Function("verf")
_vand = sympy.Function("vand")
_vwhere = sympy.Function("vwhere")
_vfloordiv = sympy.Function("vfloordiv")
_NUMERIC = {
    "vmax": lambda *a: functools.reduce(np.maximum, a),
    "vmin": lambda *a: functools.reduce(np.minimum, a),
    "vand": lambda *a: functools.reduce(np.logical_and, a),
    "vwhere": np.where,
    "vfloordiv": lambda n, d: np.floor_divide(np.rint(n).astype(np.int64), d),
    "verf": np.vectorize(math.erf, otypes=[float]),
}


def _integral(rel):
    """A relation between rational index expressions with its denominator cleared.

    (i - 2*a)/3 < 5 becomes i - 2*a - 15 < 0, so that comparisons are exact in
    integer arithmetic rather than decided by float rounding.
    """
    numerator, denominator = sympy.fraction(sympy.together(rel.lhs - rel.rhs))
    if denominator == 1 or not (denominator.is_Integer and denominator > 0):
        return rel
    return rel.func(numerator, 0)


def _where_chain(*pairs):
    """Piecewise((e1, c1), (e2, c2), ...) as where(c1, e1, where(c2, e2, ...))."""
    value, _ = pairs[-1]  # sympy's Piecewise ends with a True condition when total
    for expr, cond in reversed(pairs[:-1]):
        value = _vwhere(cond, expr, value)
    return value


def _exact_floor(arg):
    """floor(n/d) of a rational index expression as integer floor division, not the floor
    of a float quotient (floor(5*(1/3) + 1/3) is 1 in floating point)."""
    numerator, denominator = sympy.fraction(sympy.together(arg))
    integral = all(s.is_integer for s in arg.free_symbols)
    if not (integral and denominator.is_Integer and denominator > 1):
        return sympy.floor(arg)
    return _vfloordiv(sympy.expand(numerator), denominator)


def _portable(expr):
    """Rewrite Piecewise/Max/Min/And/erf into names lambdify maps to elementwise NumPy functions."""
    expr = expr.replace(lambda e: isinstance(e, sympy.core.relational.Relational), _integral)
    expr = expr.replace(sympy.floor, _exact_floor)
    expr = expr.replace(sympy.Piecewise, _where_chain)
    expr = expr.replace(sympy.Max, lambda *a: _vmax(*a))
    expr = expr.replace(sympy.Min, lambda *a: _vmin(*a))
    expr = expr.replace(sympy.And, lambda *a: _vand(*a))
    return expr.replace(sympy.erf, lambda a: _verf(a))


@functools.lru_cache(maxsize=4096)
def _compile(expr: sympy.Expr):
    """(outer accesses, free symbols, NumPy function of both) for a bound expression; cached,
    since the interpreter evaluates the same derived programs on every run."""
    outer = _outermost(expr)
    names = {a: sympy.Dummy(f"t{k}") for k, a in enumerate(outer)}
    portable = _portable(expr.xreplace(names))
    free = tuple(sorted(portable.free_symbols - set(names.values()), key=str))
    fn = sympy.lambdify(
        [names[a] for a in outer] + list(free), portable, modules=[_NUMERIC, "numpy"]
    )
    return outer, free, fn


class _Space:
    """A block of the index space: a NumPy axis per index symbol, over [start, stop)."""

    def __init__(self, symbols, ranges, env, bindings, values=None):
        self.axes = {s: k for k, s in enumerate(symbols)}
        self.ranges = ranges
        self.env = env
        self.bindings = bindings
        self.values = values or {}  # symbols standing for arrays over the block (acc)

    def grid(self, sym) -> np.ndarray:
        if sym in self.values:
            return self.values[sym]
        shape = [1] * len(self.axes)
        start, stop = self.ranges[self.axes[sym]]
        shape[self.axes[sym]] = stop - start
        return np.arange(start, stop).reshape(shape)

    def eval(self, expr) -> np.ndarray:
        """Evaluate a scalar expression over the block (broadcastable result)."""
        outer, free, fn = _compile(sympy.sympify(expr).subs(self.bindings))
        unknown = [s for s in free if s not in self.axes and s not in self.values]
        assert not unknown, f"unbound symbols {unknown} in {expr}"
        values = [self.gather(a) for a in outer] + [self.grid(s) for s in free]
        return np.asarray(fn(*values))

    def gather(self, a: sympy.Indexed) -> np.ndarray:
        array = np.asarray(self.env[str(a.base)])
        array = array.reshape(1) if array.ndim == 0 else array
        assert array.ndim == len(a.indices), (a, array.shape)
        idx = []
        for k, i in enumerate(a.indices):
            position = np.rint(self.eval(i)).astype(np.int64)
            idx.append(np.clip(position, 0, array.shape[k] - 1))
        return array[tuple(np.broadcast_arrays(*idx))] if idx else array


def _outermost(expr) -> list:
    found = expr.atoms(sympy.Indexed)
    inner = {b for a in found for i in a.indices for b in i.atoms(sympy.Indexed)}
    return sorted(found - inner, key=sympy.srepr)


def _ints(dims, bindings) -> list[int]:
    return [int(sympy.sympify(d).subs(bindings)) for d in dims]


#: elements of the (output x reduction) space materialised at once; larger spaces go in blocks
BLOCK_ELEMENTS = 1 << 22


def _block(e: TensorExpr, env, bindings, ranges, red_shape) -> np.ndarray:
    """e over one block of output positions (all reduction positions): shape block + 1s."""
    symbols = (*e.indices, *e.reduce_indices)
    full_ranges = list(ranges) + [(0, d) for d in red_shape]
    space = _Space(symbols, full_ranges, env, bindings)
    full = [stop - start for start, stop in full_ranges]
    terms = np.broadcast_to(space.eval(e.body), full).astype(np.float64)
    if e.condition is not sympy.true:
        keep = np.broadcast_to(space.eval(e.condition), full)
        terms = np.where(keep, terms, space.eval(e.identity))
    axes = tuple(range(len(ranges), len(full)))
    if e.reduction == "sum":
        terms = terms.sum(axis=axes, keepdims=True)
    elif e.reduction == "max":
        terms = terms.max(axis=axes, keepdims=True, initial=-np.inf)
    if e.epilogue is not None:
        space.values = {ACC: terms}
        terms = np.broadcast_to(space.eval(e.epilogue), terms.shape)
    return terms


def _blocks(out_shape, size):
    """Output ranges covering the output, split along axis 0 so a block stays near BLOCK_ELEMENTS."""
    if not out_shape:
        return [[]]
    rest = [(0, d) for d in out_shape[1:]]
    step = max(1, out_shape[0] * BLOCK_ELEMENTS // max(size, 1))
    return [[(s, min(s + step, out_shape[0])), *rest] for s in range(0, out_shape[0], step)]


def evaluate(
    e: TensorExpr, env: dict, bindings: dict | None = None, float_dtype=None
) -> np.ndarray:
    """The array `e` defines, reading tensors from `env` and symbol values from `bindings`.

    Arithmetic is float64; the result has e's dtype, or `float_dtype` for a float
    result when given (the interpreter's run dtype). Large index spaces are
    evaluated in blocks along the first output axis.
    """
    bindings = bindings or {}
    out_shape = _ints(e.shape, bindings)
    red_shape = _ints(e.reduce_shape, bindings)
    dtype = np.dtype(e.dtype)
    if float_dtype is not None and dtype.kind == "f":
        dtype = np.dtype(float_dtype)
    result = np.empty(out_shape, dtype=dtype)
    for ranges in _blocks(out_shape, int(np.prod(out_shape + red_shape))):
        block = _block(e, env, bindings, ranges, red_shape)
        shape = [stop - start for start, stop in ranges]
        block = np.broadcast_to(block, shape + [1] * len(red_shape)).reshape(shape)
        result[tuple(slice(start, stop) for start, stop in ranges)] = block
    return result


def evaluate_all(exprs, env: dict, bindings: dict | None = None, float_dtype=None) -> dict:
    """Evaluate a node's expressions in order (temporaries feed later ones); all results by name."""
    env = dict(env)
    results = {}
    for e in exprs:
        results[e.name] = env[e.name] = evaluate(e, env, bindings, float_dtype)
    return results
