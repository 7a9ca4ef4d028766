"""Dense ops in NumPy: gemm (alpha * A' @ B' + beta * C) and matmul (NumPy semantics)."""

from __future__ import annotations

import numpy as np

from .core import implements


@implements("gemm")
def gemm(node, args):
    a, b, c = (*args, None)[:3]
    attrs = node.attrs
    a = a.T if attrs["transA"] else a
    b = b.T if attrs["transB"] else b
    y = attrs["alpha"] * np.matmul(a, b)
    return y if c is None else y + attrs["beta"] * c


@implements("matmul")
def matmul(node, args):
    a, b = args
    return np.matmul(a, b)
