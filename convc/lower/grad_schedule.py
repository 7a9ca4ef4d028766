"""Schedules for derived gradient reductions (attrs family "grad"), shaped like convs.

Stage: (TensorExpr, after `relayout.pad_operand`) -> `convc.loops.Schedule`, or None
to leave the expression to `schedule.default_schedule`.

A conv's adjoints are convolutions too (autodiff derives them; nothing here
knows about convs, only about the index shape):

- weight gradient `dw[o, c, a, b] = Σ_{n,i,j} dy[n, o, i, j] * x[n, c, i + a, j + b]`:
  every output index is a constant extent and none leads an operand. Vectorize
  over the larger of the two leading (channel) axes in tiles of 16 (32, two
  registers, for multiples of 32, as forward convs do) and keep a
  register block over the other channel axis (4+ wide, up to 8) or else the last
  (kernel column) axis; reduce over space inside. Each loaded `dy` vector (read
  from a copy blocked as `[o/T][n][i][j][T]` at run time, `relayout`) feeds one
  FMA per accumulator, each `x` element is a broadcast. The batch is first split
  into a few chunks with partial sums (`split_batch`), so one chunk's operands
  stay in cache across the output blocks; the leading axes are parallel. With
  fewer than 16 channels on both axes (a first layer: 1 -> 6) it vectorizes the
  kernel columns instead, with a register block of channels and no copy of `dy`
  (1.3-1.5x faster than 6-lane channel vectors for LeNet-5's conv1).
- input gradient `dx[n, c, u, v] = Σ_{o,a,b} w[o, c, a, b] * dy[n, o, u - a, v - b]`
  (a batch-leading output): with 16k channels it takes the forward conv's
  channel-vector schedule (weights transposed so `c` is contiguous); otherwise it
  vectorizes over the output row with a register block of channels, like a
  shallow forward conv, each `dy` row vector reused by every channel of the block.

Either way the bounds are gone beforehand when the operand could be padded
(`relayout.pad_operand`), so the blocks run without checks.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import sympy

from convc.loops import Schedule
from convc.texpr import TensorExpr, access, index

from .registers import VECTOR_WIDTH, blocks
from .schedule import PARALLEL_MIN_WORK, _channel_block, _column_block, work

#: A weight gradient's register block runs over its second channel axis when that has at
#: least MIN_CHANNEL_BLOCK channels (up to MAX_CHANNEL_BLOCK accumulators).
MIN_CHANNEL_BLOCK, MAX_CHANNEL_BLOCK = 4, 8
#: Partial sums a weight gradient's batch is split into (see `split_batch`), at most, and
#: the most elements they may hold together (large weights are not split: their slices
#: of a sample are small enough already).
BATCH_CHUNKS, CHUNK_SCRATCH = 8, 1 << 20


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


def _weight_like(te: TensorExpr) -> bool:
    """A conv-shaped gradient whose outputs are all constant extents and not batch-led."""
    return (
        te.attrs.get("family") == "grad"
        and te.reduction == "sum"
        and len(te.indices) >= 3
        and all(_number(e) is not None for e in te.shape)
        and not _batch_leading(te)
    )


def split_batch(te: TensorExpr) -> tuple[list, TensorExpr]:
    """([partial sums over batch chunks], te summing them) for a weight gradient reducing
    over the batch first: `dw = Σ_g dw_g[g, ..]`, `dw_g[g, o, ..] = Σ_{n in chunk g, i, j} ..`
    with at most BATCH_CHUNKS chunks. One chunk's slice of the operands stays in cache
    while the output blocks run over it, instead of the whole batch streaming through the
    cache once per output block (64->64 3x3 at 56x56, batch 8: 1.6 MB of dy a pass, 2.6x
    faster split); the scratch holds at most CHUNK_SCRATCH elements. Else ([], te)."""
    if not _weight_like(te) or not te.reduce_indices:
        return [], te
    n, batch = te.reduce_indices[0], sympy.sympify(te.reduce_shape[0])
    if not all(a.indices[0] == n for a in te.body.atoms(sympy.Indexed)):
        return [], te
    chunks = min(BATCH_CHUNKS, CHUNK_SCRATCH // int(sympy.Mul(*te.shape)))
    chunks = min(chunks, int(batch)) if batch.is_number else chunks
    if chunks < 2:
        return [], te
    size = sympy.ceiling(batch / chunks)
    g = index(f"{n}_chunk")
    sample = g * size + n
    whole = batch.is_number and chunks * size == batch
    inside = sympy.true if whole else sympy.Lt(sample, batch)
    part = replace(
        te,
        name=f"{te.name}:chunks",
        indices=(g, *te.indices),
        shape=(chunks, *te.shape),
        body=te.body.xreplace({n: sample}),
        reduce_shape=(size, *te.reduce_shape[1:]),
        condition=sympy.And(te.condition.xreplace({n: sample}), inside),
        epilogue=None,
        role="temp",
        attrs={**te.attrs, "chunks": True},
    )
    total = replace(
        te,
        body=access(part.name, part.indices, te.dtype),
        reduce_indices=(g,),
        reduce_shape=(chunks,),
        condition=sympy.true,
        attrs={**te.attrs, "family": "reduce"},
    )
    return [part], total


def grad_schedule(te: TensorExpr) -> Schedule | None:
    """The schedule of a conv-shaped gradient reduction (module doc), or None."""
    if te.attrs.get("family") != "grad" or te.reduction != "sum" or len(te.indices) < 3:
        return None
    names = [str(i) for i in te.indices]
    if te.attrs.get("chunks"):
        return _weight_schedule(te, names, 1)
    if _weight_like(te):
        return _weight_schedule(te, names, 0)
    lead = [_number(e) for e in te.shape[:2]]
    if lead[1] is not None and lead[1] % VECTOR_WIDTH == 0:
        return _channel_vectors(
            te, names, names[1], names[-1], partial(_column_block, te, blocks().max_row)
        )
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


def _weight_schedule(te: TensorExpr, names, first: int) -> Schedule:
    """Vectors over the larger of the two channel axes (at `first`, `first + 1`); the
    register block over the other one when it is at least 4 wide (then each loaded vector
    feeds up to 8 accumulators), else over the last (kernel column) axis. Below 16
    channels: vectors over the kernel columns, the block over the larger channel axis."""
    sizes = [_number(e) for e in te.shape[first : first + 2]]
    vector = 0 if sizes[0] >= sizes[1] else 1
    if sizes[vector] < VECTOR_WIDTH:
        channels = names[first + vector]
        return Schedule(
            tiles={channels: sizes[vector]},
            order=tuple(names),
            vector_axis=names[-1],
            vector_width=VECTOR_WIDTH,
            unroll=(f"{channels}.i",),
            parallel_axis=_parallel(te, names),
        )
    other = sizes[1 - vector]
    if other >= MIN_CHANNEL_BLOCK:
        axis, block = names[first + 1 - vector], min(other, MAX_CHANNEL_BLOCK)
    else:
        axis, block = names[-1], _number(te.shape[-1])
    return _channel_vectors(te, names, names[first + vector], axis, partial(min, block))


def _channel_vectors(te: TensorExpr, names, axis: str, unrolled: str, block) -> Schedule:
    """Channel vectors over `axis`: 32 channels (two registers, so each broadcast feeds two
    FMAs) when the axis is a multiple of 32, as for forward convs, else 16; `block(cap)` is
    the register block over `unrolled` for a given largest block."""
    extent, limits = _number(te.shape[names.index(axis)]), blocks()
    wide = extent is not None and extent % limits.wide_tile == 0
    width = limits.wide_tile if wide else VECTOR_WIDTH
    most = limits.wide_max_column if wide else limits.max_column
    return Schedule(
        tiles={axis: width, unrolled: block(most)},
        order=tuple(names),
        vector_axis=f"{axis}.i",
        vector_width=width,
        unroll=(f"{unrolled}.i",),
        parallel_axis=_parallel(te, names),
    )
