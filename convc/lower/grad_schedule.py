"""Schedules for derived gradient reductions (attrs family "grad"), shaped like convs.

Stage: (TensorExpr, after `relayout.pad_operand`) -> `convc.loops.Schedule`, or None
to leave the expression to `schedule.default_schedule`.

A conv's adjoints are convolutions too (autodiff derives them; nothing here
knows about convs, only about the index shape):

- weight gradient `dw[o, c, a, b] = Σ_{n,i,j} dy[n, o, i, j] * x[n, c, i + a, j + b]`:
  every output index is a constant extent. Vectorize over the larger of the two
  leading (channel) axes in tiles of 16, keep a register block of the last
  (kernel column) axis, and reduce over batch and space inside: each loaded
  `dy` vector (transposed to `[n, i, j, o]` at run time, `relayout`) feeds one
  FMA per column of the block, each `x` element is a broadcast. The leading
  axes are the parallel ones (output-channel blocks), as in a conv.
- input gradient `dx[n, c, u, v] = Σ_{o,a,b} w[o, c, a, b] * dy[n, o, u - a, v - b]`
  (a batch-leading output): with 16k channels it takes the forward conv's
  channel-vector schedule (weights transposed so `c` is contiguous); otherwise it
  vectorizes over the output row with a register block of channels, like a
  shallow forward conv, each `dy` row vector reused by every channel of the block.

Either way the bounds are gone beforehand when the operand could be padded
(`relayout.pad_operand`), so the blocks run without checks.
"""

from __future__ import annotations

import sympy

from convc.loops import Schedule
from convc.texpr import TensorExpr

from .schedule import PARALLEL_MIN_WORK, VECTOR_WIDTH, _channel_block, _column_block, work


def _number(extent) -> int | None:
    extent = sympy.sympify(extent)
    return int(extent) if extent.is_number else None


def _parallel(te: TensorExpr, names) -> str | None:
    return "*".join(names[:2]) if work(te) >= PARALLEL_MIN_WORK else None


def _batch_leading(te: TensorExpr) -> bool:
    """Whether the first output index leads an operand too (the batch of an input gradient,
    `dx[n, ..] = Σ dy[n, ..] ..`; a weight gradient's `dw[o, ..]` reads `dy[n, o, ..]`)."""
    first = te.indices[0]
    return any(a.indices[0] == first for a in te.body.atoms(sympy.Indexed))


def grad_schedule(te: TensorExpr) -> Schedule | None:
    """The schedule of a conv-shaped gradient reduction (module doc), or None."""
    if te.attrs.get("family") != "grad" or te.reduction != "sum" or len(te.indices) < 3:
        return None
    names = [str(i) for i in te.indices]
    lead = [_number(e) for e in te.shape[:2]]
    if None not in lead and not _batch_leading(te):  # a weight gradient
        axis = names[0] if lead[0] >= lead[1] else names[1]
        return _channel_vectors(te, names, axis)
    channels = lead[1]
    if channels is not None and channels % VECTOR_WIDTH == 0:
        return _channel_vectors(te, names, names[1])
    block = _channel_block(te.shape[1])
    atoms_use = te.indices[1] in te.condition.free_symbols
    tiles = {names[1]: block} if block > 1 and not atoms_use else {}
    return Schedule(
        tiles=tiles,
        order=tuple(names),
        vector_axis=names[-1],
        vector_width=VECTOR_WIDTH,
        unroll=tuple(f"{a}.i" for a in tiles),
        parallel_axis=_parallel(te, names),
    )


def _channel_vectors(te: TensorExpr, names, axis: str) -> Schedule:
    return Schedule(
        tiles={axis: VECTOR_WIDTH, names[-1]: _column_block(te)},
        order=tuple(names),
        vector_axis=f"{axis}.i",
        vector_width=VECTOR_WIDTH,
        unroll=(f"{names[-1]}.i",),
        parallel_axis=_parallel(te, names),
    )
