"""Channel-vector nests: output channels (or a dense layer's features) a vector and a
register block of output columns (or rows), the shape of windowed convs and dense
layers; see `channel_vector_nest`.

Stage: lowering (loop IR). Input: a `Nest` and a channel-vector schedule (`vector_axis`
"o.i"). Output: the outer loops, the register blocks that cover each row (fixed blocks,
or a loop over interior blocks between checked borders), and in each the point body of
`reduction`.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc import loops
from convc.texpr import TensorExpr

from ..regions import interior
from ..registers import blocks
from ..schedule import fixed_row_blocks, whole_groups
from .base import (
    Nest,
    empty,
    group_rewrites,
    ordered,
    outer_loops,
    symbol,
    tile_rewrites,
    within_tile,
    wrap,
)
from .hints import place_hints
from .reduction import input_lanes, point, reduce_chunk


def channel_vector_nest(nest: Nest, schedule, atoms) -> loops.Stmt:
    """The vector runs over a tiled output axis "o.i" (conv: output channels; dense: output
    features) and a register block over another axis (conv: output columns; dense: rows):

        parallel for n*i*o_o:                (rows before channel blocks, `channel_schedule`)
          for j in interior blocks of R:  vector(16) for o_i:
            alloc acc[R];  for c, a, b:  unrolled for j_i:  acc[j_i] += x[.., j] * w[o_o, .., o_i]

    A row of known width is covered by blocks at fixed places (at most MAX_ROW_COPIES of
    them, else only its borders and leftover columns are, around the loop over interior
    blocks): each unrolled copy checks its own column's bounds, folded by LLVM where the
    column is inside. A row with no column bounds (an unpadded 1x1 conv) has nothing to
    fold: past FEW_ROW_BLOCKS blocks it loops over them (each fixed copy is one more copy
    of the reduction to compile: MobileNetV2 with merged rows compiled in 7.7 s, 6.3 with
    the loop, and ran as fast). A one-column pass streams the whole weight slab for 1/R of the
    work, so borders taken one at a time cost up to 40% on 14-wide rows. Rows of run-time
    width fall back to one column at a time outside the interior, and the interior's
    columns past its whole blocks (a dense layer's last rows) run in smaller blocks
    (`_leftover`).

    Each weight vector load feeds R FMAs and each input element is a broadcast: this suits
    narrow outputs (7, 14, 28 wide), strided convs (no gathers), the stem and dense layers
    (weights streamed once from [P/16][K][16] panels). A tile that does not divide its axis
    ends with a masked vector.

    A schedule with `reduce_tiles` (cache blocking) runs the input channels in chunks in a
    loop placed by its order (`c.o`: outside the rows, or inside each row; `reduction._chunked`):

        parallel for n*o_o:  for c_o:  for i:  for j blocks:  vector(16) for o_i:
          acc[R] = c_o ? y[..] : 0;  for c_i, a, b: ...;  y[..] = last c_o ? epilogue(acc) : acc

    A chunk of several blocks of a channel-blocked input (`reduction_chunks.pointwise_chunks`)
    runs as those blocks and their lanes, `c = c_o*S + c_b*B + c_l`, so its reads index the
    input's blocks directly rather than dividing by B at every step.
    """
    o = symbol(nest.te, schedule.vector_axis[:-2])
    j = symbol(nest.te, schedule.unroll[0][:-2])
    step, block = schedule.tiles[str(o)], schedule.tiles[str(j)]
    width = min(step, nest.width)  # a tile's channels, or a vector's of a tile of several
    te = nest.te = _group_by_vector(nest.te, o, step)
    tile = (o, width, loops.loop_var(f"{o}_o"), loops.loop_var(f"{o}_i"))
    outer = ordered([v for v in te.indices if v != j], schedule)
    loops_, subs = outer_loops(te, outer, schedule, tile, step)
    grouped = {}
    if step > width:  # a tile of one group's channels in several vectors
        within = within_tile(subs[o], step)
        nest.group, grouped = (step, within - tile[3]), group_rewrites(within, step)
    nest.chunk, lanes, start = reduce_chunk(te, schedule), input_lanes(te, nest.scope), 0
    if nest.chunk:
        c, size, c_o, c_i = nest.chunk
        start = c_o * size
        subs[c] = start + c_i
        at = _chunk_position(outer, loops_, schedule, c)
        loops_.insert(at, (c_o, 0, sympy.sympify(te.reduce_shape[0]) / size, "serial"))
    if lanes and (nest.chunk is None or nest.chunk[1] > lanes[1]):  # blocks x lanes
        nest.lanes = lanes
        c, size, c_b, c_l = lanes
        subs[c] = start + c_b * size + c_l
    rewrites = {**tile_rewrites(tile), **tile_rewrites(nest.lanes or nest.chunk), **grouped}
    nest.scope = replace(nest.scope, subs={**nest.scope.subs, **subs}, rewrites=rewrites)
    place_hints(nest, schedule, o, width)
    extent = te.shape[te.indices.index(j)]
    reduce_ranges = dict(zip(te.reduce_indices, te.reduce_shape))
    split = interior(atoms, j, extent, reduce_ranges, te.indices)
    var_j = loops.loop_var(str(j))
    var_o, var_i = loops.loop_var(f"{j}_o"), loops.loop_var(f"{j}_i")
    fixed = extent.is_number and not _mixed(atoms, j, te.indices)
    count = -(-int(extent) // block) if fixed else 0
    bounded = any(j in a.free_symbols for a in atoms)
    few = fixed_row_blocks(count, bounded)
    if fixed and (split is None or few):
        parts = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(0, extent, block)]
        return wrap(loops_, loops.Block(tuple(parts)))
    if split is None:
        return wrap(loops_, _columns(nest, tile, var_j, 0, extent, atoms))
    lo, hi = split
    if fixed and all(sympy.sympify(e).is_number for e in (lo, hi)):
        lo, hi = _wide_borders(int(lo), int(hi), int(extent), block)
    inside = [a for a in atoms if j not in a.free_symbols]
    blocks = sympy.floor((hi - lo) / block)
    blocked = replace(
        nest,
        block=(j, block, var_o, var_i),
        scope=replace(nest.scope, subs={**nest.scope.subs, j: lo + block * var_o + var_i}),
    )
    middle = loops.For(var_o, 0, blocks, _vector_channels(blocked, tile, inside))
    if fixed and all(sympy.sympify(e).is_number for e in (lo, hi)):
        end = int(lo + block * blocks)
        left = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(0, int(lo), block)]
        right = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(end, extent, block)]
        return wrap(loops_, loops.Block((*left, middle, *right)))
    end = lo + block * blocks
    parts = [
        _columns(nest, tile, var_j, 0, lo, atoms),
        middle,
        *_leftover(nest, tile, j, end, sympy.Mod(hi - lo, block), block, inside),
        _columns(nest, tile, var_j, hi, extent, atoms),
    ]
    kept = [p for p in parts if not (isinstance(p, loops.For) and empty(p.start, p.stop))]
    return wrap(loops_, loops.Block(tuple(kept)))


def _wide_borders(lo: int, hi: int, extent: int, block: int) -> tuple[int, int]:
    """The columns lo..hi of a row of `extent` that its loop over register blocks of
    `block` covers (the columns outside run as checked blocks at fixed places, `_even`):
    all of the interior, unless a border (0..lo or hi..extent, where not empty) would hold
    fewer than `blocks().border_columns` columns; then as many whole blocks fewer as it
    takes, the columns left over shared between the borders. A border block of one column
    keeps one FMA chain a register of its vector, latency bound: with AVX2's blocks of 6
    a row of 56 (3x3, pad 1) ran 1 + 9 x 6 + 1, now 4 + 8 x 6 + 4 (3x3 64->64 @56 at
    batch 8, kernel ms: 28.9-29.6 -> 27.3-27.6; the stem 4.66 -> 4.44 at batch 1, A/B).
    The same holds for the columns past the loop's last block in a row without a right
    border: one block fewer, and they share its columns (MobileNetV2's 1x1 convs over
    7x7 planes merged into rows of 49, 8 x 6 + 1 -> 7 x 6 + 4 + 3: 0.173 -> 0.167 ms in
    three of them, the rest level; the fastest of 25 profiles, two runs each)."""
    least = blocks().border_columns
    left, right = (least if border else 0 for border in (lo, extent - hi))
    if lo >= left and extent - hi >= right:
        count = (hi - lo) // block
        tail = extent - lo - count * block  # the columns past the loop's last block
        if 0 < tail < least and count > 1:  # one block fewer, its columns shared with them
            return lo, lo + (count - 1) * block
        return lo, hi
    count = min((hi - lo) // block, (extent - left - right) // block)
    spare = extent - count * block
    start = 0 if not left else spare if not right else spare // 2
    if count < 1 or start < lo or start + count * block > hi:
        return lo, hi
    return start, start + count * block


def _leftover(nest: Nest, tile, j, start, remainder, block: int, atoms) -> list:
    """The `remainder` (< `block`, known at run time) columns from `start` past the last
    whole register block, as at most one block of each power of two below `block`,
    largest first: the block of s runs when the remainder has bit s, after the larger
    ones. Taken one at a time, the leftover rows of a dense layer's run-time batch each
    streamed the whole weight matrix (with blocks of 12 rows, a batch of 8 ran 4096->1000
    in 2.79 ms against 0.62 in one block)."""
    remainder = sympy.sympify(remainder)
    if remainder.is_number:
        return [
            _row_block(nest, tile, j, start + s, n, atoms) for s, n in _even(0, remainder, block)
        ]
    stages, size = [], 1 << ((block - 1).bit_length() - 1) if block > 1 else 0
    while size:
        taken = remainder - sympy.Mod(remainder, 2 * size)  # the larger blocks' columns
        runs = loops.Cmp(
            "eq", loops.Index(sympy.Mod(sympy.floor(remainder / size), 2)), loops.Index(1)
        )
        stages.append(loops.If(runs, _row_block(nest, tile, j, start + taken, size, atoms)))
        size //= 2
    return stages


def _group_by_vector(te: TensorExpr, o, width: int) -> TensorExpr:
    """A grouped conv reads input channel `floor(o/G)*C + c` (G output channels a group);
    with G a multiple of the vector `width` (`schedule.whole_groups`) that is
    `floor(width*floor(o/width)/G)*C + c`, which the tile `o = width*o_o + o_i` reduces to
    one channel for all lanes (`floor(o_i/width)` is 0): a broadcast, not a gather."""
    group = te.attrs.get("group", 1)
    if te.attrs.get("family") != "conv" or group == 1 or not whole_groups(te, width):
        return te  # ungrouped, or depthwise: each lane its own channel
    per_group = sympy.sympify(te.shape[1]) / group
    by_vector = sympy.floor(width * sympy.floor(o / width) / per_group)
    return replace(te, body=te.body.xreplace({sympy.floor(o / per_group): by_vector}))


def _chunk_position(outer: list, loops_: list, schedule, c) -> int:
    """Where among the outer loops the chunk loop goes: after the axes that precede
    `c.o` in `schedule.order` (a parallel loop collapsing axes on both sides of it is a
    scheduling error)."""
    order = list(schedule.order)
    before = set(order[: order.index(f"{c}.o")])
    collapsed = len(outer) - (len(loops_) - 1) if loops_ and loops_[0][3] == "parallel" else 0
    if collapsed and any(str(v) not in before for v in outer[:collapsed]):
        raise ValueError(f"chunk loop {c}.o inside the collapsed parallel loop {loops_[0][0]}")
    inside = [str(v) in before for v in outer[collapsed:]]
    return (1 if collapsed else 0) + sum(inside)


def _even(start: int, stop, block: int) -> list:
    """(first column, size) of the fewest register blocks of at most `block` columns that
    cover start..stop, their sizes differing by at most one."""
    total = int(stop) - start
    count = -(-total // block)
    sizes = [total // count + (k < total % count) for k in range(count)] if total > 0 else []
    return [(start + sum(sizes[:k]), size) for k, size in enumerate(sizes)]


def _row_block(nest: Nest, tile, j, start: int, size: int, atoms) -> loops.Stmt:
    """Output columns start..start+size as one register block at a fixed place: each
    unrolled copy checks its own column's bounds, which LLVM folds wherever the column
    is known to be inside (so borders cost no one-column passes over the weights)."""
    var_o, var_i = loops.loop_var(f"{j}_o"), loops.loop_var(f"{j}_i")
    row = replace(
        nest,
        block=(j, size, var_o, var_i),
        scope=replace(nest.scope, subs={**nest.scope.subs, j: start + var_i}),
    )
    return _vector_channels(row, tile, atoms)


def _mixed(atoms, j, out_vars) -> bool:
    """Whether a bound check ties `j` to another output index (it cannot sit per copy)."""
    return any(j in a.free_symbols and (a.free_symbols & set(out_vars)) - {j} for a in atoms)


def _columns(nest: Nest, tile, var_j, start, stop, atoms) -> loops.Stmt:
    """Output columns start..stop one at a time, channels vectorized."""
    return loops.For(var_j, start, stop, _vector_channels(nest, tile, atoms))


def _vector_channels(nest: Nest, tile, atoms) -> loops.Stmt:
    """The vector of a tile's channels: `nest.width` lanes, of which a tile of fewer
    channels (one group's, `schedule.group_tile`) fills the first, the rest masked; of a
    tile of one group's channels in several vectors (`nest.group`), the channels of the
    group from the vector's first."""
    axis, size, _, var_i = tile
    extent = sympy.sympify(nest.te.shape[nest.te.indices.index(axis)])
    start = nest.scope.subs[axis] - var_i  # the tile's first index, in loop variables
    tail = None if nest.group else _narrow_tail(extent, size)
    whole = (extent % size).is_zero or tail is not None  # the other tiles are full
    if nest.group:  # the group's channels from the vector's first
        stop = sympy.Min(size, nest.group[0] - nest.group[1])
    else:
        stop = size if whole else sympy.Min(size, extent - start)
    body = point(nest, atoms)
    vector = loops.For(var_i, 0, stop, body, kind="vectorized", width=nest.width, tail="masked")
    if tail is None:
        return vector
    short = replace(nest, width=tail)
    narrow = loops.For(var_i, 0, tail, point(short, atoms), kind="vectorized", width=tail)
    last = loops.Cmp("eq", loops.Index(start), loops.Index(extent - tail))
    return loops.If(last, narrow, vector)


def _narrow_tail(extent, width: int) -> int | None:
    """The channels (features) of the last tile when they fill whole registers of this
    machine but not the tile, else None: that tile then runs as a vector of only them
    (`_vector_channels`) rather than a masked vector of `width`, whose dead half is
    computed all the same, and the other tiles, all whole, run unmasked. With AVX2's
    8-float registers, 24 channels are a tile of 16 and a tail of 8: MobileNetV2's 1x1
    projections to 24 channels at batch 8 (fastest of 10 profiles, ms) 96->24 @56 1.854
    -> 1.343, 144->24 @56 + add 2.942 -> 2.251 (ONNX Runtime's nodes 1.507 and 2.493)."""
    if not extent.is_number:
        return None
    tail = int(extent) % width
    return tail if tail and tail % blocks().lanes == 0 else None
