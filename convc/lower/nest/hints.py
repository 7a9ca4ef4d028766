"""Prefetch hints of a loop nest: which lines of the weights (and of an NCHW input) a
kernel asks for ahead of its reads, and where in its loops.

Stage: lowering (loop IR). Input: a channel-vector `Nest` whose scope places its tiles
and reduction chunk. Output: `loops.Prefetch` statements set on the nest (`prefetch`:
each step of the innermost reduction; `spread`: around the innermost tap loop;
`planes`: the input whose next rows `next_row_hint` asks for). Hints change no result,
and every index they use stays in bounds like a read's.
"""

from __future__ import annotations

import sympy

from convc import loops
from convc.texpr import TensorExpr

from ..convert import Scope
from ..regions import conjuncts
from ..schedule import at_batch_one
from .base import Nest

#: Weights from which a channel-vector conv prefetches those it reads next
#: (`_streamed_weights`), and the float32 values in a cache line.
PREFETCH_MIN_TOTAL, LINE_FLOATS = 1 << 17, 16
#: ... unless each weight serves this many outputs (at batch 1) or more: a block's weights
#: then stay in L2 while hundreds of rows reuse them, and the hints only take load slots
#: (3x3 64->64 @56, 3136 outputs per weight: 1.328-1.331 -> 1.300-1.306 ms, A/B; ResNet-18's
#: four such convs 1.30-1.34 -> 1.29-1.31 ms). MobileNetV2's 1x1 convs at 14x14 (196
#: outputs per weight) keep them (without: 0.146 -> 0.161 ms).
PREFETCH_MAX_USES = 1024
#: NCHW inputs of at least this many channels, and bytes an image, get a hint for each
#: plane's next row (`_planes_read`): 3x3 64 @56 (800 KB an image) reading an NCHW input
#: at batch 8 10.68 -> 10.38 ms, at batch 1 (input in L2) unchanged (A/B in one process).
#: Smaller images measured no faster or slower with them (at batch 8: 128 @28 10.46 ->
#: 10.50 ms, 256 @14 9.56 -> 9.78, 512 @7 8.79 -> 9.01). A hint for the output's next row
#: (written NCHW too) gained nothing more and cost 2% at batch 1. Not the stem (3 planes).
HINTED_PLANES_MIN, HINTED_INPUT_MIN_BYTES = 32, 1 << 19


def place_hints(nest: Nest, schedule, o, width: int) -> None:
    """The prefetch hints of a channel-vector nest over output channels `o` in vectors of
    `width` (set on `nest`, whose scope already places the tiles and the reduction chunk):
    for weights worth hinting (`_streamed_weights`), the next pass's lines where the
    chunk loop runs outside the rows, the next chunk's in a dense layer's chunked
    reduction, else the next channel block's; and the next rows of an NCHW input
    (`_planes_read`). Weight indices are converted once: they do not involve the columns
    that row blocks place."""
    te = nest.te
    weights = _streamed_weights(te, o, width)
    if weights is not None and nest.chunk and _chunks_outside_rows(te, schedule):
        nest.spread = _next_pass_hints(nest, weights, width)
    if weights is not None and nest.chunk and len(te.indices) == 2:  # a dense layer's
        nest.prefetch = _next_chunk_hints(nest, weights, width)
    elif weights is not None and not nest.spread:
        nest.prefetch = _hints(nest, _next_block_lines(te, weights, width))
    nest.planes = _planes_read(te, nest.scope)


def _streamed_weights(te: TensorExpr, o, width: int) -> sympy.Indexed | None:
    """The weights (read blocked, `[o // T, c, taps.., o % T]`) whose lines a kernel
    prefetches ahead of use, for weights of at least PREFETCH_MIN_TOTAL bytes: a model's
    run streams all its weights (ResNet-18: 44 MB), so a layer finds its own in the shared
    L3 or memory, and without the hints every block of them waits at its start (a
    512-channel 3x3 conv: 2.2 ms, against 1.65 with its weights in cache and 1.95-2.05
    with hints; 256->512 s2: 1.21 -> 1.01 ms, A/B in one process). From 128 KB rather than
    1 MB: MobileNetV2's 1x1 convs of 0.3-1.2 MB wait the same way (160->960 @7: 0.154 ->
    0.122 ms; the model 6.3-6.5 -> 6.1-6.2 ms on one thread, 3.60 -> 3.51 on two;
    ResNet-18 unchanged); below 32 KB measured no different. Not for a dense layer of one
    known row (a GEMV): it reads its weights once, in one sequential stream that the
    hardware prefetcher follows, and a second stream only competes with it (4096->1000 at
    batch 1: 0.600 ms without, 0.614-0.620 with, A/B; at batch 8 the hint pays: 0.65-0.74
    -> 0.62-0.65 ms)."""
    gemv = te.attrs.get("family") == "dense" and sympy.sympify(te.shape[0]) == 1
    if te.reduction != "sum" or gemv:
        return None
    total = sympy.Mul(te.shape[1], *te.reduce_shape) * 4
    if not total.is_number or int(total) < PREFETCH_MIN_TOTAL:
        return None
    if at_batch_one(sympy.Mul(*te.shape) / te.shape[1]) >= PREFETCH_MAX_USES:  # per weight
        return None
    block, lane = sympy.floor(o / width), sympy.Mod(o, width)
    others = set(te.indices) - {o}
    for a in sorted(te.body.atoms(sympy.Indexed), key=sympy.srepr):
        if a.indices[0] == block and a.indices[-1] == lane and not others & a.free_symbols:
            return a
    return None


