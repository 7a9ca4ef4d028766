"""Tensor expressions of the dense ops.

gemm    y[i, j] = alpha * acc + beta * C[i, j]   (C broadcast),
        acc = Σ_{k} A[i, k] * B[k, j]            (A[k, i] with transA, B[j, k] with transB)
matmul  y[batch.., i, j] = Σ_{k} A[batch.., i, k] * B[batch.., k, j], batch axes
        broadcast as in NumPy; a 1-D A has no i axis and a 1-D B no j axis.
"""

from __future__ import annotations

import sympy

from .expr import ACC, TensorExpr, access, index
from .rules import broadcast_access, dtype_of, rule, shape_of


def number(value) -> sympy.Expr:
    """An attribute as a sympy number: an Integer when integral, so 1*acc prints as acc."""
    value = float(value)
    return sympy.Integer(int(value)) if value.is_integer() else sympy.Float(value)


@rule("gemm")
def gemm_texpr(graph, node):
    a, b = node.inputs[0], node.inputs[1]
    c_in = node.inputs[2] if len(node.inputs) > 2 else None
    y = node.outputs[0]
    y_shape = shape_of(graph, y)
    i, j, k = index("i"), index("j"), index("k")
    attrs = node.attrs
    a_access = access(a, (k, i) if attrs["transA"] else (i, k), dtype_of(graph, a))
    b_access = access(b, (j, k) if attrs["transB"] else (k, j), dtype_of(graph, b))
    inner = shape_of(graph, a)[0 if attrs["transA"] else 1]
    epilogue = number(attrs["alpha"]) * ACC
    if c_in is not None:
        epilogue += number(attrs["beta"]) * broadcast_access(graph, c_in, (i, j), y_shape)
    return [
        TensorExpr(
            y,
            (i, j),
            y_shape,
            a_access * b_access,
            "sum",
            reduce_indices=(k,),
            reduce_shape=(inner,),
            epilogue=None if epilogue == ACC else epilogue,
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "dense", "transA": attrs["transA"], "transB": attrs["transB"]},
        )
    ]


def _operand(graph, name, batch_idx, batch_shape, own):
    """matmul operand access: broadcast batch axes, then its own (row/col, k) indices."""
    shape = shape_of(graph, name)
    batch = shape[: max(len(shape) - 2, 0)]
    lead = len(batch_shape) - len(batch)
    idx = [
        sympy.Integer(0) if d == 1 and batch_shape[lead + t] != 1 else batch_idx[lead + t]
        for t, d in enumerate(batch)
    ]
    return access(name, (*idx, *own), dtype_of(graph, name))


@rule("matmul")
def matmul_texpr(graph, node):
    a, b = node.inputs
    y = node.outputs[0]
    a_shape, b_shape, y_shape = shape_of(graph, a), shape_of(graph, b), shape_of(graph, y)
    i, j, k = index("i"), index("j"), index("k")
    rows = (i,) if len(a_shape) > 1 else ()
    cols = (j,) if len(b_shape) > 1 else ()
    batch_rank = len(y_shape) - len(rows) - len(cols)
    batch_idx = tuple(index(f"n{t}") for t in range(batch_rank))
    batch_shape = y_shape[:batch_rank]
    a_access = _operand(graph, a, batch_idx, batch_shape, (*rows, k))
    b_access = _operand(graph, b, batch_idx, batch_shape, (k, *cols))
    return [
        TensorExpr(
            y,
            (*batch_idx, *rows, *cols),
            y_shape,
            a_access * b_access,
            "sum",
            reduce_indices=(k,),
            reduce_shape=(a_shape[-1],),
            dtype=dtype_of(graph, y),
            op=node.op,
            node=node.name,
            attrs={"family": "dense"},
        )
    ]
