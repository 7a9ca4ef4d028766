"""A pool or a depthwise conv fused into the conv before it: one kernel computes a conv
row, then every output row whose window that row completes, and the conv's value lives
only in a ring of as many rows as a window spans.

Stage: lowering, between `group` (one kernel per fused group) and program assembly.

Why: a conv followed by a pool (ResNet's stem and its 3x3/2 max pool, VGG's and LeNet's
2x2 pools) or by a depthwise conv (MobileNet's 1x1 expansions, which widen 16-24
channels to 96-144 on 112x112 and 56x56 maps) wrote its whole output, and the next
kernel read it back, from memory once it outgrew the caches (MobileNetV2's first
expansion: 4.8 MB an image). Fused, each thread computes its channel block of the conv
row by row into a ring in its own stack (`Window.extent` rows x the row's columns x one
vector of channels: 43 KB for 3 rows of 112 columns x 32), and an output row runs as
soon as its window's last conv row exists:

    parallel for n*band*o_o:                 # batch x bands of output rows x channel blocks
      alloc ring[extent, columns] x lanes
      for i in the conv rows the band's windows read:
        <conv row i into ring[i mod extent]>
        if i = s*r + (k-1)*d - p for an output row r of the band:  <output row r, from ring>
      for r of the band whose windows reach past the last conv row:  <output row r>

The conv's value has no buffer. Threads share bands of about BAND_ROWS conv rows (as
many as make an image's bands x channel blocks even: `_band_rows`), the band before the
channel blocks so that a thread's share is whole rows at batch 1, as
in the kernels around it (`schedule.channel_schedule`); each band recomputes the conv
rows that its first window shares with the band before (one row in 16 for 3x3/2
windows, two for 3x3/1). Measured (A/B in one process, the whole model): MobileNetV2
52.3 -> 45.2 ms at batch 8 on one thread, 25.2 -> 22.6 ms on two, 5.57 -> 5.36 ms at
batch 1 (3.15 -> 3.11 ms on two); ResNet-18, AlexNet, VGG-11 and Inception, whose
pools fused before with their conv's value kept whole, within 1.3% either way.

Which pairs: the pool (max or average, 2-D) or depthwise conv (one input channel an
output channel) is the conv group's only reader, the conv's value is stored
channel-blocked and is no graph output, its rows have a known width, a ring takes at
most RING_MAX_BYTES, and the two groups run one after the other. Both are lowered with
their rows in order (`lower_group(rows=...)`), and the two nests must then share their
outer loops with vectors as wide as the value's channel block; anything else (a
cache-blocked reduction, whose chunk loop sits outside the rows) stays two kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from convc import loops
from convc.loops.analysis import loaded_buffers, substitute, to_local, unwrapped, walk
from convc.passes import FusedGroup
from convc.profile import kernel_parts
from ir import Graph

from .group import LoweredGroup, RowOrder, kernel_name, lower_group
from .nest import Names
from .schedule import depthwise

POOLS = ("max_pool", "avg_pool")
#: Conv rows a band covers, about, when the fused loop is parallel (`_in_rings`): 8, 16
#: and 32 measured within 0.5% on MobileNetV2 at batch 1 on two threads.
BAND_ROWS = 16
#: Bands x channel blocks of one image are made a multiple of this (`_band_rows`), so
#: two threads share an image's units evenly. MobileNetV2's stem (112 rows, one block of
#: 32 channels) had 7 bands, 4:3 between two threads; with 8 bands of 14 rows its fused
#: kernel went 211 -> 192 us on two threads at batch 1 and 77 -> 68 us the depthwise
#: conv after it, which now reads the rows its thread wrote (one thread: 351 -> 353 us,
#: the one more band's recomputed rows). At batch 8, where the threads share whole
#: images anyway, the model measured 0.1-2% slower on two threads (A/B, three runs).
EVEN_UNITS = 2
#: The largest ring (on each thread's stack), a sixteenth of this machine's L2 a core.
RING_MAX_BYTES = 1 << 17


@dataclass(frozen=True)
class Window:
    """The reader's (pool or depthwise conv) rows: window height, stride, dilation and top
    padding; the conv's rows and the reader's."""

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
    """Every group lowered (`lower_group`), a pool or depthwise conv and the conv before it
    as one kernel wherever they fuse (see the module doc)."""
    lowered, k = [], 0
    while k < len(groups):
        pair = groups[k : k + 2]
        found = _fusible(graph, pair, layouts, texprs) if len(pair) == 2 else None
        if found is not None:
            order = RowOrder(Names({}))
            conv = lower_group(graph, pair[0], layouts, tuning, texprs, rows=order)
            outermost = unwrapped(conv.kernel.body)
            order.parallel = isinstance(outermost, loops.For) and outermost.kind == "parallel"
            order.batch_only = conv.kernel.parallel_when is not None
            pool = lower_group(graph, pair[1], layouts, tuning, texprs, rows=order)
            fused = _fused(conv, pool, found, _row_names(pair, texprs), order.names)
            if fused is not None:
                lowered.append(fused)
                k += 2
                continue
        lowered.append(lower_group(graph, groups[k], layouts, tuning, texprs))
        k += 1
    return lowered


@dataclass(frozen=True)
class Ring:
    """Where the conv's value lives in the fused kernel: conv row `i` of a channel block in
    slot `i mod Window.extent` of a local array of that many rows of `columns` vectors of
    `lanes` (the value's channel block); `blocks`: channel blocks."""

    value: str
    dtype: str
    columns: int
    lanes: int
    blocks: int


def _fusible(graph: Graph, pair: list[FusedGroup], layouts: dict, texprs: dict):
    """(`Window`, `Ring`) when `pair` (conv group, pool or depthwise conv group) may fuse,
    else None."""
    producer, consumer = pair
    conv, reader = graph.nodes[producer.anchor], graph.nodes[consumer.anchor]
    te = texprs[consumer.anchor][-1]
    windowed = reader.op in POOLS or (reader.op == "conv" and _per_channel(te))
    if conv.op != "conv" or not windowed or reader.inputs[0] != producer.output:
        return None
    value = producer.output
    if value in graph.outputs or value not in layouts or len(graph.consumers(value)) != 1:
        return None
    if len(texprs[producer.anchor]) != 1 or len(te.indices) != 4:
        return None
    shape = [sympy.sympify(e) for e in graph.values[value].shape]
    rows = [shape[2], sympy.sympify(te.shape[2])]
    if not all(e.is_number for e in (*rows, shape[1], shape[3])):
        return None
    attrs = te.attrs
    window = Window(
        attrs["kernel_shape"][0],
        attrs["strides"][0],
        attrs["dilations"][0],
        attrs["pads"][0],
        *(int(r) for r in rows),
    )
    lanes, dtype = layouts[value], graph.values[value].dtype
    ring = Ring(value, dtype, int(shape[3]), lanes, -(-int(shape[1]) // lanes))
    nbytes = window.extent * ring.columns * lanes * loops.ir.DTYPE_SIZES[dtype]
    if window.first < 0 or nbytes > RING_MAX_BYTES:  # first: every window ends at a conv row
        return None
    return window, ring


def _per_channel(te) -> bool:
    """A depthwise conv of multiplier 1: output channel `o` reads input channel `o` only."""
    return depthwise(te) and te.attrs["group"] == te.shape[1]


def _row_names(pair: list[FusedGroup], texprs: dict) -> tuple[str, str]:
    return tuple(str(texprs[g.anchor][-1].indices[-2]) for g in pair)


def _fused(conv: LoweredGroup, pool: LoweredGroup, found: tuple, rows: tuple, names: Names):
    """One kernel running `pool`'s rows inside `conv`'s row loop (`found`: the `Window` and
    `Ring`; `names`: the kernel's local names), or None when the two nests do not share
    their outer loops or vector width."""
    window, ring = found
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
    if not _vectors_of(rows, ring.lanes):
        return None
    nest, bands = _in_rings(conv_outer, rows, window, ring, names.fresh("ring"))
    name = kernel_name(f"{conv.kernel.name}__{pool.kernel.name}")
    (conv_nodes, conv_schedule), (pool_nodes, pool_schedule) = (
        kernel_parts(group.kernel.comment) for group in (conv, pool)
    )
    nodes = " + ".join((*conv_nodes, *pool_nodes))
    banded = f", threads share batch x {bands} bands x channel blocks" if bands > 1 else ""
    rings = f"ring of {window.extent} rows{banded}"
    comment = f"{nodes} | {conv_schedule}; then by rows: {pool_schedule}; {rings}"
    writes = tuple(w for w in conv.writes if w != ring.value)
    return LoweredGroup(
        loops.Kernel(name, loops.Block((*prelude, nest)), comment, conv.kernel.parallel_when),
        tuple(sorted(set(conv.reads) | (set(pool.reads) - set(conv.writes)))),
        (*writes, *pool.writes),
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


def _vectors_of(rows: _Rows, lanes: int) -> bool:
    """Whether every vector loop of both rows is `lanes` wide (a ring slot is one such
    vector)."""
    stmts = [s for body in (rows.conv_row, rows.pool_row) for s in walk(body)]
    vectors = [s for s in stmts if isinstance(s, loops.For) and s.kind == "vectorized"]
    return bool(vectors) and all(s.width == lanes for s in vectors)


def _ready(row, window: Window) -> tuple:
    """(whether conv row `row` completes a pool row's window, that pool row)."""
    step = sympy.floor((row - window.first) / window.stride)
    aligned = _cmp("eq", sympy.Mod(row - window.first, window.stride), 0)
    ready = _all(_cmp("ge", row, window.first), aligned, _cmp("lt", step, window.ready_in_loop))
    return ready, step


def _in_rings(outer: list, rows: _Rows, window: Window, ring: Ring, name: str) -> tuple:
    """(the fused nest, its bands; see the module doc): `outer` (the shared loops around
    the rows), a parallel one split into bands of output rows; each band computes its
    conv rows into the ring (the local array `name`) and its output rows from it."""
    per_band, bands, band = window.pool_rows, 1, sympy.Integer(0)
    substitutions = {}
    if len(outer) == 1 and outer[0].kind == "parallel":  # n x bands x channel blocks
        per_band = _band_rows(window, ring.blocks)
        bands = -(-window.pool_rows // per_band)
        loop = outer[0]
        var = loops.loop_var(f"{loop.var}_band")
        image, block = sympy.floor(var / (bands * ring.blocks)), sympy.Mod(var, ring.blocks)
        substitutions[loop.var] = image * ring.blocks + block
        band = sympy.Mod(sympy.floor(var / ring.blocks), bands)
        outer = [replace(loop, var=var, stop=loop.stop * bands)]
    first = band * per_band  # the band's output rows: first .. last - 1
    last = sympy.Min(first + per_band, window.pool_rows)
    start = sympy.Max(0, window.stride * first - window.pad)
    stop = sympy.Min(window.conv_rows, window.stride * (last - 1) - window.pad + window.extent)

    def slot(index):  # the blocked value's [n, o_o, i, j, o_i]: o_i is the vector's lane
        return (sympy.Mod(index[2], window.extent), index[3])

    conv_row, pool_row = (
        to_local(substitute(body, substitutions), ring.value, name, slot)
        for body in (rows.conv_row, rows.pool_row)
    )
    ready, step = _ready(rows.conv, window)
    if bands > 1:
        ready = loops.Binary("and", ready, _cmp("ge", step, first))
    body = loops.Block((conv_row, loops.If(ready, substitute(pool_row, {rows.pool: step}))))
    shape = (window.extent, ring.columns)
    stmts = [loops.Alloc(name, ring.dtype, shape, lanes=ring.lanes)]
    stmts.append(loops.For(rows.conv, start, stop, body))
    if window.ready_in_loop < window.pool_rows:
        tail = sympy.Max(first, window.ready_in_loop)
        stmts.append(loops.For(rows.pool, tail, last, pool_row))
    nest = loops.Block(tuple(stmts))
    for loop in reversed(outer):
        nest = replace(loop, body=nest)
    return nest, bands


def _band_rows(window: Window, blocks: int) -> int:
    """Output rows a band takes: about BAND_ROWS conv rows' worth, or, where that makes
    more than one band, the fewest fewer that make an image's bands times its `blocks` a
    multiple of EVEN_UNITS."""
    widest = max(1, BAND_ROWS // window.stride)
    fewest = -(-window.pool_rows // widest)
    if fewest == 1:
        return widest
    for bands in range(fewest, window.pool_rows + 1):
        per_band = -(-window.pool_rows // bands)
        if -(-window.pool_rows // per_band) * blocks % EVEN_UNITS == 0:
            return per_band
    return widest


def _cmp(op: str, left, right) -> loops.Cmp:
    return loops.Cmp(op, loops.Index(left), loops.Index(right))


def _all(*conditions) -> loops.Expr:
    result = conditions[0]
    for condition in conditions[1:]:
        result = loops.Binary("and", result, condition)
    return result


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
