"""Register-block stores transposed in registers: channel vectors written as rows.

Stage: codegen, used by the kernel emitter for an unrolled loop of stores inside a
vectorized loop. A channel-vector kernel holds a register block of R output columns, each
a vector of W channels. When the output is NCHW (a model's output, or a single layer),
the W lanes of one column are H*W elements apart: stored as they are, each column is a
scatter of W lanes (16 single-element stores per instruction). Transposed in registers,
the block becomes W rows of R contiguous elements, one masked vector store each.

The transpose is the bit-exchange network on 16 x 16 tiles: at each of four stages,
rows r and r + s (bit s of r clear) swap the elements whose column has bit s set with
the other row's elements one block over; after the four stages row l holds lane l of
every column. That is 64 two-input shuffles per tile against R scatters of 16 lanes,
and a 3x3/7x7 conv writing NCHW spent a quarter of its time in those scatters.

A row of R < 16 elements is one masked store where masked stores are single instructions
(AVX-512's k-masks). Elsewhere it is plain stores of 8, 4, 2 and 1 elements (R = 6: 4 +
2): AVX2's ``vmaskmovps`` to memory took 17-20 cycles a row on a Zen 3 core against 3
for the two plain stores, so a block's 16 rows cost about 300 cycles, as much as 50 of
its FMA steps. Measured on that core (kernel, fastest of 10-15 profiles, A/B in one
process, ms): 1x1 s2 64->128 @56 0.211 -> 0.159, the 7x7 s2 stem 2.98 -> 2.56, 3x3
64->64 @56 3.50 -> 3.36; 3x3 512 @7 level.

The rows of lanes a masked vector leaves off (a last tile of 24 channels: 8 dead lanes)
are not stored at all, rather than stored under an all-false mask: on a Zen 4 such
stores, to addresses past the output's channels, cost the kernel up to 1.8x whenever the
input array began within 16 bytes of a page start (3x3 s2 16->24 @112 0.465-0.497 ms
there against 0.266 at other offsets, 3x3 48->24 @56 0.958-1.0 against 0.759); skipped
by a branch on each lane, 0.263-0.284 and 0.753-0.774 at every offset.
"""

from __future__ import annotations

from llvmlite import ir

from .llvmutil import I1, I32, I64, PTR, declare, type_suffix

TILE = 16
FLOAT_BYTES = 4  # the alignment of a row's pieces: rows start at any element


def _shuffle(b: ir.IRBuilder, x: ir.Value, y: ir.Value, mask: list[int]) -> ir.Value:
    return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, len(mask)), mask))


def transpose_tile(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """The 16 columns of a 16 x 16 tile given as 16 rows of ``<16 x T>``."""
    rows = list(rows)
    step = 1
    while step < TILE:
        for r in range(TILE):
            if r & step:
                continue
            low = [c if not c & step else TILE + c - step for c in range(TILE)]
            high = [TILE + c if c & step else c + step for c in range(TILE)]
            rows[r], rows[r + step] = (
                _shuffle(b, rows[r], rows[r + step], low),
                _shuffle(b, rows[r], rows[r + step], high),
            )
        step *= 2
    return rows


def store_rows(
    b: ir.IRBuilder,
    base: ir.Value,
    values: list[ir.Value],
    lane_stride: int,
    mask,
    masked_stores: bool,
) -> None:
    """Element l of ``values[r]`` to ``base[l * lane_stride + r]`` for every lane l the
    vector `mask` enables (all when None; a lane it leaves off is branched around);
    len(values) <= 16 <= lanes, lanes a multiple of 16. Each lane's row is one masked
    store of len(values) elements, or where the target has no single-instruction masked
    store (`masked_stores` False) and every lane is live, a few plain ones
    (`_store_prefix`)."""
    count, width = len(values), values[0].type.count
    vt = values[0].type
    half = ir.VectorType(vt.element, TILE)
    undef = ir.Constant(half, ir.Undefined)
    row_mask = ir.Constant(ir.VectorType(I1, TILE), [int(k < count) for k in range(TILE)])
    store = declare(
        b.module,
        f"llvm.masked.store.{type_suffix(half)}.p0",
        ir.VoidType(),
        [half, PTR, row_mask.type],
    )
    for first in range(0, width, TILE):
        lanes = list(range(first, first + TILE))
        tile = [_shuffle(b, v, v, lanes) if width > TILE else v for v in values]
        columns = transpose_tile(b, tile + [undef] * (TILE - count))
        for k, lane in enumerate(lanes):
            ptr = b.gep(
                base,
                [ir.Constant(I64, lane * lane_stride)],
                inbounds=True,
                source_etype=vt.element,
            )
            if mask is None and not masked_stores:
                _store_prefix(b, columns[k], ptr, count)
                continue
            if mask is None:
                b.call(store, [columns[k], ptr, row_mask])
                continue
            live = b.extract_element(mask, ir.Constant(I32, lane))
            with b.if_then(live):
                b.call(store, [columns[k], ptr, row_mask])


def _store_prefix(b: ir.IRBuilder, row: ir.Value, ptr: ir.Value, count: int) -> None:
    """Elements 0 .. `count` - 1 of `row` to ``ptr[0 .. count - 1]``: one plain store for
    each power of two in `count`, largest first, each aligned to its float32 element only."""
    start = 0
    for size in (16, 8, 4, 2, 1):
        if count - start < size:
            continue
        if size == 1:
            piece = b.extract_element(row, ir.Constant(I32, start))
        else:
            piece = _shuffle(b, row, row, list(range(start, start + size)))
        at = b.gep(ptr, [ir.Constant(I64, start)], inbounds=True, source_etype=row.type.element)
        b.store(piece, at, align=FLOAT_BYTES)
        start += size
