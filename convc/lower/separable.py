"""A 2-D pool over NCHW rows as two 1-D passes: each window's rows, then its columns.

Stage: part of lowering (`group`), before schedules. Input: one pool tensor expression
on width vectors (a kernel that touches no channel-blocked value: a pool at a model's
NCHW edge). Output: [the row pass, a temporary; the pool reading it], or None.

    rows[n, c, i, q] = red_a x[n, c, s_h*i + d_h*a - p_h, q - p_w]
                       where 0 <= s_h*i + d_h*a - p_h < H and 0 <= q - p_w < W
    y[n, c, i, j]    = epilogue(red_b rows[n, c, i, s_w*j + d_w*b])

`q` covers every column a window reaches, its padding included, which holds the
reduction's identity (-inf for a max, 0 for a sum), so the column pass has no bound
checks; the epilogue (an average's divisor, fused activations) is the pool's own.

Why: on width vectors a pool reads each of its kh x kw taps as a vector load of
shifted columns, each under its own bound checks, and with a stride each tap's load is
two wide loads and a shuffle. Split, a window's kh rows are reduced once for each input
column (contiguous loads, no shuffles), and only the kw column taps take the strided
loads. Each plane's row pass runs just before its column pass, in one loop over planes
(`group._row_local`), so the column pass reads its rows back from L1. The temporary
still spans every plane in the arena (N*C*Ho*columns values, 1.6 MB for the 3x3/2 pool
below), the price of expressing it as a tensor expression.

Which pools: a max or average pool over two spatial axes whose window spans more than
one row and more than one column, whose neighbouring windows share columns (the window
is wider than its stride: each row-pass value then serves several outputs), reading one
value at (n, c, row, column) with the row free of the column taps and the column free
of the row taps, and with a known input width. Measured, kernel and call, one thread
(ms, one pass -> two): max 3x3/2 of 64 planes of 112x112 0.173 -> 0.079, max 3x3/1 of 64
of 56x56 0.179 -> 0.042, average 3x3/1 of 192 of 28x28 0.060 -> 0.037, average 3x3/2 of
64 of 112x112 0.096 -> 0.080; a 2x2/2 max of 128 of 56x56, whose windows share nothing,
0.033 -> 0.037 (so it keeps one pass).
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc.texpr import TensorExpr, access, index
from convc.texpr.rules import bound_condition

from .schedule import total_work


def separable_pool(te: TensorExpr, shapes: dict) -> list[TensorExpr] | None:
    """[rows, pool reading rows] for a pool that qualifies (module doc), else None.
    `shapes`: value name -> shape (the pool's input must be there). A max or average
    pool's expression is the only 4-D one of family "pool" that is not global (`texpr`:
    an average's divisor is 2-D, a gradient's family is "grad")."""
    if te.attrs.get("family") != "pool" or te.attrs.get("global") or len(te.indices) != 4:
        return None
    if len(te.reduce_indices) != 2 or any(int(k) < 2 for k in te.reduce_shape):
        return None
    (read,) = te.body.atoms(sympy.Indexed) if te.body.is_Indexed else (None,)
    if read is None or str(read.base) not in shapes:
        return None
    n, c, i, j = te.indices
    a, b = te.reduce_indices
    row, column = read.indices[2:]
    if tuple(read.indices[:2]) != (n, c) or row.free_symbols - {i, a}:
        return None
    if column.free_symbols - {j, b}:
        return None
    height, width = (sympy.sympify(e) for e in shapes[str(read.base)][2:])
    if not width.is_number:
        return None
    stride, dilation = te.attrs["strides"][1], te.attrs["dilations"][1]
    if dilation * (int(te.reduce_shape[1]) - 1) + 1 <= stride:
        return None  # windows that share no column share no row-pass result
    left = te.attrs["pads"][1]
    columns = stride * (sympy.sympify(te.shape[3]) - 1) + dilation * (te.reduce_shape[1] - 1) + 1
    q, whole = index("q"), total_work(te)
    ranges = {i: te.shape[2], a: te.reduce_shape[0], q: columns}
    condition = sympy.And(
        bound_condition(row, height, ranges), bound_condition(q - left, width, ranges)
    )
    rows = TensorExpr(
        name=f"{te.name}:rows",
        indices=(n, c, i, q),
        shape=(*te.shape[:3], columns),
        body=access(str(read.base), (n, c, row, q - left), te.dtype),
        reduction=te.reduction,
        reduce_indices=(a,),
        reduce_shape=(te.reduce_shape[0],),
        condition=condition,
        dtype=te.dtype,
        op=te.op,
        node=te.node,
        role="temp",
        attrs={"family": "pool", "work_of": whole},
    )
    pool = replace(
        te,
        body=access(rows.name, (n, c, i, stride * j + dilation * b), te.dtype),
        reduce_indices=(b,),
        reduce_shape=(te.reduce_shape[1],),
        condition=sympy.true,
        attrs={**te.attrs, "work_of": whole},
    )
    return [rows, pool]
