"""The generic `texpr` op: a node computed by a short program of tensor expressions.

Derived computations that have no op of their own (above all the adjoints that
`convc.gradient` derives from the ops' tensor expressions) are carried by this
op, so a gradient graph stays an ordinary graph that the interpreter and the
compiler accept. `ir` never imports convc, so the program travels as plain data:

texpr   inputs: the graph values the program reads (any number, any order)
        attrs:  shape    the output's dims (ints or sympy expressions such as N)
                dtype    the output's dtype
                program  the tensor expressions, serialised by
                         `convc.texpr.serialize` (sympy srepr inside JSON);
                         not printed, since `formula` shows the same content
                formula  the program in readable index notation ("; " between steps)
        output: the value defined by the program's last expression.
"""

from __future__ import annotations

from ..types import DTYPES, TensorType
from .registry import REQUIRED, Attr, define


def infer_texpr(ctx):
    dtype = ctx.attrs["dtype"]
    if dtype not in DTYPES:
        raise ctx.error(f"dtype={dtype!r} is not one of {sorted(DTYPES)}")
    return [TensorType(tuple(ctx.attrs["shape"]), dtype)]


define(
    "texpr",
    ("x",),
    infer_texpr,
    attrs={
        "shape": Attr("ints", REQUIRED),
        "dtype": Attr("str", "float32"),
        "program": Attr("str", REQUIRED, shown=False),
        "formula": Attr("str", ""),
    },
    num_required=0,
    variadic=True,
    family="texpr",
    doc="A program of tensor expressions (derived gradients).",
)
