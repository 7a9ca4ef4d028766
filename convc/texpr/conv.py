"""Tensor expressions of convolution and transposed convolution (1-D, 2-D, 3-D).

conv (G groups, C/G input channels and M/G output channels per group):

    y[n, o, i..] = b[o] + Sum_{c < C/G, a.. < K..} x[n, (o // (M/G))*(C/G) + c, s*i + d*a - p..]
                                                   * w[o, c, a..]
                   where 0 <= s*i + d*a - p < S along every spatial axis

conv_transpose, written as the gradient of conv with respect to its input (the
form autodiff derives): every output position u gathers the input positions i
with s*i + d*a - p = u, i.e. i = (u + p - d*a)/s where that division is exact:

    y[n, o, u..] = b[o] + Sum_{c < C/G, a..} x[n, (o // (M/G))*(C/G) + c, (u + p - d*a)/s..]
                                             * w[(o // (M/G))*(C/G) + c, o mod (M/G), a..]
                   where (u + p - d*a) mod s == 0 and 0 <= (u + p - d*a)/s < S

Pads come from the canonical attributes, or from `resolve_pads` / ONNX's
transposed-conv rule while a spatial size is symbolic (then they are sympy
expressions and so are the conditions).
"""

from __future__ import annotations

from types import SimpleNamespace

import sympy

from ir import ShapeError
from ir.ops.conv import transpose_pads
from ir.ops.window import resolve_pads

from .expr import ACC, TensorExpr, access, index
from .rules import bound_condition, dtype_of, rule, shape_of

SPATIAL = ("i", "j", "k")
TAPS = ("a", "b", "e")


def _window_symbols(rank: int):
    return [index(s) for s in SPATIAL[:rank]], [index(t) for t in TAPS[:rank]]


def _bias_epilogue(graph, node, channel):
    """acc + b[o] when the node has a bias, else None (the output is acc)."""
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = node.inputs[2]
        return ACC + access(bias, (channel,), dtype_of(graph, bias))
    return None


def _conv_attrs(node, rank):
    attrs = node.attrs
    return {
        "family": "conv",
        "group": attrs["group"],
        "strides": tuple(attrs["strides"]),
        "dilations": tuple(attrs["dilations"]),
        "kernel_shape": tuple(attrs["kernel_shape"]),
        "rank": rank,
    }


def _operands(graph, node):
    """x, w and the shapes of x, w and y: what both convolutions read."""
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    return x, w, shape_of(graph, x), shape_of(graph, w), shape_of(graph, y)


def _window_sum(graph, node, body, condition, in_per_group, pads):
    """y[n, o, out..] = Sum_{c < in_per_group, taps..} body where condition (+ bias)."""
    y = node.outputs[0]
    y_shape = shape_of(graph, y)
    rank = len(y_shape) - 2
    out_sp, taps = _window_symbols(rank)
    o = index("o")
    return [
        TensorExpr(
            name=y,
            indices=(index("n"), o, *out_sp),
            shape=y_shape,
            body=body,
            reduction="sum",
            reduce_indices=(index("c"), *taps),
            reduce_shape=(in_per_group, *node.attrs["kernel_shape"]),
            condition=condition,
            epilogue=_bias_epilogue(graph, node, o),
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs=_conv_attrs(node, rank) | {"pads": tuple(pads)},
        )
    ]


@rule("conv")
def conv_texpr(graph, node):
    x, w, x_shape, w_shape, y_shape = _operands(graph, node)
    rank = len(x_shape) - 2
    attrs = node.attrs
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    pads = resolve_pads(x_shape[2:], kernel, strides, dilations, attrs["pads"], attrs["auto_pad"])
    n, o, c = index("n"), index("o"), index("c")
    out_sp, taps = _window_symbols(rank)
    group = attrs["group"]
    in_per_group, out_per_group = w_shape[1], w_shape[0] / group
    channel = c if group == 1 else sympy.floor(o / out_per_group) * in_per_group + c
    ranges = dict(zip(out_sp, y_shape[2:])) | dict(zip(taps, kernel))
    positions = [strides[k] * out_sp[k] + dilations[k] * taps[k] - pads[k] for k in range(rank)]
    condition = sympy.And(
        *(bound_condition(positions[k], x_shape[2 + k], ranges) for k in range(rank))
    )
    body = access(x, (n, channel, *positions)) * access(w, (o, c, *taps))
    return _window_sum(graph, node, body, condition, in_per_group, pads)


def _transpose_pads(graph, node, spatial, kernel):
    """Canonical pads, or ONNX's output_shape / auto_pad rule while sizes are symbolic."""
    attrs = node.attrs
    if attrs["auto_pad"] == "NOTSET" and attrs["output_shape"] is None:
        return tuple(attrs["pads"])

    def error(message):
        return ShapeError(f"{node.op} '{node.name}': {message}")

    return transpose_pads(SimpleNamespace(attrs=attrs, error=error), spatial, kernel)


@rule("conv_transpose")
def conv_transpose_texpr(graph, node):
    x, w, x_shape, w_shape, y_shape = _operands(graph, node)
    rank = len(x_shape) - 2
    attrs = node.attrs
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    pads = _transpose_pads(graph, node, x_shape[2:], kernel)
    n, o, c = index("n"), index("o"), index("c")
    out_sp, taps = _window_symbols(rank)
    group = attrs["group"]
    in_per_group, out_per_group = w_shape[0] / group, w_shape[1]
    if group == 1:
        channel, out_offset = c, o
    else:
        channel = sympy.floor(o / out_per_group) * in_per_group + c
        out_offset = sympy.Mod(o, out_per_group)
    ranges = dict(zip(out_sp, y_shape[2:])) | dict(zip(taps, kernel))
    numerators = [out_sp[k] + pads[k] - dilations[k] * taps[k] for k in range(rank)]
    sources = [numerators[k] / strides[k] for k in range(rank)]
    divisible = [
        sympy.Eq(sympy.Mod(numerators[k], strides[k]), 0) for k in range(rank) if strides[k] != 1
    ]
    bounds = [bound_condition(sources[k], x_shape[2 + k], ranges) for k in range(rank)]
    body = access(x, (n, channel, *sources)) * access(w, (channel, out_offset, *taps))
    return _window_sum(graph, node, body, sympy.And(*divisible, *bounds), in_per_group, pads)
