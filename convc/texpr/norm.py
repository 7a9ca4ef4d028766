"""Tensor expressions of batch_norm and dropout.

batch_norm, inference (statistics held fixed):
    y[n, c, i..] = scale[c] * (x[n, c, i..] - mean[c]) / sqrt(var[c] + eps) + bias[c]
batch_norm, training (batch statistics over every axis but the channel axis 1,
the biased variance, as ONNX and the interpreter):
    <node>.mean[c] = acc / M,  acc = Σ_{n, i..} x[n, c, i..]          (M = N * prod(S))
    <node>.var[c]  = acc / M,  acc = Σ_{n, i..} (x[n, c, i..] - <node>.mean[c])**2
    y              = the inference formula with <node>.mean and <node>.var
    running_mean[c] = momentum * mean[c] + (1 - momentum) * <node>.mean[c]   (and var)
dropout, inference: y = x (a view), mask = 1.
dropout, training: the mask is a seeded random draw, which is not an index
expression; it raises UnsupportedError here.
"""

from __future__ import annotations

import sympy

from ir import UnsupportedError

from .dense import number
from .expr import ACC, TensorExpr, access, index
from .rules import axis_indices, dtype_of, out_value, rule, shape_of, temp_name


def _normalise(x, scale, bias, mean, var, idx, eps):
    channel = (idx[1],)
    centred = access(x, idx) - access(mean, channel)
    return access(scale, channel) * centred / sympy.sqrt(access(var, channel) + eps) + access(
        bias, channel
    )


def _batch_statistics(graph, node, x, x_shape, dtype):
    """The batch mean and biased variance per channel, as two reductions."""
    c = index("c")
    reduce_idx = tuple(index(s) for s in ("n", "i", "j", "k")[: len(x_shape) - 1])
    at = (reduce_idx[0], c, *reduce_idx[1:])
    count = x_shape[0] * sympy.Mul(*x_shape[2:])
    mean, var = temp_name(graph, node, "mean"), temp_name(graph, node, "var")
    common = {
        "reduction": "sum",
        "reduce_indices": reduce_idx,
        "reduce_shape": (x_shape[0], *x_shape[2:]),
        "epilogue": ACC / count,
        "dtype": dtype,
        "op": node.op,
        "node": node.name,
        "role": "temp",
        "attrs": {"family": "norm"},
    }
    return [
        TensorExpr(mean, (c,), (x_shape[1],), access(x, at), **common),
        TensorExpr(var, (c,), (x_shape[1],), (access(x, at) - access(mean, (c,))) ** 2, **common),
    ]


def _running(node, k, running, batch, channels, dtype):
    c = index("c")
    momentum = number(node.attrs["momentum"])
    body = momentum * access(running, (c,)) + (1 - momentum) * access(batch, (c,))
    return TensorExpr(
        out_value(node, k),
        (c,),
        (channels,),
        body,
        dtype=dtype,
        op=node.op,
        node=node.name,
        attrs={"family": "norm"},
    )


@rule("batch_norm")
def batch_norm_texpr(graph, node):
    x, scale, bias, mean, var = node.inputs
    y = node.outputs[0]
    x_shape, dtype = shape_of(graph, x), dtype_of(graph, y)
    idx = axis_indices(len(x_shape))
    eps = number(node.attrs["epsilon"])
    exprs = []
    stats = (mean, var)
    if node.attrs["training_mode"]:
        exprs = _batch_statistics(graph, node, x, x_shape, dtype)
        stats = (exprs[0].name, exprs[1].name)
    body = _normalise(x, scale, bias, *stats, idx, eps)
    exprs.append(
        TensorExpr(
            y,
            idx,
            x_shape,
            body,
            dtype=dtype,
            op=node.op,
            node=node.name,
            attrs={"family": "norm"},
        )
    )
    for k, (running, batch) in enumerate(zip((mean, var), stats), start=1):
        if node.attrs["training_mode"] and out_value(node, k) is not None:
            exprs.append(_running(node, k, running, batch, x_shape[1], dtype))
    return exprs


@rule("dropout")
def dropout_texpr(graph, node):
    if node.attrs["training_mode"] and node.attrs["ratio"] > 0:
        raise UnsupportedError(
            f"dropout '{node.name}': training mode (ratio={node.attrs['ratio']}) draws a random "
            "mask, which has no tensor expression"
        )
    x = node.inputs[0]
    shape = shape_of(graph, x)
    idx = axis_indices(len(shape))
    common = {"op": node.op, "node": node.name, "attrs": {"family": "tensor", "view": True}}
    exprs = [
        TensorExpr(node.outputs[0], idx, shape, access(x, idx), dtype=dtype_of(graph, x), **common)
    ]
    if out_value(node, 1) is not None:
        exprs.append(
            TensorExpr(
                node.outputs[1],
                idx,
                shape,
                sympy.Integer(1),
                dtype="bool",
                op=node.op,
                node=node.name,
                attrs={"family": "elementwise"},
            )
        )
    return exprs
