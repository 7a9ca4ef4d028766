"""Tensor expressions of pooling (1-D, 2-D, 3-D) and global pooling.

max_pool   y[n, c, i..] = max_{a..} x[n, c, s*i + d*a - p..]  where 0 <= s*i + d*a - p < S
           (terms outside the input are the max identity -inf: padding never wins)
avg_pool   two steps, the window sum and its divisor:
           count[i..]  = Σ_{a..} 1  where the sample counts: inside the input
                         (count_include_pad=0) or inside the input or its declared
                         padding, -p_begin <= s*i + d*a - p < S + p_end
                         (count_include_pad=1); ceil_mode's extra positions past
                         the right padding never count
           y[n, c, i..] = acc / count[i..],  acc = Σ_{a..} x[n, c, s*i + d*a - p..]
                          where 0 <= s*i + d*a - p < S
global_*   a sum (divided by the spatial size) or max over every spatial position.
"""

from __future__ import annotations

import sympy

from ir.ops.window import resolve_pads

from .conv import SPATIAL, TAPS
from .expr import ACC, TensorExpr, access, index
from .rules import bound_condition, dtype_of, rule, shape_of, temp_name


def _window(graph, node):
    """Output and tap symbols, their ranges, sample positions, pads and shapes."""
    x, y = node.inputs[0], node.outputs[0]
    x_shape, y_shape = shape_of(graph, x), shape_of(graph, y)
    rank = len(x_shape) - 2
    attrs = node.attrs
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    pads = resolve_pads(x_shape[2:], kernel, strides, dilations, attrs["pads"], attrs["auto_pad"])
    out_sp = [index(s) for s in SPATIAL[:rank]]
    taps = [index(t) for t in TAPS[:rank]]
    ranges = dict(zip(out_sp, y_shape[2:])) | dict(zip(taps, kernel))
    positions = [strides[k] * out_sp[k] + dilations[k] * taps[k] - pads[k] for k in range(rank)]
    return out_sp, taps, ranges, positions, pads, x_shape, y_shape


def _window_condition(positions, pads, spatial, ranges, include_pad: bool):
    rank = len(positions)
    parts = []
    for k in range(rank):
        if include_pad:
            shifted = positions[k] + pads[k]
            parts.append(bound_condition(shifted, spatial[k] + pads[k] + pads[rank + k], ranges))
        else:
            parts.append(bound_condition(positions[k], spatial[k], ranges))
    return sympy.And(*parts)


def _pool_attrs(node):
    attrs = node.attrs
    return {
        "family": "pool",
        "strides": tuple(attrs["strides"]),
        "dilations": tuple(attrs["dilations"]),
        "kernel_shape": tuple(attrs["kernel_shape"]),
    }


@rule("max_pool", "avg_pool")
def pool_texpr(graph, node):
    x, y = node.inputs[0], node.outputs[0]
    out_sp, taps, ranges, positions, pads, x_shape, y_shape = _window(graph, node)
    n, c = index("n"), index("c")
    common = {
        "reduce_indices": tuple(taps),
        "reduce_shape": tuple(node.attrs["kernel_shape"]),
        "dtype": dtype_of(graph, y),
        "op": node.op,
        "node": node.name,
    }
    inside = _window_condition(positions, pads, x_shape[2:], ranges, include_pad=False)
    body = access(x, (n, c, *positions))
    attrs = _pool_attrs(node) | {"pads": tuple(pads)}
    if node.op == "max_pool":
        return [
            TensorExpr(
                y, (n, c, *out_sp), y_shape, body, "max", condition=inside, attrs=attrs, **common
            )
        ]
    count = temp_name(graph, node, "count")
    counted = _window_condition(
        positions, pads, x_shape[2:], ranges, include_pad=bool(node.attrs["count_include_pad"])
    )
    return [
        TensorExpr(
            count,
            tuple(out_sp),
            y_shape[2:],
            sympy.Integer(1),
            "sum",
            condition=counted,
            role="temp",
            attrs=attrs,
            **common,
        ),
        TensorExpr(
            y,
            (n, c, *out_sp),
            y_shape,
            body,
            "sum",
            condition=inside,
            epilogue=ACC / access(count, out_sp),
            attrs=attrs,
            **common,
        ),
    ]


@rule("global_avg_pool", "global_max_pool")
def global_pool_texpr(graph, node):
    x, y = node.inputs[0], node.outputs[0]
    x_shape, y_shape = shape_of(graph, x), shape_of(graph, y)
    rank = len(x_shape) - 2
    n, c = index("n"), index("c")
    out_sp = [index(s) for s in SPATIAL[:rank]]
    taps = [index(t) for t in TAPS[:rank]]
    is_avg = node.op == "global_avg_pool"
    size = sympy.Mul(*x_shape[2:])
    return [
        TensorExpr(
            y,
            (n, c, *out_sp),
            y_shape,
            access(x, (n, c, *taps)),
            "sum" if is_avg else "max",
            reduce_indices=tuple(taps),
            reduce_shape=tuple(x_shape[2:]),
            epilogue=ACC / size if is_avg else None,
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "pool", "global": True},
        )
    ]