def _next_chunk_hints(nest: Nest, weights, width: int) -> tuple:
    """Hints for the lines of a chunked dense layer's next chunk (`reduction_chunks.DENSE_CHUNK`),
    of the next panel after the last, matching the current step: a chunk's first row
    block pulls the next one in while it computes (16 KB ahead), where the next panel's
    lines at the same step (`_next_block_lines`) ran a whole panel ahead. 4096->1000 at
    batch 8 (30 rounds, medians of the fast / slow rounds, ms): one thread 0.953 / 1.344
    -> 0.809 / 1.296, two 0.590 / 0.697 -> 0.401 / 0.652 (ONNX Runtime 0.591 / 0.692)."""
    after, step = _next_chunk(nest, weights, width)
    lines = range(0, width, LINE_FLOATS)
    return tuple(loops.Prefetch(str(weights.base), (after, step, k)) for k in lines)


def _next_chunk(nest: Nest, weights, width: int) -> tuple:
    """(block, input index) of the weights the next chunk of a chunked reduction reads at
    the current lane or step: the next chunk of this block, or the next block's first."""
    te, (_, size, chunk, lane) = nest.te, nest.chunk
    chunks = sympy.sympify(te.reduce_shape[0]) / size
    blocks = sympy.ceiling(sympy.sympify(te.shape[1]) / width)
    block = nest.scope.index(weights.indices[0])
    after = sympy.Min(block + sympy.floor((chunk + 1) / chunks), blocks - 1)
    return after, size * sympy.Mod(chunk + 1, chunks) + lane


def _hints(nest: Nest, lines) -> tuple:
    return tuple(loops.Prefetch(name, tuple(map(nest.scope.index, i))) for name, i in lines)


def _next_block_lines(te: TensorExpr, weights, width: int) -> tuple:
    """(tensor, index) of the lines of the next channel block's weights that match the
    current reduction step, issued at every step: each pass over a block pulls the next
    block's weights toward the core while it computes."""
    block = weights.indices[0]
    following = sympy.Min(block + 1, sympy.ceiling(sympy.sympify(te.shape[1]) / width) - 1)
    lines = range(0, width, LINE_FLOATS)
    return tuple((str(weights.base), (following, *weights.indices[1:-1], k)) for k in lines)


def _chunks_outside_rows(te: TensorExpr, schedule) -> bool:
    """Whether a chunked reduction's chunk loop runs outside the rows (`reduce_chunks`);
    not a dense layer's (no rows: its chunks run outside its blocks of batch rows)."""
    order = list(schedule.order)
    chunk = f"{te.reduce_indices[0]}.o"
    if len(te.indices) < 3:
        return False
    return chunk in order and order.index(chunk) < order.index(str(te.indices[2]))


