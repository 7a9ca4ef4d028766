"""Binding run-time inputs to a graph's input types.

Stage: the boundary between a user's NumPy arrays and any executor (the NumPy
interpreter, the native runtime). Input: a graph and a dict of arrays. Output:
the value of every dim symbol of the inputs (e.g. `{N: 3}`), after checking
that each array has exactly the declared rank, dtype and sizes.

Invariants: nothing is cast or copied here; a mismatch raises `InputError`
naming the input and the offending values. Dims are checked in three steps:
known sizes first, then plain symbols (a symbol bound by two inputs must get
the same value), then composite dims such as `2*N`, which are solved when they
hold the only unbound symbol and otherwise checked after substitution.
Finally every value's type is evaluated with the bindings, so an input too
small for a window of the graph is reported here rather than mid-run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy

from .errors import InputError
from .types import FLOAT_DTYPES, TensorType, is_known


def bind_inputs(graph, inputs: Mapping, float_dtype: str | None = None) -> dict[sympy.Symbol, int]:
    """Check `inputs` against `graph`'s inputs and return the dim symbol bindings.

    `float_dtype` (the interpreter's dtype override) lets float inputs also come
    in that dtype; otherwise every array's dtype must equal the declared one.
    """
    _check_names(graph, inputs)
    bindings: dict[sympy.Symbol, int] = {}
    origin: dict[sympy.Symbol, str] = {}
    composite = []
    for name in graph.inputs:
        expected = graph.values[name].type
        array = _check_array(name, inputs[name], expected, float_dtype)
        for axis, (d, size) in enumerate(zip(expected.shape, array.shape)):
            if is_known(d):
                if int(d) != size:
                    raise _dim_error(name, axis, size, f"{d}", expected, array)
            elif isinstance(d, sympy.Symbol):
                _bind(bindings, origin, d, size, name, axis, expected, array)
            else:
                composite.append((name, axis, d, size, expected, array))
    _solve_composite(bindings, origin, composite)
    check_value_sizes(graph, bindings)
    return bindings


def check_value_sizes(graph, bindings: dict) -> None:
    """Raise InputError when the bound sizes make a value's dim smaller than 1.

    With symbolic spatial sizes, shape inference cannot tell at build time
    whether an input is large enough for every window; substituting the
    bindings into every value's type tells now (a too-small input gives an
    output size of 0 or less).
    """
    for value in graph.values.values():
        if value.type.is_concrete:
            continue
        dims = value.type.subs(bindings).shape
        if any(is_known(d) and int(d) < 1 for d in dims):
            shown = ", ".join(f"{s}={v}" for s, v in sorted(bindings.items(), key=str))
            where = f"node '{value.producer}'" if value.producer else "the graph"
            raise InputError(
                f"inputs with {shown} are too small for the graph: value '{value.name}' of "
                f"{where} would have shape {value.type} = {tuple(dims)}"
            )


def _check_names(graph, inputs) -> None:
    if not isinstance(inputs, Mapping):
        raise InputError(
            f"graph '{graph.name}': inputs must be a dict of arrays keyed by input name "
            f"{graph.inputs}; got {type(inputs).__name__}"
        )
    missing = [n for n in graph.inputs if n not in inputs]
    if missing:
        raise InputError(
            f"graph '{graph.name}': missing input(s) {missing}; expected {_describe(graph)}"
        )
    extra = sorted(str(n) for n in inputs if n not in graph.inputs)
    if extra:
        raise InputError(
            f"graph '{graph.name}': unknown input(s) {extra}; expected {_describe(graph)}"
        )


def _describe(graph) -> str:
    return ", ".join(f"'{n}': {graph.values[n].type}" for n in graph.inputs) or "no inputs"


def _check_array(name: str, array, expected: TensorType, float_dtype: str | None) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InputError(
            f"input '{name}' is a {type(array).__name__}; expected a numpy.ndarray of type "
            f"{expected}"
        )
    if array.ndim != expected.rank:
        raise InputError(
            f"input '{name}' has rank {array.ndim} (shape {array.shape}); expected rank "
            f"{expected.rank} ({expected})"
        )
    allowed = {expected.dtype}
    if float_dtype is not None and expected.dtype in FLOAT_DTYPES:
        allowed.add(float_dtype)
    if array.dtype not in [np.dtype(d) for d in allowed]:
        raise InputError(
            f"input '{name}' has dtype {array.dtype}; expected {' or '.join(sorted(allowed))} "
            f"({expected}); inputs are never cast implicitly, convert with "
            f".astype('{expected.dtype}')"
        )
    return array


def _dim_error(name, axis, size, wanted, expected, array) -> InputError:
    return InputError(
        f"input '{name}' has shape {array.shape}: dim {axis} is {size} but the graph expects "
        f"{wanted} ({expected})"
    )


def _bind(bindings, origin, symbol, size, name, axis, expected, array) -> None:
    """Bind a plain symbol, or check it against the value an earlier dim gave it."""
    if size < 1:
        raise _dim_error(name, axis, size, f"{symbol} >= 1", expected, array)
    if symbol in bindings and bindings[symbol] != size:
        raise InputError(
            f"input '{name}' has shape {array.shape}: dim {axis} gives {symbol}={size}, but "
            f"{origin[symbol]} gave {symbol}={bindings[symbol]} ({expected})"
        )
    if symbol not in bindings:
        bindings[symbol] = size
        origin[symbol] = f"input '{name}' dim {axis}"


def _solve_composite(bindings, origin, composite) -> None:
    """Check dims such as `2*N` after substitution, solving for a lone unbound symbol."""
    pending = list(composite)
    while pending:
        progress = False
        for item in list(pending):
            name, axis, d, size, expected, array = item
            unbound = [s for s in d.free_symbols if s not in bindings]
            if len(unbound) > 1:
                continue
            pending.remove(item)
            progress = True
            if unbound:
                value = _solve(d, unbound[0], size, bindings)
                if value is None:
                    raise _dim_error(name, axis, size, f"{d}", expected, array)
                _bind(bindings, origin, unbound[0], value, name, axis, expected, array)
            elif sympy.sympify(d).subs(bindings) != size:
                wanted = f"{d} = {sympy.sympify(d).subs(bindings)}"
                raise _dim_error(name, axis, size, wanted, expected, array)
        if not progress:
            name, axis, d, size, expected, array = pending[0]
            raise InputError(
                f"input '{name}' has shape {array.shape}: dim {axis} ({d}) does not determine "
                f"its symbols {sorted(map(str, d.free_symbols))} ({expected})"
            )


def _solve(d, symbol, size: int, bindings) -> int | None:
    """The positive integer value of `symbol` making `d` equal `size`, if there is one."""
    try:
        solutions = sympy.solve(sympy.Eq(d.subs(bindings), size), symbol)
    except NotImplementedError:
        return None
    values = [int(s) for s in solutions if isinstance(s, sympy.Integer) and s > 0]
    return values[0] if values else None
