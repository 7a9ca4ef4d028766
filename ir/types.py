"""Tensor types: a dtype and a shape whose dims are sympy expressions.

Dims are kept as `sympy.Integer` when known and as positive-integer symbols
(the batch `N`, sometimes spatial sizes) otherwise, so shape rules can be
written once and hold for concrete and symbolic sizes alike. Symbols are
interned by name: `dim("N")` always returns the same symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy

from .errors import ShapeError

#: dtypes a value may have, by NumPy name, with the short form the printer uses.
DTYPES = {
    "float32": "f32",
    "float64": "f64",
    "int64": "i64",
    "int32": "i32",
    "bool": "bool",
}
FLOAT_DTYPES = ("float32", "float64")


@cache
def symbol(name: str) -> sympy.Symbol:
    """The interned positive-integer symbol for a dimension name."""
    return sympy.Symbol(name, integer=True, positive=True)


def dim(value) -> sympy.Expr:
    """Convert an int, a dim name or a sympy expression to a dim expression."""
    if isinstance(value, sympy.Expr):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return sympy.Integer(int(value))
    if isinstance(value, str) and value.isidentifier():
        return symbol(value)
    raise ShapeError(f"dimension {value!r} is neither an int, a name nor a sympy expression")


def is_known(d: sympy.Expr) -> bool:
    """True when a dim is a concrete integer."""
    return isinstance(d, sympy.Integer)


def dim_str(d: sympy.Expr) -> str:
    return str(d).replace(" ", "")


@dataclass(frozen=True)
class TensorType:
    """The type of a value: element dtype and a tuple of dim expressions."""

    shape: tuple
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r}; expected one of {sorted(DTYPES)}")
        object.__setattr__(self, "shape", tuple(dim(d) for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_concrete(self) -> bool:
        return all(is_known(d) for d in self.shape)

    @property
    def free_symbols(self) -> set:
        return set().union(*(d.free_symbols for d in self.shape)) if self.shape else set()

    def concrete_shape(self) -> tuple[int, ...]:
        """The shape as ints; raises ShapeError while any dim is symbolic."""
        if not self.is_concrete:
            raise ShapeError(f"shape {self} is not concrete")
        return tuple(int(d) for d in self.shape)

    def subs(self, bindings: dict) -> TensorType:
        """Substitute symbol values (e.g. `{N: 8}`) into every dim."""
        return TensorType(tuple(sympy.sympify(d).subs(bindings) for d in self.shape), self.dtype)

    def __str__(self) -> str:
        return f"{DTYPES[self.dtype]}[{','.join(dim_str(d) for d in self.shape)}]"
