"""Cache blocking of a reduction: the chunks of input channels (or a dense layer's inputs)
a kernel runs its reduction in, and where the chunk loop goes.

Stage: a part of the default schedules (`schedule`). Input: a tensor expression and the
register block its schedule chose. Output: `Schedule.reduce_tiles` ({axis: chunk}) and,
for convs, whether the chunk loop runs outside the rows. The nest keeps a chunked
reduction's partial sums in memory between chunks (`nest.reduction._chunked`).
"""

from __future__ import annotations

import sympy

from convc.texpr import TensorExpr

from .registers import blocks, channel_block

#: Rows of a dense layer past one register block each read the whole weight panel again (16 features
#: x 4096 inputs: 256 KB, from L2 at best). So where the rows (known at compile time) take more than
#: one block, the reduction runs in chunks of at most DENSE_CHUNK inputs that split it evenly
#: (`dense_chunks`): every row block reads a chunk (16 KB) in turn, the later ones from L1, and
#: their partial sums wait in a scratch between chunks (`nest.reduction._chunked`). Measured on a
#: Zen 3 guest (AVX2: blocks of 6 rows, so a batch of 8 runs 4 + 4; 30 rounds, medians of the fast /
#: slow rounds, ms): 4096->1000 at batch 8 on one thread 1.015 / 1.236 -> 0.962 / 1.063 (chunks of
#: 128: 0.984 / 1.024, 512: 1.019 / 1.178), on two 0.556 / 0.689 -> 0.514 / 0.595 (ONNX Runtime
#: 0.606 / 0.629). Only from `schedule.DEEP_DENSE` inputs: shallower panels stay in L1 or L2 whole,
#: and 784->128 at batch 64 (11 blocks of rows) measured 0.128 -> 0.134 ms chunked (fastest of 200
#: profiles, 392-input chunks 0.133), 512->1000 at batch 8 0.164 -> 0.156.
DENSE_CHUNK = 256
#: Cache blocking of a channel-vector conv's reduction: with at least CHUNK_MIN_WEIGHTS bytes
#: of weights per output-channel block, which a block reloads for every row it computes
#: (from L2, or memory in a model that streams all its weights), the input channels run
#: one input channel block at a time in a loop outside the rows. A chunk's weights (3x3,
#: 32 x 32: 37 KB) then stay in L1 for all the rows, and the partial sums wait in the
#: output. Measured (A/B in one process, one thread): ResNet-18 at batch 1 24.5 -> 23.1-23.2
#: ms (512-channel 3x3 convs 1.90-1.98 -> 1.66-1.82 ms, 256-channel 1.45-1.60 -> 1.33-1.43),
#: batch 8 182.6 -> 174.7 ms. Chunks of 16 channels measured within 1.5% of whole blocks
#: (either ahead), 64 behind. A single 3x3 512 @7 layer (NCHW output, partial sums in a
#: blocked scratch): 1.575 -> 1.302 ms. Convs with fewer output-channel blocks run the
#: chunk loop inside each row instead, when the row has ROW_CHUNK_MIN_COLUMNS register
#: blocks to share a chunk's weights: 3x3 64 @56 (7 blocks a row) 1.328 -> 1.286 ms and
#: ResNet-18's layer1 convs 1.37-1.40 -> 1.29-1.33 ms; with 3 blocks (3x3/2 64->128 @28)
#: 0.72 -> 0.96 ms, so those keep the whole reduction. Weights of CHUNK_MIN_TOTAL bytes or
#: more (this machine's L2 a core) chunk outside the rows with any number of blocks: every
#: row would stream them all from beyond L2, which costs more than 2 threads sharing few
#: channel blocks unevenly. Measured (one thread / two, ms): 5x5 160->160 @13 1.79 -> 1.20
#: / 0.88 -> 0.68, 3x3 512->128 @14 2.40 -> 1.37 / 1.28 -> 0.75, 5x5 192->192 @14 3.51 ->
#: 2.00; AlexNet's 5x5 64->192 (1.2 MB) measured no faster chunked (its pool then unfused).
CHUNK_MIN_WEIGHTS, CHUNK_MIN_BLOCKS, ROW_CHUNK_MIN_COLUMNS = 1 << 16, 8, 4
CHUNK_MIN_TOTAL = 2 << 20
#: Strided windows stored channel-blocked take those chunks from STRIDED_CHUNK_MIN_WEIGHTS
#: (L1) instead (`_least_chunked_weights`). A step of a 3x3 stride-2 window loads 18
#: broadcasts and 6 weight vectors for 36 FMAs (at stride 1 neighbouring taps share
#: columns: 8 broadcasts), and beside them its weights (37 KB a 16-channel block from 64
#: channels) came from L2 for every register block of a row. Measured on a Zen 3 guest
#: (AVX2, fastest of 30 rotated profiles, ms): ResNet-18's 3x3/2 64->128 @28 at batch 1
#: 1.280 -> 1.139 on one thread and 0.648 -> 0.582 on two, at batch 8 10.82 -> 9.57 (ONNX
#: Runtime's node 1.22 and 10.13). Stride 1 with the same weights, 3x3 64 @56, ran within
#: 1.5% chunked (already at the FMA peak), and stored NCHW, its partial sums in a blocked
#: scratch, the strided conv of a training step's forward pass went 9.9 -> 13.7 ms.
STRIDED_CHUNK_MIN_WEIGHTS = 1 << 15
#: 1x1 stride-1 convs under CHUNK_MIN_WEIGHTS whose weights per output-channel block still
#: pass POINTWISE_CHUNK_MIN_WEIGHTS (L1, with the input columns beside them) run their
#: reduction in chunks of several input channel blocks, at most POINTWISE_CHUNK_BYTES of
#: weights each, inside each row's channel block (`pointwise_chunks`): every register block
#: of the row then reads the chunk's weights from L1 instead of streaming the whole panel
#: from L2, the way ONNX Runtime's kernel batches 128 input channels. MobileNetV2's
#: projections from 576 and 960 channels on a Zen 3 guest (AVX2, chunks of 96, fastest of 16
#: rotated profiles, ms): at batch 8 576->96 @14 + add 1.921 -> 1.795, 960->160 @7 + add
#: 1.334 -> 1.270, 960->320 @7 2.682 -> 2.519 (ONNX Runtime's nodes 1.82, 1.28 and 2.59); at
#: batch 1 0.233 -> 0.226, 0.173 -> 0.167, 0.345 -> 0.332, on two threads 0.167 -> 0.149,
#: 0.154 -> 0.125, 0.244 -> 0.215. Chunks of 64 ran as fast, of 192 slower on 576 channels
#: (1.97 against 1.90 for 96); with the chunk loop outside the channel blocks (ONNX
#: Runtime's order) the input chunk stays in L1 too, as fast or slightly faster on one
#: thread, but threads could then share only rows: a 7x7 map's single merged row. From 384
#: channels (24 KB a block at 16 channels) chunks of 96 were slower: 0.80-0.83 -> 0.90-0.92
#: ms.
POINTWISE_CHUNK_MIN_WEIGHTS, POINTWISE_CHUNK_BYTES = 1 << 15, 8 << 10


