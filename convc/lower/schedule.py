"""Default schedules, one rule per op family.

Stage: (TensorExpr, thread count) -> `convc.loops.Schedule` (plain data that
`convc.lower.nest` applies). The defaults:

- every family vectorizes its innermost output axis (output width for NCHW
  conv and pooling, output features for dense, the last axis for elementwise)
  with width 16 (`<16 x float>`, AVX-512), a masked tail, and splits that axis'
  range so padding checks stay out of the vectorized interior;
- 2-D dense layers vectorize over output features in tiles of 32 (16 for deep
  reductions) with a block of 12 rows (`registers.ROW_BLOCK`), reading weights packed
  as [P/32][K][32] panels (`packing`);
- conv blocks the output channels (`tiles`, `unroll`): several
  accumulators per vector lane reuse each loaded input vector and hide the FMA
  latency; the block divides the extent exactly. Depthwise convs (one input
  channel per output channel) share no input between channels: they are not
  blocked (as fast, and a third of the code);
- 2-D 1x1 stride-1 convs with a channel block use 32-column vectors and loop rows
  outside the channel blocks (`registers.POINTWISE_WIDTH`); unpadded ones run the whole plane as
  one row in packed panels (`PACK_COLUMNS`), and write a large model output with
  streaming stores (`STREAM_MIN_BYTES`);
- the two outermost loops (batch x output-channel block) are collapsed into one
  parallel loop (`parallel_axis` "n*o") when the kernel does enough work to pay
  for waking a second thread; channel-vector kernels share batch x rows x channel
  blocks ("n*i*o"), rows first, since they have few channel blocks (the stem at
  batch 1: one 32-wide block, nothing to share; 96 channels: 3 blocks, 2:1 between
  two threads) and a thread then keeps the same rows from kernel to kernel;
- channel-vector convs whose weights per output-channel block pass
  `reduction_chunks.CHUNK_MIN_WEIGHTS` run their reduction in chunks of input channels
  (`reduce_tiles`, cache blocking), outside the rows where there are enough channel
  blocks to share among threads (parallel over "n*o" only), else inside each wide row;
  the partial sums wait in the output, or in a blocked scratch when the output is NCHW
  (`group`);
- depthwise convs, pooling and elementwise kernels do a few operations per loaded
  element, far below the rate of a register-blocked conv, so they go parallel from less
  work (`PARALLEL_MIN_LIGHT`), as do dense layers, which at batch 1 stream their weights;
- a kernel under its threshold at batch 1 whose work grows with a run-time batch splits
  its batch loop alone, from the batch where the work reaches it (`parallel_when`);

Register blocks are sized for the machine's vector registers (`registers.blocks()`):
`registers` holds AVX-512's limits (32 registers of 16 floats) and AVX2's (16 of 8), and
`reduction_chunks` the cache blocking of reductions.

Schedules do not depend on the thread count: it is an argument of the entry
point, so one compiled program serves every count and 1 and 2 threads compute
bit-identical results (each output element is reduced by one thread, in the
same order).
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc.loops import Schedule
from convc.texpr import TensorExpr

from .reduction_chunks import dense_chunks, reduce_chunks
from .regions import conjuncts, interior
from .registers import VECTOR_WIDTH, blocks

#: Multiply-adds (or elements) below which a kernel stays on one thread: a parallel region
#: costs ~7 us to open and join, about 1M multiply-adds of vectorized work.
PARALLEL_MIN_WORK = 1 << 20
#: The same for every kernel but a register-blocked conv: depthwise convs, pooling,
#: elementwise kernels and dense layers (no register reuse, or none at batch 1: fewer
#: operations a nanosecond). A sigmoid of 64 x 56 x 56 (0.2M elements) took 0.031 ms on one
#: thread and on two, serial under PARALLEL_MIN_WORK; parallel, 0.022 on two (tanh 0.029 ->
#: 0.017, batch norm 0.018 -> 0.012, add + relu 256 x 14 x 14 at batch 8 0.036 -> 0.021). On
#: channel-blocked values the first two run at 30-40 a nanosecond: depthwise 960 channels
#: @7 (0.42M) takes 9-12 us on one thread. Each thread runs its own share of a parallel
#: loop first (`codegen.parallel`), so on two threads a kernel that stays serial is the
#: slow one: half its input sits in the other core's cache, where the parallel kernel
#: before it left it (that depthwise conv took 16-21 us serial on a 2-thread run, 9-10 us
#: parallel). 1 << 19 -> 1 << 17 (every depthwise conv of MobileNetV2 parallel):
#: MobileNetV2 on 2 threads 3.40 -> 3.35 ms at batch 1 and 25.3 -> 24.7 ms at batch 8 (A/B
#: in one process), one thread unchanged; 1 << 21 had made the 1.0M depthwise convs @28
#: serial and slower (0.06 -> 0.10 ms). Dense layers count their work at batch 1, where
#: they stream their weights once (a GEMV), and two cores pull them twice as fast:
#: ResNet-18's fc (0.5M weights, 2 MB) 0.169 -> 0.082 ms on two threads (the model 11.98
#: -> 11.73 ms, A/B).
PARALLEL_MIN_LIGHT = 1 << 17
#: Output rows narrower than this vectorize over channels; R columns share each weight vector.
NARROW_WIDTH = 32
DEEP_REDUCTION = 64
#: Convs over NCHW values whose output channels are not a multiple of the vector, from
#: PARTIAL_MIN_CHANNELS channels, still take channel vectors (the last block masked, or run 8
#: lanes wide) where width vectors would read strided columns or run mostly empty over narrow
#: rows, or where a window meets a deep reduction (`_channel_vector`). Measured on a Zen 3 guest
#: (AVX2, one thread, N=1, fastest of 21 blocks, ms, width vectors -> channel vectors; ONNX
#: Runtime): 5x5 24->40 @19 1.497 -> 0.202 (0.234), 3x3/2 16->24 @112 0.538 -> 0.297 (0.286),
#: 3x3/2 3->24 @129 0.126 -> 0.114, 3x3 48->24 @56 1.041 -> 0.814 (0.737), 3x3 32->12 @40 0.206
#: -> 0.166, 3x3 16->10 @40 0.121 -> 0.090, 3x3 16->8 @40 0.078 -> 0.069, 1x1 200->72 @23 0.249
#: -> 0.193 (0.201), 1x1 128->40 @14 0.036 -> 0.032, the 3x3x3 1->8 conv over 16-column rows of
#: the conv3d_volume sample 0.161 -> 0.051. Not: 5x5 1->6 @32 0.010 -> 0.016 (under 8 channels);
#: shallow windows over wide rows, 3x3 3->8 @64 0.033 -> 0.061, 3->12 @64 0.047 -> 0.074; 1x1
#: stride-1 convs over wide rows, 64->24 @56 0.132 -> 0.166, 64->40 @56 0.204 -> 0.243.
PARTIAL_MIN_CHANNELS = 8
#: Rows covered by at most MAX_ROW_COPIES register blocks are unrolled into blocks at fixed
#: places (each a copy of the reduction loops); longer rows loop over interior blocks. Rows
#: with no column bounds take fixed blocks only up to FEW_ROW_BLOCKS (`fixed_row_blocks`);
#: conv rows covered so take the largest blocks (`_column_block`).
MAX_ROW_COPIES, FEW_ROW_BLOCKS = 8, 3
DEEP_DENSE = 2048
#: Width-vector 1x1 convs (NCHW input: a model's edge, or a single layer) read each input
#: vector once per output-channel block. Straight from the caller's array those loads
#: straddle cache lines (NumPy aligns to 16 bytes, a vector is 64) and walk as many pages
#: as input channels; so the plane runs in panels of PACK_COLUMNS columns, each first
#: copied once into an aligned per-thread panel (C x PACK_COLUMNS floats, 16 KB at 32
#: channels, in L1) that every channel block then reads: a packed GEMM.
PACK_COLUMNS = 128
#: The largest panel (on each thread's stack): 128 input channels. Deeper 1x1 convs with
#: channels in blocks of 16 vectorize over channels (`_channel_vector`, from DEEP_REDUCTION
#: channels with AVX-512's blocks); the others keep rows.
PACK_MAX_BYTES = 1 << 16
#: With AVX2's blocks, deep 1x1 stride-1 convs over wide NCHW rows keep the packed panels
#: up to that depth (`RegisterBlocks.packed_pointwise`): a channel vector of 16 x 6 columns
#: loads 8 times for 12 FMAs there. Measured on a Zen 3 guest (one process, fastest / median
#: of 60 rotated profiles, ms, channel vectors -> packed panels): 64->64 @32 0.119 / 0.120
#: -> 0.094 / 0.095 at N=1, 0.942 / 1.002 -> 0.805 / 0.878 at N=8; 96->64 @32 0.176 ->
#: 0.149, 1.353 -> 1.235; 128->64 @32 0.238 -> 0.201, 1.952 -> 1.703; 64->128 @56 0.619 ->
#: 0.546, 5.34 -> 4.65; 128->128 @56 1.391 -> 1.227, 11.46 -> 10.64; 128->32 @64 0.479 ->
#: 0.448, 5.70 -> 4.56. Past a panel, unpacked rows lose: 192->64 @32 0.369 -> 0.673.
#: A packed 1x1 conv writing a model output of at least STREAM_MIN_BYTES (at batch 1: half
#: of L2) uses non-temporal stores (`streaming_output`): the output's lines go to memory
#: without first being read in for ownership, and the caches keep the input. Pointwise
#: 32->64 @112 (a 3.2 MB output): 0.405 -> 0.367 ms (A/B, kernel time).
STREAM_MIN_BYTES = 1 << 20
#: 1x1 stride-1 convs over rows of at most MERGED_ROW_WIDTH columns (no padding) run a few
#: rows as one (`_merged_rows`; consecutive elements in any row-major layout), so register
#: blocks of 10 columns span rows where 7- or 14-wide rows left blocks of 7 (half the
#: accumulator registers idle). All rows merged, MobileNetV2 at batch 1 on one thread went
#: 6.15 -> 5.86 ms (960->160 @7 + add 0.150 -> 0.114 ms, 320->1280 @7 0.361 -> 0.333,
#: 576->96 @14 + add 0.161 -> 0.148), but on two threads the 14-wide maps kept too few
#: rows to share (576->96 @14 + add: 0.096 -> 0.116 ms); pairs of 14-wide rows keep 7.
MERGED_ROW_WIDTH = 14
#: Channel-vector kernels over fewer output rows than this share channel blocks before
#: rows among threads (`channel_schedule`): the 1x1 convs of a 7x7 map run all its rows as
#: one (`merge_rows`), so they can only share channel blocks, and a depthwise conv between
#: two of them that shared rows read half its input from the other core's cache
#: (MobileNetV2's depthwise convs @7 on two threads: 0.017-0.020 -> 0.010-0.011 ms; the
#: model 3.38-3.41 -> 3.28-3.37 ms at batch 1, 27.0 -> 26.7 ms at batch 8, A/B).
ROWS_FIRST_MIN = 8


def at_batch_one(expr) -> int:
    """`expr` (a count or size) with its run-time symbols (the batch) at 1, the value that
    schedule decisions use; 0 where it is still not a number."""
    expr = sympy.sympify(expr)
    expr = expr.subs({s: 1 for s in expr.free_symbols})
    return int(expr) if expr.is_number else 0


def work(te: TensorExpr) -> int:
    """Multiply-adds (or element operations) at batch 1: the size used for decisions
    (`total_work`)."""
    return at_batch_one(total_work(te))


def total_work(te: TensorExpr) -> sympy.Expr:
    """Multiply-adds (or element operations), in the run-time symbols. A part of a split
    expression carries the whole's (attrs["work_of"]), so that its parts decide alike
    (`separable`: both passes of a pool parallel, or neither); a step of an op whose steps
    each pass over all its elements counts them all (attrs["passes"], softmax)."""
    if "work_of" in te.attrs:
        return sympy.sympify(te.attrs["work_of"])
    own = sympy.Mul(*te.shape) * sympy.Mul(*te.reduce_shape)
    return own * te.attrs.get("passes", 1)


def _channel_block(extent) -> int:
    if not isinstance(sympy.sympify(extent), sympy.Integer):
        return 1
    return next((b for b in blocks().channel_blocks if int(extent) % b == 0), 1)


def _vector_axis(te: TensorExpr) -> str | None:
    """The innermost output axis, or for a max whose outputs have no such axis (a global
    max pool, a softmax's row maximum at batch 1) its innermost reduction axis when that
    runs along the operands' contiguous last axis (`reduced_vector`)."""
    last = sympy.sympify(te.shape[-1]) if te.indices else sympy.Integer(1)
    if not (last.is_number and int(last) < 2) and not _across_rows(te):
        return str(te.indices[-1])
    return reduced_vector(te)


def _across_rows(te: TensorExpr) -> bool:
    """Whether a reduction runs along its operands' contiguous last axis, for a vector or
    more (`_contiguous_reduction`), with that axis alone in their last index: a vector of
    outputs would gather one element from each of its lanes' rows every step. A softmax
    over 64 rows of 1000 (its row maximum and row sum) 0.053 -> 0.044 ms along the rows,
    8 rows 0.0072 -> 0.0052; rows of 10 keep the vector across rows (0.0006 against
    0.0007)."""
    r = _contiguous_reduction(te)
    if r is None or not te.indices:
        return False
    reduced = [a.indices[-1] for a in te.body.atoms(sympy.Indexed) if r in a.free_symbols]
    return bool(reduced) and all(last.free_symbols == {r} for last in reduced)


def reduced_vector(te: TensorExpr) -> str | None:
    """The innermost reduction axis of a max, or of a sum of exponentials or logarithms,
    when it runs along the operands' contiguous lanes (`_contiguous_reduction`): the nest
    then keeps one partial result a lane (`nest`). LLVM vectorises a plain scalar sum (its
    fast-math flags allow reassociation) but neither the NaN-propagating compare and select
    of a scalar max nor a sum over calls of our exp: a global max pool of 64 112x112 planes
    took 1.42 ms that way, 0.187 as lanes, a softmax's row maximum over 1M values 2.9 -> 1.4
    ms for the softmax, and a log-softmax over 64 rows of 1000 34.9 -> 22.8 us (kernel).
    Plain sums done this way measured slower than LLVM's (512 14x14 planes 0.013 -> 0.036
    ms): over such short rows the reduction of each row's lanes costs as much as it saves."""
    lanes = te.reduction == "max" or (te.reduction == "sum" and _transcendental(te.body))
    r = _contiguous_reduction(te) if lanes else None
    return None if r is None else str(r)


def _transcendental(expr) -> bool:
    """Whether `expr` calls exp or log, which LLVM does not vectorise in a scalar loop."""
    return sympy.sympify(expr).has(sympy.exp, sympy.log)


def _contiguous_reduction(te: TensorExpr):
    """The innermost reduction index when it spans at least a vector and every operand
    reads it only in its own last index, with unit stride (contiguous lanes); else None."""
    if not te.reduce_indices:
        return None
    r, extent = te.reduce_indices[-1], sympy.sympify(te.reduce_shape[-1])
    if not (extent.is_number and int(extent) >= VECTOR_WIDTH):
        return None
    for a in te.body.atoms(sympy.Indexed):
        inner, outer = a.indices[-1], a.indices[:-1]
        if any(r in i.free_symbols for i in outer):
            return None
        if r in inner.free_symbols and sympy.diff(inner, r) != 1:
            return None
    return r


def _channel_vector(te: TensorExpr) -> bool:
    """Vectorize a conv over output channels (not width) unless it is a shallow (fewer
    than 64 input channels) 1x1, stride-1 conv over wide rows: there a width vector reads
    contiguous inputs and the block of output channels reuses each (1.4x faster measured
    on 32->64 @112); everywhere else (windows, strides, narrow rows, deep 1x1) channel
    vectors with a block of output columns measure 1.1-4x faster (docs in `nest`). Output
    channels that leave the last vector partly empty qualify from PARTIAL_MIN_CHANNELS
    when strided, over narrow rows, or with a window over a deep reduction. With AVX2's
    blocks (`RegisterBlocks.packed_pointwise`) a deep 1x1 conv over wide rows qualifies
    only when its input channels overflow a packed panel (PACK_MAX_BYTES). A grouped conv
    qualifies when each vector lies in one group (`whole_groups`), or as partial channels
    where a vector takes one group (`group_tile`)."""
    if te.op != "conv" or "group" not in te.attrs or depthwise(te) or len(te.indices) < 3:
        return False  # (derived gradients carry no group)
    channels, width = sympy.sympify(te.shape[1]), sympy.sympify(te.shape[-1])
    if not channels.is_number:
        return False
    step = group_tile(te)
    partial = int(channels) % VECTOR_WIDTH != 0 or step > 0
    if partial and int(channels) < PARTIAL_MIN_CHANNELS:
        return False
    if not (step or whole_groups(te, _channel_tile(te)[0])):
        return False
    narrow = width.is_number and int(width) < NARROW_WIDTH
    window = any(k > 1 for k in te.attrs["kernel_shape"])
    strided = any(s > 1 for s in te.attrs["strides"])
    reduction = sympy.Mul(*te.reduce_shape)
    deep = reduction.is_number and int(reduction) >= DEEP_REDUCTION
    if partial:
        return strided or narrow or deep and window
    if deep and not (narrow or window or strided) and blocks().packed_pointwise:
        return not _packed_plane(te)[1]  # width vectors while a packed panel holds it
    return narrow or window or deep or strided


def _channel_tile(te: TensorExpr) -> tuple[int, int, int]:
    """(output channels per vector, widest row taken as one block, largest column block of
    a split row) of a channel-vector conv. A grouped conv whose groups hold 16 or 48
    output channels takes 16-channel vectors, each in one group: with 32 it fell back to
    width vectors (3x3 128->128 in 8 groups @28: 56 -> 131 GFLOP/s, against ONNX
    Runtime's 91 and PyTorch's 66)."""
    channels, width = sympy.sympify(te.shape[1]), sympy.sympify(te.shape[-1])
    b = blocks()
    narrow = VECTOR_WIDTH, b.max_row, b.max_column
    step = group_tile(te)
    if step:
        wide = group_lanes(step) > VECTOR_WIDTH
        return (b.wide_tile, *(b.wide_max_column,) * 2) if wide else narrow
    if not channels.is_number or int(channels) % b.wide_tile:  # no half-empty tiles
        return narrow
    if not whole_groups(te, b.wide_tile):
        return narrow
    window = any(k > 1 for k in te.attrs["kernel_shape"])
    whole_row = width.is_number and b.wide_max_column < int(width) <= b.max_row
    if window and whole_row:
        return narrow
    return b.wide_tile, b.wide_max_column, b.wide_max_column


def fixed_row_blocks(count: int, bounded: bool) -> bool:
    """Whether `nest` covers a row of `count` register blocks with blocks at fixed places
    (one unrolled copy of the reduction each): up to MAX_ROW_COPIES where the row's columns
    have bounds (each copy folds its own checks), else up to FEW_ROW_BLOCKS."""
    return count <= (MAX_ROW_COPIES if bounded else FEW_ROW_BLOCKS)


def _column_block(te: TensorExpr, max_row: int, max_block: int) -> int:
    """Output columns per register block of a channel-vector conv (see the constants).
    A conv row that `nest` covers with blocks at fixed places (FEW_ROW_BLOCKS blocks of
    `max_block`, or MAX_ROW_COPIES where its columns have bounds) is cut into that few,
    evenly: fewer blocks, fewer passes over the weights (3x3 256@14: two blocks of 7
    instead of 5+5+4, 1.58 -> 1.52 ms; 3x3 64@56 with padding: six blocks of 9-10 instead
    of seven of 8, 1.250 -> 1.243 ms at batch 1 and level at batch 8, A/B; pooling
    measured no better or worse with its largest blocks)."""
    extent = sympy.sympify(te.shape[-1])
    if extent.is_number and int(extent) <= max_row:
        return int(extent)
    count = -(-int(extent) // max_block) if extent.is_number else 0
    bounded = any(te.indices[-1] in a.free_symbols for a in conjuncts(te.condition))
    if count and fixed_row_blocks(count, bounded) and te.attrs.get("family") == "conv":
        return max_block
    reduce_ranges = dict(zip(te.reduce_indices, te.reduce_shape))
    split = interior(conjuncts(te.condition), te.indices[-1], extent, reduce_ranges, te.indices)
    span, least = sympy.sympify(split[1] - split[0] if split else extent), blocks().min_column
    if not span.is_number:
        return least
    if int(span) <= max_block:
        return max(int(span), 1)
    sizes = range(least, max_block + 1)
    return min(sizes, key=lambda r: (int(span) % r, -r))


def _pointwise_block(te: TensorExpr, width: int) -> int:
    """Output columns per register block of a 1x1 stride-1 conv on channel vectors that
    reads NCHW rows: the fewest blocks of at most `RegisterBlocks.pointwise[width]` columns, the
    largest such. Each input column is one broadcast a step, so a longer block loads the
    weights fewer times for as many FMAs; the tuner chose these in every such conv of
    the Inception sample (1x1 128->64 @32: 12 columns, 0.096 -> 0.080 ms), and the
    sample ran 1.56-1.64 -> 1.50-1.56 ms on one thread (12.5-12.8 against 13.1-13.2 at
    batch 8). On blocked inputs (MobileNetV2's expansions and projections) the same
    blocks measured 1.8% slower at batch 1, so those keep `_column_block`."""
    limits, extent = blocks(), sympy.sympify(te.shape[-1])
    cap, least = limits.pointwise[width], limits.min_column
    if not extent.is_number:
        return least
    if int(extent) <= cap:
        return int(extent)
    return min(range(least, cap + 1), key=lambda r: (-(-int(extent) // r), -r))


def _pointwise_conv(te: TensorExpr) -> bool:
    """A 2-D 1x1, stride-1 conv (a GEMM over pixels): see `registers.POINTWISE_WIDTH`."""
    attrs = te.attrs
    return (
        te.op == "conv"
        and len(te.indices) == 4
        and all(k == 1 for k in attrs["kernel_shape"])
        and all(s == 1 for s in attrs["strides"])
    )


def _dense_panels(te: TensorExpr) -> bool:
    """A 2-D dense layer: vector over output features, rows blocked, weights in panels."""
    return te.attrs.get("family") == "dense" and te.reduction == "sum" and len(te.indices) == 2


def depthwise(te: TensorExpr) -> bool:
    """A grouped conv with one input channel per output channel."""
    grouped = te.attrs.get("family") == "conv" and te.attrs.get("group", 1) > 1
    return grouped and te.reduce_shape[0] == 1


def group_tile(te: TensorExpr) -> int:
    """The output channels of one group of a grouped conv whose groups split channel
    vectors (PARTIAL_MIN_CHANNELS or more channels a group, not a multiple of 16), else 0.
    Such a conv's tile steps by a group's channels (`channel_schedule`), in vectors of
    `group_lanes` (one a group, or several, the last masked), so every lane reads one
    input channel, a broadcast (vectors across groups would gather). They qualify as
    partial channels do (`_channel_vector`). Measured on a Zen 4 (AVX-512, one thread,
    N=1, one process, medians of 10-30 rotated rounds, ms, width vectors -> vectors a
    group; ONNX Runtime), 3x3 convs: one vector a group, 40->120 in 4 groups @50 0.821 ->
    0.512 (0.700), 8->40 in 2 groups @15 0.0190 -> 0.0129 (0.0183), 64->64 in 8 groups @14
    0.0484 -> 0.0339 (0.0688), @28 0.128 -> 0.132 (0.203); several, with RegNet's groups
    of 40 and 56, 80 in 2 groups @56 2.44 -> 1.89 (2.09), 240 in 6 @28 2.33 -> 1.41
    (1.67), 560 in 14 @14 1.90 -> 0.755 (1.11), 168 in 3 @56 7.26 -> 5.21 (5.86), 448 in 8
    @14 2.13 -> 0.818 (1.13). Not measured with AVX2's blocks."""
    group = te.attrs.get("group", 1)
    if te.op != "conv" or group == 1 or depthwise(te):
        return 0
    per_group = sympy.sympify(te.shape[1]) / group
    if not per_group.is_Integer or int(per_group) % VECTOR_WIDTH == 0:
        return 0  # whole vectors a group (`whole_groups`)
    return int(per_group) if int(per_group) >= PARTIAL_MIN_CHANNELS else 0


def group_lanes(step: int) -> int:
    """The lanes of the vectors that cover a group of `step` channels (`group_tile`): the
    widest tile where it covers them with no more lanes than 16-lane vectors would (24:
    one vector of 32; 40: three of 16, not two of 32), else 16."""
    wide = blocks().wide_tile
    fits = -(-step // wide) * wide == -(-step // VECTOR_WIDTH) * VECTOR_WIDTH
    return wide if fits else VECTOR_WIDTH


def tile_block(o, step: int, lanes: int) -> tuple:
    """(block, lane) of channel `o` in tiles of `step` channels held in vectors of `lanes`:
    `o // step` and `o % step` where one vector holds a tile, else block
    `B*(o // step) + (o % step) // lanes` of B = ceil(step/lanes) a tile, lane
    `(o % step) % lanes` (a tile of one group's channels, `group_tile`): the index of
    packed weights and blocked copies, `[block][..][lanes]`."""
    if step <= lanes:
        return sympy.floor(o / step), sympy.Mod(o, step)
    within = sympy.Mod(o, step)
    block = sympy.floor(within / lanes)
    return -(-step // lanes) * sympy.floor(o / step) + block, within - lanes * block


def whole_groups(te: TensorExpr, width: int) -> bool:
    """Whether every vector of `width` output channels of a conv lies in one group (any
    ungrouped conv; a grouped one whose output channels per group are a multiple of
    `width`): its lanes then read the same input channel, one broadcast a step."""
    group = te.attrs.get("group", 1)
    per_group = sympy.sympify(te.shape[1]) / group
    return group == 1 or (per_group.is_Integer and int(per_group) % width == 0)


def parallel_when(te: TensorExpr):
    """Whether `te` does enough work to pay for a parallel region (see the constants):
    sympy.true at batch 1 already, sympy.false at no batch, else the condition on the
    run-time symbols from which it does (``N >= 4``), for a kernel whose work is its
    leading (batch) extent times a known count. Such a kernel splits its batch loop alone
    (`_split`) and runs it on one thread below that batch (`loops.Kernel.parallel_when`,
    checked at each call): one program serves every batch, and a model whose kernels are
    too small to split at batch 1 still uses the cores on large batches. LeNet-5 on two
    threads (symbolic batch, every kernel serial before): batch 64 0.327 -> 0.183 ms,
    batch 256 1.43 -> 0.73 (1.34 on one thread), batch 8 0.039-0.046 -> 0.034; batch 1
    unchanged (0.009)."""
    blocked = te.attrs.get("family") == "conv" and not depthwise(te)
    least = PARALLEL_MIN_WORK if blocked else PARALLEL_MIN_LIGHT
    total = sympy.expand(total_work(te))
    if at_batch_one(total) >= least:
        return sympy.true
    # only a leading output axis of run-time extent (the batch), which the parallel loop
    # splits first, and otherwise known extents: the work is then that extent times a count
    batch, *rest = (sympy.sympify(e) for e in (*te.shape, 1))
    if not isinstance(batch, sympy.Symbol) or not all(
        e.is_number for e in (*rest, *te.reduce_shape)
    ):
        return sympy.false
    per_unit = total / batch
    if not per_unit.is_number or per_unit <= 0:
        return sympy.false
    return sympy.Ge(batch, -(-least // int(per_unit)))


def _split(condition, axes: str, batch: str) -> tuple:
    """(`Schedule.parallel_axis`, `Schedule.parallel_when`) for a kernel of `parallel_when`
    `condition` whose parallel loop would take `axes` ("n*o"): those, always, where the
    work pays at batch 1; the batch loop `batch` alone under the condition where it pays
    from a larger batch (the other loops stay as in a serial kernel, so its nest keeps the
    serial kernel's shape, e.g. for `row_fusion`); no parallel loop where it never pays."""
    if condition is sympy.true:
        return axes, None
    if condition is sympy.false:
        return None, None
    return batch, condition


def channel_schedule(
    te: TensorExpr,
    width: int,
    limits: tuple | None = None,
    *,
    blocked_output: bool,
    nchw_input: bool = False,
    step: int = 0,
) -> Schedule:
    """Output channels (axis 1) `width` to a vector and a register block of output columns,
    for any 4-D family: the schedule of every kernel reading or writing a channel-blocked
    value (`layout`), whose vector of channels is then one contiguous load or store.
    `limits`: (widest row taken as one block, largest column block), by default those of
    the vector width. A conv's reduction may run in chunks (`reduce_chunks`; whether `te`
    is stored channel-blocked, `blocked_output`, decides chunks inside the rows).
    `nchw_input`: `te` reads no channel-blocked value (`_pointwise_block`). `step`: the
    channels of a tile that is one group's (`group_tile`), in one vector of `width` lanes
    or several (grouped convs run their reductions whole, `reduce_chunks`, so no partial
    sums wait in a scratch blocked by the vector, which such tiles would not fill).

    Threads share batch x rows x channel blocks, rows before channel blocks: each thread
    runs its own share of a parallel loop first (`codegen.parallel`), so consecutive
    kernels give it the same rows of an image, and at batch 1 it reads mostly rows it
    wrote itself, from its own cache; a 1x1 conv also reuses each input row for all its
    channel blocks. Measured against channel blocks first (A/B in one process): MobileNetV2
    at batch 1 3.37 -> 3.13 ms on two threads and 5.82 -> 5.67 ms on one, ResNet-18 12.19
    -> 12.01 ms on two (its 3x3 64 @56 convs 0.70 -> 0.66-0.67 ms); at batch 8, where the
    threads share whole images either way, within 0.6%. Where the chunk loop runs
    outside the rows, threads share batch x channel blocks; over fewer than
    ROWS_FIRST_MIN rows, channel blocks before rows."""
    names = [str(i) for i in te.indices]
    if limits is None:
        b = blocks()
        row = b.max_row if nchw_input else b.blocked_max_row
        limits = (row, b.max_column) if width == VECTOR_WIDTH else (b.wide_max_column,) * 2
    merge = _merged_rows(te, limits[1])
    if merge > 1:  # rows of `merge` times the columns, register blocks of the largest size
        flat, columns = merge_rows(te, (), merge)[0], limits[1]
    elif nchw_input and _pointwise_conv(te) and not any(te.attrs.get("pads", ())):
        flat, columns = te, _pointwise_block(te, width)
    else:
        flat, columns = te, _column_block(te, *limits)
    pointwise = _pointwise_conv(te)
    chunks, outside_rows = reduce_chunks(flat, width, columns, blocked_output, pointwise)
    batch, channels, rows, *rest = names
    chunk = [f"{te.reduce_indices[0]}.o"] if chunks else []
    height = sympy.sympify(te.shape[2])
    if outside_rows:  # threads share batch x channel blocks; the chunk loop, then rows
        order, parallel = [batch, channels, *chunk, rows, *rest], 2
    elif height.is_number and int(height) < ROWS_FIRST_MIN:  # channel blocks, then rows
        order, parallel = [batch, channels, rows, *chunk, *rest], 3
    else:  # rows before channel blocks; a chunk loop right inside them
        order, parallel = [batch, rows, channels, *chunk, *rest], 3
    split, when = _split(parallel_when(te), "*".join(order[:parallel]), batch)
    return Schedule(
        tiles={names[1]: step or width, names[-1]: columns},
        order=tuple(order),
        vector_axis=f"{names[1]}.i",
        vector_width=width,
        unroll=(f"{names[-1]}.i",),
        parallel_axis=split,
        parallel_when=when,
        reduce_tiles=chunks,
        merge_rows=merge,
    )


def _merged_rows(te: TensorExpr, block: int) -> int:
    """Rows a channel-vector conv runs as one (`Schedule.merge_rows`): for a 1x1 stride-1
    conv without padding over rows of at most MERGED_ROW_WIDTH columns, the fewest rows
    (dividing the height) that make at least two register blocks of `block` columns, so
    blocks can span rows while the rest stay for threads to share; else 1."""
    height, row = (sympy.sympify(e) for e in te.shape[-2:])
    if not (_pointwise_conv(te) and height.is_number and row.is_number):
        return 1
    if int(row) > MERGED_ROW_WIDTH or conjuncts(te.condition):
        return 1
    rows = [r for r in range(2, int(height) + 1) if int(height) % r == 0]
    return next((r for r in rows if r * int(row) >= 2 * block), 1)


def merge_rows(te: TensorExpr, epilogue, rows: int) -> tuple:
    """`te` (and its fused epilogue) over rows `rows` times as long and `rows` times fewer
    (`Schedule.merge_rows`): row `i` of the result is rows `rows*i ..` of `te`. Every
    access keeps its row index (now `rows*i`) and runs its column index past the row's end
    into the rows after it, consecutive elements in NCHW and channel-blocked layouts
    alike (only for accesses with no bound on rows or columns: unpadded 1x1 convs)."""
    i = te.indices[-2]
    *lead, height, width = te.shape
    moved = {i: rows * i}
    store = tuple(sympy.sympify(e).xreplace(moved) for e in te.attrs.get("store_index", te.indices))
    te = replace(
        te,
        shape=(*lead, sympy.sympify(height) / rows, sympy.sympify(width) * rows),
        body=te.body.xreplace(moved),
        epilogue=None if te.epilogue is None else te.epilogue.xreplace(moved),
        attrs={**te.attrs, "store_index": store},
    )
    return te, tuple((name, expr.xreplace(moved)) for name, expr in epilogue)


def default_schedule(te: TensorExpr, blocked_output: bool = False) -> Schedule:
    """The schedule for `te` by its family (attrs["family"]); `blocked_output`: whether `te`
    is stored channel-blocked (`channel_schedule`)."""
    family = te.attrs.get("family", "elementwise")
    names = [str(i) for i in te.indices]
    tiles, unroll = {}, ()
    parallel, condition = None, parallel_when(te)
    across = len(names) == 1 and _vector_axis(te) != names[0]  # a row reduction's vector
    if condition is not sympy.false and (len(names) >= 2 or across):
        parallel = "*".join(names[:2]) if len(names) > 2 else names[0]
    if _dense_panels(te):
        depth, limits = sympy.sympify(te.attrs.get("streams_of", te.reduce_shape[0])), blocks()
        deep = depth.is_number and int(depth) >= DEEP_DENSE
        width = VECTOR_WIDTH if deep else limits.dense_width
        chunks = dense_chunks(te, limits.dense_rows) if deep else {}
        return Schedule(
            tiles={names[1]: width, names[0]: limits.dense_rows},
            order=(names[1], *(f"{k}.o" for k in chunks), names[0]) if chunks else tuple(names),
            reduce_tiles=chunks,
            vector_axis=f"{names[1]}.i",
            vector_width=width,
            unroll=(f"{names[0]}.i",),
            parallel_axis=names[1] if parallel and condition is sympy.true else None,
        )
    if _channel_vector(te):
        width, max_row, max_block = _channel_tile(te)
        limits = (max_row, max_block)  # a kernel touching no blocked value: NCHW input
        return channel_schedule(
            te, width, limits, blocked_output=blocked_output, nchw_input=True, step=group_tile(te)
        )
    if (
        family in ("conv", "dense")
        and te.reduction == "sum"
        and len(names) >= 2
        and not depthwise(te)
    ):
        axis = names[1] if family == "conv" else names[-2]
        block = _channel_block(te.shape[names.index(axis)])
        if block > 1 and axis != _vector_axis(te):
            tiles, unroll = {axis: block}, (f"{axis}.i",)
    order, width, merge, pack = tuple(names), VECTOR_WIDTH, 1, 0
    if tiles and _pointwise_conv(te):
        order, width = (names[0], names[2], names[1], *names[3:]), blocks().pointwise_width
        parallel = f"{names[0]}*{names[2]}" if parallel else None
        merge, pack = _packed_plane(te)
    split, when = _split(condition, parallel, names[0]) if parallel else (None, None)
    return Schedule(
        tiles=tiles,
        order=order,
        vector_axis=_vector_axis(te),
        vector_width=width,
        tail="masked",
        unroll=unroll,
        parallel_axis=split,
        parallel_when=when,
        merge_rows=merge,
        pack_columns=pack,
    )


def _packed_plane(te: TensorExpr) -> tuple[int, int]:
    """(`merge_rows`, `pack_columns`) of a width-vector 1x1 conv: an ungrouped, unpadded
    one over a plane of known size, with a panel of at most PACK_MAX_BYTES, runs as one row
    of the whole plane in packed panels (see PACK_COLUMNS), else row by row, unpacked."""
    height, width = (sympy.sympify(e) for e in te.shape[-2:])
    depth = sympy.sympify(te.reduce_shape[0])
    known = all(e.is_number for e in (height, width, depth))
    if not known or conjuncts(te.condition) or te.attrs.get("group", 1) != 1:
        return 1, 0
    if int(depth) * PACK_COLUMNS * 4 > PACK_MAX_BYTES:
        return 1, 0
    return int(height), PACK_COLUMNS


def streaming_output(te: TensorExpr, schedule: Schedule) -> Schedule:
    """`schedule` for `te` when its kernel stores a model output that no other kernel
    reads (the lines go to memory, out of every cache): packed 1x1 convs (which
    write each output line whole, in one pass) with STREAM_MIN_BYTES of output stream it
    (`streaming_stores`), when its planes are whole cache lines (16 floats), so that every
    vector store is line-aligned."""
    plane, size = sympy.Mul(*te.shape[-2:]), at_batch_one(sympy.Mul(*te.shape) * 4)
    if not schedule.pack_columns or int(plane) % VECTOR_WIDTH or size < STREAM_MIN_BYTES:
        return schedule
    return replace(schedule, streaming_stores=True)
