"""Tensor-expression programs as plain data, for the generic `texpr` op.

Stage: list[TensorExpr] <-> str. `ir` never imports convc, so a node of the
`texpr` op (ir/ops/texpr_op.py) carries its program as a JSON list of
TensorExpr fields with every sympy part in `sympy.srepr` form (exact, with the
symbols' assumptions) and its readable form in the `formula` attribute.
`texpr_of` on such a node returns the program unchanged, so the lowering and the
interpreter see derived expressions exactly like the ops' own.
"""

from __future__ import annotations

import json

import sympy

from .expr import TensorExpr, rename_tensors
from .printer import texpr_str
from .rules import rule

_SYMPY_FIELDS = (
    "indices",
    "shape",
    "body",
    "reduce_indices",
    "reduce_shape",
    "condition",
    "otherwise",
    "epilogue",
)
_PLAIN_FIELDS = ("name", "reduction", "dtype", "op", "node", "role")


def _plain(value):
    """Attribute values JSON can hold; sympy numbers become ints or strings."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, sympy.Integer):
        return int(value)
    return str(value)


def program_to_str(exprs: list[TensorExpr], input_shapes: dict) -> str:
    """The program and the shapes of the graph values it reads, as a JSON string.

    The input shapes let an executor bind symbolic dims (N) from its arrays.
    """
    items = []
    for e in exprs:
        item = {f: getattr(e, f) for f in _PLAIN_FIELDS}
        for f in _SYMPY_FIELDS:
            value = getattr(e, f)
            value = sympy.Tuple(*value) if isinstance(value, tuple) else value
            item[f] = None if value is None else sympy.srepr(value)
        item["attrs"] = {k: _plain(v) for k, v in e.attrs.items()}
        items.append(item)
    shapes = {k: sympy.srepr(sympy.Tuple(*v)) for k, v in input_shapes.items()}
    return json.dumps({"inputs": shapes, "exprs": items}, sort_keys=True)


def program_inputs(text: str) -> dict:
    """The shapes (tuples of sympy dims) of the graph values a program reads."""
    return {k: tuple(sympy.sympify(v)) for k, v in json.loads(text)["inputs"].items()}


def program_from_str(text: str) -> list[TensorExpr]:
    exprs = []
    for item in json.loads(text)["exprs"]:
        fields = {f: item[f] for f in _PLAIN_FIELDS}
        for f in _SYMPY_FIELDS:
            value = None if item[f] is None else sympy.sympify(item[f])
            fields[f] = tuple(value) if isinstance(value, sympy.Tuple) else value
        attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in item["attrs"].items()}
        exprs.append(TensorExpr(attrs=attrs, **fields))
    return exprs


def program_formula(exprs: list[TensorExpr]) -> str:
    """One line: the readable steps joined by '; '."""
    return "; ".join(" ".join(texpr_str(e).split()) for e in exprs)


@rule("texpr")
def texpr_node_texpr(graph, node):
    """The node's program, its outputs named as the node's (a pass may rename a value)."""
    exprs = program_from_str(node.attrs["program"])
    defined = [e.name for e in exprs if e.role == "output"]
    mapping = {old: new for old, new in zip(defined, node.outputs) if old != new}
    return rename_tensors(exprs, mapping) if mapping else exprs
