"""Tensor expressions of the data-movement ops: flatten, reshape, identity, concat, pad.

flatten, reshape and identity are VIEWS (attrs["view"] = True): the output has
the input's elements in the same row-major order, so the lowering may alias the
buffer instead of copying. Their bodies still give the element mapping exactly,
with floor/Mod index arithmetic over the row-major linear position of the axes
that change (leading axes that agree map one to one), so they can be evaluated
and differentiated like any other expression.

concat  y[.., u, ..] = Piecewise((x0[.., u, ..], u < e0), (x1[.., u - e0, ..], u < e0 + e1), ...)
pad     y[idx] = x[idx - p_begin]  where 0 <= idx - p_begin < S on every padded axis,
        else the constant value (a negative pad crops). The pad amounts must be constants.
"""

from __future__ import annotations

import numpy as np
import sympy

from ir import UnsupportedError

from .expr import TensorExpr, access
from .rules import axis_indices, bound_condition, dtype_of, rule, shape_of


def _strides(shape) -> list:
    strides, step = [], sympy.Integer(1)
    for d in reversed(shape):
        strides.append(step)
        step = step * d
    return strides[::-1]


def view_indices(in_shape, out_shape, out_idx) -> tuple:
    """Input indices of output position out_idx when both shapes hold the same row-major order."""
    common = 0
    while (
        common < min(len(in_shape), len(out_shape)) - 1
        and sympy.simplify(in_shape[common] - out_shape[common]) == 0
    ):
        common += 1
    rest_out, rest_in = out_shape[common:], in_shape[common:]
    linear = sum(i * s for i, s in zip(out_idx[common:], _strides(rest_out)))
    mapped = []
    for k, stride in enumerate(_strides(rest_in)):
        position = sympy.floor(linear / stride)
        mapped.append(position if k == 0 else sympy.Mod(position, rest_in[k]))
    return (*out_idx[:common], *mapped)


def _view(graph, node, x) -> list[TensorExpr]:
    y = node.outputs[0]
    in_shape, out_shape = shape_of(graph, x), shape_of(graph, y)
    idx = axis_indices(len(out_shape))
    body = access(x, view_indices(in_shape, out_shape, idx), dtype_of(graph, x))
    return [
        TensorExpr(
            y,
            idx,
            out_shape,
            body,
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "tensor", "view": True},
        )
    ]


@rule("flatten", "reshape", "identity")
def view_texpr(graph, node):
    return _view(graph, node, node.inputs[0])


@rule("concat")
def concat_texpr(graph, node):
    y = node.outputs[0]
    out_shape, axis = shape_of(graph, y), node.attrs["axis"]
    idx = axis_indices(len(out_shape))
    pieces, offset = [], sympy.Integer(0)
    for x in node.inputs:
        extent = shape_of(graph, x)[axis]
        at = (*idx[:axis], idx[axis] - offset, *idx[axis + 1 :])
        offset = offset + extent
        pieces.append((access(x, at, dtype_of(graph, x)), idx[axis] < offset))
    pieces[-1] = (pieces[-1][0], True)
    return [
        TensorExpr(
            y,
            idx,
            out_shape,
            sympy.Piecewise(*pieces),
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "tensor", "axis": axis},
        )
    ]


def _constant(graph, node, k, what) -> np.ndarray | None:
    name = node.inputs[k] if k < len(node.inputs) else None
    if name is None:
        return None
    data = graph.values[name].data
    if data is None:
        raise UnsupportedError(f"pad '{node.name}': {what} '{name}' must be a constant")
    return np.asarray(data).reshape(-1)


@rule("pad")
def pad_texpr(graph, node):
    x, y = node.inputs[0], node.outputs[0]
    in_shape, out_shape = shape_of(graph, x), shape_of(graph, y)
    rank = len(in_shape)
    pads = [int(p) for p in _constant(graph, node, 1, "pads")]
    axes = _constant(graph, node, 3, "axes")
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    idx = axis_indices(rank)
    begins = dict.fromkeys(range(rank), 0) | dict(zip(axes, pads[: len(axes)]))
    at = [idx[a] - begins[a] for a in range(rank)]
    ranges = dict(zip(idx, out_shape))
    condition = sympy.And(*(bound_condition(at[a], in_shape[a], ranges) for a in axes))
    value = node.inputs[2] if len(node.inputs) > 2 else None
    fill = sympy.Integer(0) if value is None else access(value, (0,), dtype_of(graph, value))
    return [
        TensorExpr(
            y,
            idx,
            out_shape,
            access(x, at, dtype_of(graph, x)),
            condition=condition,
            otherwise=fill,
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "tensor"},
        )
    ]
