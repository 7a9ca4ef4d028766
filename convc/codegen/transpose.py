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
"""

from __future__ import annotations

from llvmlite import ir

from .llvmutil import I1, I32, PTR, declare, type_suffix

TILE = 16


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
    b: ir.IRBuilder, base: ir.Value, values: list[ir.Value], lane_stride: int, mask
) -> None:
    """Element l of ``values[r]`` to ``base[l * lane_stride + r]`` for every lane l the
    vector `mask` enables (all when None); len(values) <= 16 <= lanes, lanes a multiple
    of 16. Each lane's row is one masked store of len(values) elements."""
    count, width = len(values), values[0].type.count
    vt = values[0].type
    half = ir.VectorType(vt.element, TILE)
    undef = ir.Constant(half, ir.Undefined)
    row_mask = ir.Constant(ir.VectorType(I1, TILE), [int(k < count) for k in range(TILE)])
    none = ir.Constant(ir.VectorType(I1, TILE), [0] * TILE)
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
            where = row_mask
            if mask is not None:
                live = b.extract_element(mask, ir.Constant(I32, lane))
                where = b.select(live, row_mask, none)
            ptr = b.gep(
                base,
                [ir.Constant(ir.IntType(64), lane * lane_stride)],
                inbounds=True,
                source_etype=vt.element,
            )
            b.call(store, [columns[k], ptr, where])
