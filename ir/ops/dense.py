"""Dense ops.

gemm    A: (M, K) (or (K, M) with transA), B: (K, P) (or (P, K) with transB),
        C broadcastable to (M, P):  y = alpha * A' @ B' + beta * C.
        A Linear layer is gemm(x, weight, bias, transB=1).
matmul  NumPy matmul semantics: 2-D, or batched with broadcast batch dims.
"""

from __future__ import annotations

from ..types import TensorType
from .registry import Attr, broadcast_shapes, define


def _same_dtype(ctx, *indices):
    dtypes = {ctx.inputs[i].dtype for i in indices if ctx.has_input(i)}
    if len(dtypes) > 1:
        raise ctx.error(f"operands have different dtypes {sorted(dtypes)}")


def infer_gemm(ctx):
    a, b = ctx.inputs[0], ctx.inputs[1]
    ctx.require_rank(0, (2,), "input A")
    ctx.require_rank(1, (2,), "input B")
    ctx.require_float(0, "input A")
    _same_dtype(ctx, 0, 1, 2)
    rows, inner = (a.shape[1], a.shape[0]) if ctx.attrs["transA"] else a.shape
    inner_b, cols = (b.shape[1], b.shape[0]) if ctx.attrs["transB"] else b.shape
    if (inner - inner_b) != 0:
        raise ctx.error(
            f"A {a} and B {b} have inner sizes {inner} and {inner_b} (transA={ctx.attrs['transA']}, transB={ctx.attrs['transB']})"
        )
    out = TensorType((rows, cols), a.dtype)
    if ctx.has_input(2):
        c = ctx.inputs[2]
        if c.rank > 2 or broadcast_shapes(ctx, out, c) != out.shape:
            raise ctx.error(f"C {c} does not broadcast to the output {out}")
    return [out]


def infer_matmul(ctx):
    a, b = ctx.inputs
    ctx.require_float(0, "input A")
    _same_dtype(ctx, 0, 1)
    if a.rank < 1 or b.rank < 1:
        raise ctx.error(f"matmul needs operands of rank >= 1, got {a} and {b}")
    a_shape = a.shape if a.rank > 1 else (1, *a.shape)
    b_shape = b.shape if b.rank > 1 else (*b.shape, 1)
    if (a_shape[-1] - b_shape[-2]) != 0:
        raise ctx.error(f"inner sizes of {a} and {b} differ ({a_shape[-1]} vs {b_shape[-2]})")
    batch = broadcast_shapes(
        ctx, TensorType(a_shape[:-2], a.dtype), TensorType(b_shape[:-2], b.dtype)
    )
    shape = (*batch, *(a_shape[-2:-1] if a.rank > 1 else ()), *(b_shape[-1:] if b.rank > 1 else ()))
    return [TensorType(shape, a.dtype)]


define(
    "gemm",
    ("A", "B", "C"),
    infer_gemm,
    attrs={
        "alpha": Attr("float", 1.0),
        "beta": Attr("float", 1.0),
        "transA": Attr("int", 0, (0, 1)),
        "transB": Attr("int", 0, (0, 1)),
    },
    num_required=2,
    family="dense",
    doc="General matrix multiply, the dense (fully connected) layer.",
)
define(
    "matmul", ("A", "B"), infer_matmul, family="dense", doc="Matrix product with NumPy semantics."
)