def _next_pass_hints(nest: Nest, weights, width: int) -> tuple:
    """Hints for the lines of the next pass's weights, issued at each step of the loop
    around the innermost tap (`reduction._reduce_loops`), for a reduction whose chunk loop runs
    outside the rows: a pass is one chunk of input channels over all rows, and the next
    pass reads the next chunk (of the next channel block after the last chunk), the
    weights that follow in memory. Each row takes its own lines of each step's taps (row
    r: line r mod L of the L lines the innermost tap and the lanes span), so the rows of a
    pass fetch the next chunk once between them, evenly, a line every few steps. The
    hints they replace fetched the next block's lines at every step of every row (a
    pass's first row asked for its whole chunk, 37 KB, in under a microsecond, and the
    other rows again): 3x3 512 @7 with its weights evicted to memory 1.527 -> 1.144 ms,
    from L3 1.285 -> 1.088 (faster than without hints, 1.21); ResNet-18 22.20 -> 20.68 ms
    at batch 1 (its layer4 convs 1.63-1.78 -> 1.20-1.39), 11.48 -> 10.64 on two threads,
    167.2 -> 158.4 at batch 8; VGG-11 111.7 -> 109.5; MobileNetV2, AlexNet and Inception
    unchanged (A/B in one process). Only for 2-D convs whose reduction indices are plain
    indices of the weights (`[o // T, c, a, b, o % T]`), over known rows; else (). The chunk's
    channel is written in the chunk loop's variables, not converted from `c`: sympy took
    tens of milliseconds a kernel to simplify the converted form."""
    te, c = nest.te, nest.chunk[0]
    taps, rows = te.reduce_indices[1:], sympy.sympify(te.shape[2])
    if len(te.indices) != 4 or tuple(weights.indices[1:-1]) != (c, *taps):
        return ()  # a 2-D conv's: other ranks' axis 2 is no loop outside the register block
    if not rows.is_number:
        return ()
    halves = width // LINE_FLOATS
    lines = int(te.reduce_shape[-1]) * halves  # those of the innermost tap's lanes
    per_step = -(-lines // int(rows))
    row = nest.scope.index(te.indices[2])
    after, channel = _next_chunk(nest, weights, width)
    outer = [nest.scope.index(t) for t in weights.indices[2:-2]]  # taps but the innermost
    hints = []
    for k in range(per_step):
        pick = sympy.Mod(per_step * row + k, lines)
        line = (sympy.floor(pick / halves), LINE_FLOATS * sympy.Mod(pick, halves))
        hints.append(loops.Prefetch(str(weights.base), (after, channel, *outer, *line)))
    return tuple(hints)


def _planes_read(te: TensorExpr, scope: Scope) -> sympy.Indexed | None:
    """The input of a 2-D conv read as NCHW planes (not channel-blocked) when it has at
    least HINTED_PLANES_MIN channels and HINTED_INPUT_MIN_BYTES an image, else None. Each
    step reads a row of another plane, more streams than the hardware prefetchers follow,
    so every row of every plane arrives as a demand miss once the input is past L2 (batch
    8): the kernel hints the row its next output row will read (`next_row_hint`)."""
    if te.op != "conv" or len(te.indices) != 4 or len(te.reduce_indices) != 3:
        return None
    c, depth = te.reduce_indices[0], sympy.sympify(te.reduce_shape[0])
    if not depth.is_number or int(depth) < HINTED_PLANES_MIN:
        return None
    for x in sorted(te.body.atoms(sympy.Indexed), key=sympy.srepr):
        rows = x.indices[2].free_symbols if len(x.indices) == 4 else set()
        if str(x.base) not in scope.layouts and x.indices[1] == c and te.indices[2] in rows:
            plane = _spanned(te, x.indices[2], 2) * _spanned(te, x.indices[3], 3)
            return x if plane.is_number and plane * depth * 4 >= HINTED_INPUT_MIN_BYTES else None
    return None


def _spanned(te: TensorExpr, index, axis: int) -> sympy.Expr:
    """The input rows (axis 2) or columns (3) that the conv's windows span, padding
    included: `index` at the last output and the last tap, plus one."""
    out, tap = te.indices[axis], te.reduce_indices[axis - 1]
    last = {out: te.shape[axis] - 1, tap: te.reduce_shape[axis - 1] - 1}
    return sympy.sympify(index).xreplace(last) + 1


def next_row_hint(nest: Nest) -> loops.Prefetch:
    """A hint for the line of the NCHW input (`nest.planes`) that the step's tap reads for
    the next output row, at the register block's first column: issued around the
    innermost tap, it runs a row ahead of the reads. The row is clamped to those the conv
    reads (padding rows excluded), so the hint stays in bounds."""
    te, x = nest.te, nest.planes
    i, (_, a, b) = te.indices[2], te.reduce_indices
    row, column = x.indices[2], x.indices[3]
    last = row.xreplace({i: te.shape[2] - 1, a: te.reduce_shape[1] - 1})
    for atom in conjuncts(te.condition):
        if isinstance(atom, sympy.StrictLessThan) and atom.lhs == row:
            last = sympy.Min(last, atom.rhs - 1)
    below = sympy.Min(sympy.Max(row.xreplace({i: i + 1}), 0), last)
    first = sympy.Max(column.xreplace({b: 0}), 0)
    index = [nest.scope.index(e) for e in (x.indices[0], x.indices[1], below, first)]
    if nest.block is not None:  # the block's first column
        index = [sympy.sympify(e).xreplace({nest.block[3]: 0}) for e in index]
    return loops.Prefetch(str(x.base), tuple(index))