def reduce_chunks(
    te: TensorExpr, width: int, columns: int, blocked_output: bool, pointwise: bool
) -> tuple[dict, bool]:
    """({input-channel axis: chunk} or {}, whether the chunk loop runs outside the rows)
    for a conv's reduction (cache blocking, see the constants; `columns`: the register
    block of output columns), from CHUNK_MIN_WEIGHTS of weights per output-channel block
    (`_least_chunked_weights`). A chunk is one channel block of the input
    (`channel_block`), so its loop walks the lanes of one block, and it must divide the
    input channels (no leftover chunk); a deep 1x1 stride-1 conv (`pointwise`, as the
    caller's `schedule._pointwise_conv` finds it) under CHUNK_MIN_WEIGHTS takes chunks of
    several blocks instead (`pointwise_chunks`). With CHUNK_MIN_BLOCKS
    output-channel blocks, or CHUNK_MIN_TOTAL bytes of weights, the chunk loop runs
    outside the rows (threads share
    batch x channel blocks); else inside each row, where it pays when the row has
    ROW_CHUNK_MIN_COLUMNS register blocks sharing the chunk's weights and the output is
    stored channel-blocked (`blocked_output`). An NCHW output (a single layer, a model's
    last conv) keeps the whole reduction in each row: its partial sums would wait in a
    blocked scratch, and 3x3 64->64 @56 measured 12.04 -> 10.94 ms at batch 8 and 1.402
    -> 1.384 at batch 1 without the chunks (A/B; a thread-local partial-sum panel instead
    of the scratch gained only 12.19 -> 11.98)."""
    if te.op != "conv" or te.reduction != "sum" or te.attrs.get("group") != 1:
        return {}, False
    per_block = sympy.Mul(width, *te.reduce_shape) * 4
    depth, channels = sympy.sympify(te.reduce_shape[0]), sympy.sympify(te.shape[1])
    row = sympy.sympify(te.shape[-1])
    if not all(e.is_number for e in (per_block, depth, channels, row)):
        return {}, False
    chunk = channel_block(depth)
    if int(depth) % chunk or int(depth) == chunk:
        return {}, False
    row_blocks = -(-int(row) // columns)
    if int(per_block) < _least_chunked_weights(te, blocked_output):
        deep = pointwise and blocked_output
        return (pointwise_chunks(te, width, chunk, row_blocks) if deep else {}), False
    total = sympy.Mul(channels, *te.reduce_shape) * 4
    if -(-int(channels) // width) >= CHUNK_MIN_BLOCKS or int(total) >= CHUNK_MIN_TOTAL:
        return {str(te.reduce_indices[0]): chunk}, True
    if blocked_output and row_blocks >= ROW_CHUNK_MIN_COLUMNS:
        return {str(te.reduce_indices[0]): chunk}, False
    return {}, False


def _least_chunked_weights(te: TensorExpr, blocked_output: bool) -> int:
    """The weights per output-channel block from which `te`'s reduction runs in chunks:
    STRIDED_CHUNK_MIN_WEIGHTS for a strided window stored channel-blocked, else
    CHUNK_MIN_WEIGHTS."""
    attrs = te.attrs
    window = any(k > 1 for k in attrs["kernel_shape"])
    strided = window and any(s > 1 for s in attrs["strides"])
    return STRIDED_CHUNK_MIN_WEIGHTS if strided and blocked_output else CHUNK_MIN_WEIGHTS


def pointwise_chunks(te: TensorExpr, width: int, block: int, row_blocks: int) -> dict:
    """{input-channel axis: chunk} for a 1x1 stride-1 conv stored channel-blocked whose
    weights per output-channel block (`width` channels) pass POINTWISE_CHUNK_MIN_WEIGHTS,
    over rows of at least two register blocks (`row_blocks`) to share each chunk: the
    largest chunk of whole input channel blocks (`block`, at least two) that divides the
    channels with at most POINTWISE_CHUNK_BYTES of weights; else {}. The chunk loop runs
    inside each row's channel block (`nest.reduction._chunked`). Only with the register
    files that measured it (`RegisterBlocks.chunked_pointwise`)."""
    if not blocks().chunked_pointwise:
        return {}
    depth = int(te.reduce_shape[0])
    if row_blocks < 2 or depth * width * 4 < POINTWISE_CHUNK_MIN_WEIGHTS:
        return {}
    most = POINTWISE_CHUNK_BYTES // (width * 4) // block
    sizes = [k * block for k in range(2, most + 1) if depth % (k * block) == 0]
    return {str(te.reduce_indices[0]): max(sizes)} if sizes and max(sizes) < depth else {}


def dense_chunks(te: TensorExpr, rows_block: int) -> dict:
    """{input axis: chunk} for a deep dense layer (`schedule.DEEP_DENSE` inputs or more)
    whose known rows take more than one register block of `rows_block`, when its inputs
    split evenly into chunks of at most DENSE_CHUNK (`Schedule.reduce_tiles`); else {}."""
    depth, rows = (sympy.sympify(e) for e in (te.reduce_shape[0], te.shape[0]))
    if not (depth.is_number and rows.is_number) or int(rows) <= rows_block:
        return {}
    count = -(-int(depth) // DENSE_CHUNK)
    if count < 2 or int(depth) % count:
        return {}
    return {str(te.reduce_indices[0]): int(depth) // count}
