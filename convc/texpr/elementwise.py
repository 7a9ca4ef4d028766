"""Tensor expressions of the elementwise ops: broadcasting arithmetic and activations.

Every elementwise op is `y[idx] = f(operands read at idx)` with no reduction.
Broadcast operands are read with their leading axes dropped and size-1 axes at
index 0 (`rules.broadcast_access`), so the gradient of a broadcast operand is a
sum over exactly those axes. The activation formulas are the ones documented in
ir/ops/elementwise.py, written with sympy functions (Max, Piecewise, exp, erf,
tanh) so that they differentiate symbolically.
"""

from __future__ import annotations

import sympy

from .expr import TensorExpr
from .rules import axis_indices, broadcast_access, dtype_of, rule, shape_of

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


def _sigmoid(x):
    return 1 / (1 + sympy.exp(-x))


def _gelu(x, attrs):
    if attrs["approximate"] == "tanh":
        inner = sympy.sqrt(2 / sympy.pi) * (x + sympy.Float(0.044715) * x**3)
        return x * (1 + sympy.tanh(inner)) / 2
    return x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2


def _float(value) -> sympy.Float:
    return sympy.Float(float(value))


ACTIVATIONS = {
    "relu": lambda x, at: sympy.Max(x, 0),
    "leaky_relu": lambda x, at: sympy.Piecewise((x, x >= 0), (_float(at["alpha"]) * x, True)),
    "elu": lambda x, at: sympy.Piecewise(
        (x, x > 0), (_float(at["alpha"]) * (sympy.exp(x) - 1), True)
    ),
    "selu": lambda x, at: (
        _float(at["gamma"])
        * sympy.Piecewise((x, x > 0), (_float(at["alpha"]) * (sympy.exp(x) - 1), True))
    ),
    "sigmoid": lambda x, at: _sigmoid(x),
    "hard_sigmoid": lambda x, at: sympy.Max(
        0, sympy.Min(1, _float(at["alpha"]) * x + _float(at["beta"]))
    ),
    "tanh": lambda x, at: sympy.tanh(x),
    "softplus": lambda x, at: sympy.log(1 + sympy.exp(x)),
    "silu": lambda x, at: x * _sigmoid(x),
    "gelu": _gelu,
}


def pointwise(graph, node, body, **attrs) -> list[TensorExpr]:
    """The single no-reduction expression `y[idx] = body(idx)` over the node's output."""
    y = node.outputs[0]
    y_shape = shape_of(graph, y)
    idx = axis_indices(len(y_shape))
    return [
        TensorExpr(
            name=y,
            indices=idx,
            shape=y_shape,
            body=body(idx, y_shape),
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "elementwise"} | attrs,
        )
    ]


@rule(*BINARY)
def binary_texpr(graph, node):
    a, b = node.inputs
    fn = BINARY[node.op]
    return pointwise(
        graph,
        node,
        lambda idx, shape: fn(
            broadcast_access(graph, a, idx, shape), broadcast_access(graph, b, idx, shape)
        ),
    )


@rule(*ACTIVATIONS)
def activation_texpr(graph, node):
    fn = ACTIVATIONS[node.op]
    x = node.inputs[0]
    return pointwise(
        graph, node, lambda idx, shape: fn(broadcast_access(graph, x, idx, shape), node.attrs)
    )


@rule("prelu")
def prelu_texpr(graph, node):
    x, slope = node.inputs

    def body(idx, shape):
        value = broadcast_access(graph, x, idx, shape)
        return sympy.Piecewise(
            (value, value >= 0), (broadcast_access(graph, slope, idx, shape) * value, True)
        )

    return pointwise(graph, node, body)


@rule("clip")
def clip_texpr(graph, node):
    """min(max(x, lo), hi); an absent bound is no bound (lo = -inf, hi = +inf). Built
    unevaluated: sympy's Min and Max compare their arguments through the assumptions
    system (about 0.4 ms a comparison of an element with a bound), and MobileNetV2's 35
    ReLU6 took 0.7 s of its 3.4 s of lowering that way."""
    x = node.inputs[0]
    bounds = list(node.inputs[1:3]) + [None] * (3 - len(node.inputs))

    def body(idx, shape):
        value = broadcast_access(graph, x, idx, shape)
        if bounds[0] is not None:
            value = sympy.Max(value, broadcast_access(graph, bounds[0], (), ()), evaluate=False)
        if bounds[1] is not None:
            value = sympy.Min(value, broadcast_access(graph, bounds[1], (), ()), evaluate=False)
        return value

    return pointwise(graph, node, body)
