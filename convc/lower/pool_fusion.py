"""Pooling fused into the conv before it: one kernel computes a conv row, then every pool
row whose window that row completes.

Stage: lowering, between `group` (one kernel per fused group) and program assembly.

Why: a conv followed by a pool (ResNet's stem and its 3x3/2 max pool, VGG's and LeNet's
2x2 pools) wrote its whole output and the pool kernel read it back afterwards, from
memory once the output outgrew the caches (ResNet-18's stem: 3.2 MB a image). Fused, each
thread computes its channel block of the conv row by row, and a pool row runs as soon as
its last conv row exists, reading conv rows the same thread wrote a moment before:

    parallel for n*o_o:                      # batch x channel blocks, as both kernels
      for i in conv rows:
        <conv row i>                         # stored, channel-blocked, as before
        if i = s*r + (k-1)*d - p for a pool row r:  <pool row r>
      for r in the rows whose windows reach past the last conv row:  <pool row r>

The conv's output keeps its buffer (storage is not shrunk; its rows are read hot). Where
the kernel is parallel, threads share bands of BAND_ROWS conv rows as well (`_in_bands`):
a second parallel loop then computes the pool rows whose windows straddle two bands.
Measured on ResNet-18's stem + max pool (one thread, 14 alternating profiles): 1.47 +
0.30 ms in two kernels, 1.50-1.59 ms fused (N=1); 14.2 -> 12.0 ms at N=8.

Which pairs: the pool (max or average, 2-D) is the conv group's only reader, the conv's
value is stored channel-blocked and is no graph output, and the two groups run one after
the other. Both are lowered with their rows in order (`lower_group(rows=...)`), and the
two nests must then share their outer loops; anything else (a cache-blocked reduction,
whose chunk loop sits outside the rows) stays two kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from convc import loops
from convc.loops.analysis import loaded_buffers, substitute
from convc.passes import FusedGroup
from convc.profile import kernel_parts
from ir import Graph

from .group import LoweredGroup, RowOrder, kernel_name, lower_group
from .nest import Names

POOLS = ("max_pool", "avg_pool")
#: Conv rows a thread computes at a time when the fused loop is parallel: 16 leaves one
#: pool row in eight (3x3/2 windows) for the second loop (`_in_bands`).
BAND_ROWS = 16


@dataclass(frozen=True)
class Window:
    """The pool's rows: window height, stride, dilation and top padding; the conv's rows
    and the pool's."""

    size: int
    stride: int
    dilation: int
    pad: int
    conv_rows: int
    pool_rows: int

    @property
    def extent(self) -> int:
        """Conv rows one window spans."""
        return (self.size - 1) * self.dilation + 1

    @property
    def first(self) -> int:
        """The conv row that completes pool row 0's window."""
        return (self.size - 1) * self.dilation - self.pad

    @property
    def ready_in_loop(self) -> int:
        """Pool rows whose window ends inside the conv map (the rest follow its last row)."""
        if self.first > self.conv_rows - 1:
            return 0
        return min((self.conv_rows - 1 - self.first) // self.stride + 1, self.pool_rows)


def lower_groups(graph: Graph, groups: list, layouts: dict, tuning, texprs: dict) -> list:
    """Every group lowered (`lower_group`), a pool and the conv before it as one kernel
    wherever they fuse (see the module doc)."""
    lowered, k = [], 0
    while k < len(groups):
        pair = groups[k : k + 2]
        window = _fusible(graph, pair, layouts, texprs) if len(pair) == 2 else None
        if window is not None:
            order = RowOrder(Names({}))
            conv = lower_group(graph, pair[0], layouts, tuning, texprs, rows=order)
            outermost = _outermost(conv.kernel.body)
            order.parallel = isinstance(outermost, loops.For) and outermost.kind == "parallel"
            pool = lower_group(graph, pair[1], layouts, tuning, texprs, rows=order)
            fused = _fused(conv, pool, window, _row_names(pair, texprs))
            if fused is not None:
                lowered.append(fused)
                k += 2
                continue
        lowered.append(lower_group(graph, groups[k], layouts, tuning, texprs))
        k += 1
    return lowered


def _fusible(graph: Graph, pair: list[FusedGroup], layouts: dict, texprs: dict):
    """The pool's `Window` when `pair` (conv group, pool group) may fuse, else None."""
    producer, consumer = pair
    conv, pool = graph.nodes[producer.anchor], graph.nodes[consumer.anchor]
    if conv.op != "conv" or pool.op not in POOLS or pool.inputs[0] != producer.output:
        return None
    value = producer.output
    if value in graph.outputs or value not in layouts or len(graph.consumers(value)) != 1:
        return None
    if len(texprs[producer.anchor]) != 1:
        return None
    te = texprs[consumer.anchor][-1]
    if len(te.indices) != 4:
        return None
    attrs = te.attrs
    rows = [sympy.sympify(graph.values[value].shape[2]), sympy.sympify(te.shape[2])]
    if not all(r.is_number for r in rows):
        return None
    window = Window(
        attrs["kernel_shape"][0],
        attrs["strides"][0],
        attrs["dilations"][0],
        attrs["pads"][0],
        *(int(r) for r in rows),
    )
    return window if window.first >= 0 else None  # every window ends at a conv row


def _row_names(pair: list[FusedGroup], texprs: dict) -> tuple[str, str]:
    return tuple(str(texprs[g.anchor][-1].indices[-2]) for g in pair)


def _fused(conv: LoweredGroup, pool: LoweredGroup, window: Window, rows: tuple):
    """One kernel running `pool`'s rows inside `conv`'s row loop, or None when the two
    nests do not share their outer loops."""
    *prelude, pool_nest = _statements(pool.kernel.body)
    if loaded_buffers(loops.Block(tuple(prelude))) & set(conv.writes):
        return None  # the prelude runs first: it must not read the conv's output
    conv_outer, conv_rows = _split_at_rows(conv.kernel.body, rows[0])
    pool_outer, pool_rows = _split_at_rows(pool_nest, rows[1])
    if conv_rows is None or pool_rows is None or len(conv_outer) != len(pool_outer):
        return None
    if (conv_rows.stop, pool_rows.stop) != (window.conv_rows, window.pool_rows):
        return None  # rows merged into one (`Schedule.merge_rows`)
    if any(_bounds(a) != _bounds(b) for a, b in zip(conv_outer, pool_outer)):
        return None
    shared = {b.var: a.var for a, b in zip(conv_outer, pool_outer)}
    rows = _Rows(conv_rows.var, conv_rows.body, pool_rows.var, substitute(pool_rows.body, shared))
    banded = len(conv_outer) == 1 and conv_outer[0].kind == "parallel"
    if banded and window.conv_rows > BAND_ROWS >= window.extent:
        nest = _in_bands(conv_outer[0], rows, window)
    else:
        nest = _in_order(conv_outer, conv_rows, rows, window)
    name = kernel_name(f"{conv.kernel.name}__{pool.kernel.name}")
    (conv_nodes, conv_schedule), (pool_nodes, pool_schedule) = (
        kernel_parts(group.kernel.comment) for group in (conv, pool)
    )
    nodes = " + ".join((*conv_nodes, *pool_nodes))
    comment = f"{nodes} | {conv_schedule}; then by rows: {pool_schedule}"
    return LoweredGroup(
        loops.Kernel(name, loops.Block((*prelude, *nest)), comment),
        tuple(sorted(set(conv.reads) | (set(pool.reads) - set(conv.writes)))),
        (*conv.writes, *pool.writes),
        (*conv.scratch, *pool.scratch),
        {**conv.packed, **pool.packed},
    )


@dataclass(frozen=True)
class _Rows:
    """The conv's row variable and one row's statements; the pool's, over the conv's outer
    loop variables."""

    conv: sympy.Symbol
    conv_row: loops.Stmt
    pool: sympy.Symbol
    pool_row: loops.Stmt


def _ready(row, window: Window) -> tuple:
    """(whether conv row `row` completes a pool row's window, that pool row)."""
    step = sympy.floor((row - window.first) / window.stride)
    aligned = _cmp("eq", sympy.Mod(row - window.first, window.stride), 0)
    ready = _all(_cmp("ge", row, window.first), aligned, _cmp("lt", step, window.ready_in_loop))
    return ready, step


def _in_order(outer: list, conv_rows: loops.For, rows: _Rows, window: Window) -> tuple:
    """Every conv row of a channel block in order, each followed by the pool row it
    completes; the rows whose windows reach past the last conv row after the loop."""
    ready, step = _ready(rows.conv, window)
    pool_row = substitute(rows.pool_row, {rows.pool: step})
    stmts = [replace(conv_rows, body=loops.Block((rows.conv_row, loops.If(ready, pool_row))))]
    if window.ready_in_loop < window.pool_rows:
        stmts.append(loops.For(rows.pool, window.ready_in_loop, window.pool_rows, rows.pool_row))
    nest = loops.Block(tuple(stmts))
    for loop in reversed(outer):
        nest = replace(loop, body=nest)
    return (nest,)


def _in_bands(outer: loops.For, rows: _Rows, window: Window) -> tuple:
    """Two parallel loops over batch x channel blocks x bands of BAND_ROWS conv rows, so
    that threads share rows too. The first computes each band's conv rows and the pool
    rows whose windows lie inside the band; the second, once every band is done, the
    pool rows whose windows start in the band before (and, for the last band, those
    reaching past the last conv row)."""
    height, size = window.conv_rows, BAND_ROWS
    bands = -(-height // size)
    band_loop = loops.loop_var(f"{outer.var}_band")
    item, band = sympy.floor(band_loop / bands), sympy.Mod(band_loop, bands)
    inner = loops.loop_var(f"{rows.conv}_in")
    row = band * size + inner
    ready, step = _ready(row, window)
    own = loops.Binary("or", _cmp("eq", band, 0), _cmp("ge", inner, window.extent - 1))
    pool_row = substitute(rows.pool_row, {outer.var: item, rows.pool: step})
    conv_row = substitute(rows.conv_row, {outer.var: item, rows.conv: row})
    body = loops.Block((conv_row, loops.If(loops.Binary("and", ready, own), pool_row)))
    count = outer.stop * bands
    first = replace(
        outer,
        var=band_loop,
        stop=count,
        body=loops.For(inner, 0, _band_rows(height, size, band), body),
    )
    pool_row = substitute(rows.pool_row, {outer.var: item})
    start = sympy.Max(0, sympy.ceiling((band * size - window.first) / window.stride))
    stop = sympy.Min(
        sympy.ceiling((band * size + window.pad) / window.stride), window.ready_in_loop
    )
    late = [loops.If(_cmp("ge", band, 1), loops.For(rows.pool, start, stop, pool_row))]
    if window.ready_in_loop < window.pool_rows:
        tail = loops.For(rows.pool, window.ready_in_loop, window.pool_rows, pool_row)
        late.append(loops.If(_cmp("eq", band, bands - 1), tail))
    second = replace(outer, var=band_loop, stop=count, body=loops.Block(tuple(late)))
    return first, second


def _band_rows(height: int, size: int, band) -> sympy.Expr:
    """Conv rows in band `band`: `size`, but fewer in a last, partial band (a constant
    trip count where bands divide the rows: 1.62 -> 1.55 ms for ResNet-18's stem)."""
    return sympy.Integer(size) if height % size == 0 else sympy.Min(size, height - band * size)


def _cmp(op: str, left, right) -> loops.Cmp:
    return loops.Cmp(op, loops.Index(left), loops.Index(right))


def _all(*conditions) -> loops.Expr:
    result = conditions[0]
    for condition in conditions[1:]:
        result = loops.Binary("and", result, condition)
    return result


def _outermost(body: loops.Stmt) -> loops.Stmt:
    while isinstance(body, loops.Block) and len(body.stmts) == 1:
        body = body.stmts[0]
    return body


def _statements(body: loops.Stmt) -> tuple:
    """A kernel body's nests: the pool's last, after any it reads (an average pool's
    divisor counts), which do not read the conv and run first in the fused kernel."""
    return body.stmts if isinstance(body, loops.Block) else (body,)


def _split_at_rows(body: loops.Stmt, row: str):
    """([the loops around the row loop, outermost first], the row loop) of a kernel body
    that is one loop nest down to its serial loop over `row`; ([], None) otherwise."""
    outer = []
    stmt = body
    while True:
        if isinstance(stmt, loops.Block) and len(stmt.stmts) == 1:
            stmt = stmt.stmts[0]
        if not isinstance(stmt, loops.For):
            return [], None
        if str(stmt.var) == row:
            return (outer, stmt) if stmt.kind == "serial" and stmt.start == 0 else ([], None)
        outer.append(stmt)
        stmt = stmt.body


def _bounds(loop: loops.For) -> tuple:
    return (sympy.sympify(loop.start), sympy.sympify(loop.stop), loop.kind, loop.width)
