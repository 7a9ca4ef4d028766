"""Elementwise ops in NumPy: broadcasting arithmetic and the activations.

Formulas are those of ir/ops/elementwise.py, written for numerical safety:
exponentials only ever see non-positive arguments (sigmoid, elu, selu),
softplus is log(exp(0) + exp(x)) through logaddexp, and the exact gelu uses
math.erf elementwise in float64 (NumPy has no erf and SciPy is not a
dependency).
"""

from __future__ import annotations

import math

import numpy as np

from .core import implements

_ERF = np.frompyfunc(math.erf, 1, 1)


def _divide(a, b):
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    if np.issubdtype(np.result_type(a, b), np.integer):
        return np.trunc(np.true_divide(a, b)).astype(np.result_type(a, b))
    return np.divide(a, b)


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _divide}


@implements(*_BINARY)
def binary(node, args):
    a, b = args
    return _BINARY[node.op](a, b)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp only of -|x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _exp_linear(x, alpha):
    """x for x > 0, alpha * (exp(x) - 1) otherwise (elu, and selu before its gamma)."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise in float64."""
    return _ERF(np.asarray(x, dtype=np.float64)).astype(np.float64)


def gelu(x, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + np.tanh(inner))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


_UNARY = {
    "relu": lambda x, a: np.maximum(x, 0),
    "leaky_relu": lambda x, a: np.where(x >= 0, x, a["alpha"] * x),
    "elu": lambda x, a: _exp_linear(x, a["alpha"]),
    "selu": lambda x, a: a["gamma"] * _exp_linear(x, a["alpha"]),
    "sigmoid": lambda x, a: sigmoid(x),
    "hard_sigmoid": lambda x, a: np.clip(a["alpha"] * x + a["beta"], 0, 1),
    "tanh": lambda x, a: np.tanh(x),
    "softplus": lambda x, a: np.logaddexp(0, x),
    "silu": lambda x, a: x * sigmoid(x),
    "gelu": lambda x, a: gelu(x, a["approximate"]),
}


@implements(*_UNARY)
def unary(node, args):
    (x,) = args
    return _UNARY[node.op](x, node.attrs)


@implements("prelu")
def prelu(node, args):
    x, slope = args
    return np.where(x >= 0, x, slope * x)


@implements("clip")
def clip(node, args):
    """min(max(x, lo), hi); as in ONNX, lo > hi gives hi everywhere."""
    x, lo, hi = (*args, None, None)[:3]
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x
