"""Does LLVM keep a 32-channel x 3-column AVX2 register block in registers?

Why: `avx2_step_shapes.c` shows the block of 32 output channels (4 AVX2 registers) x 3
columns holding its speed where convc's 16 x 6 block loses it (benchmarks/RESULTS.md).
That block needs all 16 registers: 12 accumulators, 3 broadcasts and one weight
register at a time. This script builds the loop of such steps in LLVM IR two ways and
counts the stack references in the loop LLVM compiles for this machine:

- `<32 x float>` values, as convc's loop IR emits a 32-channel vector today: LLVM loads
  the four weight registers of a step before its FMAs, and spills;
- `<8 x float>` pieces in the order of ONNX Runtime's kernel: three broadcasts, then
  each weight register loaded and used by its three FMAs.

    python benchmarks/avx2_block_spills.py
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir

from convc.runtime import llvm as native

F32, I32, I64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
COLUMNS, CHANNELS, LANES = 3, 32, 8


def broadcast(b: ir.IRBuilder, scalar: ir.Value, width: int) -> ir.Value:
    vector = ir.VectorType(F32, width)
    first = b.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(I32, 0))
    zeros = ir.Constant(ir.VectorType(I32, width), [0] * width)
    return b.shuffle_vector(first, ir.Constant(vector, ir.Undefined), zeros)


def block_loop(width: int) -> str:
    """LLVM IR of `for i < n: acc[j][p] += x[i + 8j] * w[32i + p*width ..]`, with the
    accumulators as `<width x float>` values (width 32: one a column; 8: four)."""
    vector, pieces = ir.VectorType(F32, width), CHANNELS // width
    module = ir.Module("block")
    module.triple = native.host()[0]
    fma = ir.Function(module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.v{width}f32")
    ptr = F32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr, I64]), "block")
    w, x, out, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    entry, loop, done = b.block, fn.append_basic_block("loop"), fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(I64)
    acc = [[b.phi(vector) for _ in range(pieces)] for _ in range(COLUMNS)]
    columns = [
        broadcast(b, b.load(b.gep(x, [b.add(i, ir.Constant(I64, 8 * j))])), width)
        for j in range(COLUMNS)
    ]
    updated = [[None] * pieces for _ in range(COLUMNS)]
    for p in range(pieces):  # each weight piece loaded, then used by every column
        at = b.add(b.mul(i, ir.Constant(I64, CHANNELS)), ir.Constant(I64, p * width))
        weight = b.load(b.bitcast(b.gep(w, [at]), vector.as_pointer()), align=32)
        for j in range(COLUMNS):
            updated[j][p] = b.call(fma, [columns[j], weight, acc[j][p]])
    following = b.add(i, ir.Constant(I64, 1))
    i.add_incoming(ir.Constant(I64, 0), entry)
    i.add_incoming(following, loop)
    for j in range(COLUMNS):
        for p in range(pieces):
            acc[j][p].add_incoming(ir.Constant(vector, [0.0] * width), entry)
            acc[j][p].add_incoming(updated[j][p], loop)
    b.cbranch(b.icmp_signed("<", following, n), loop, done)
    b.position_at_end(done)
    for j in range(COLUMNS):
        for p in range(pieces):
            at = ir.Constant(I64, j * CHANNELS + p * width)
            b.store(updated[j][p], b.bitcast(b.gep(out, [at]), vector.as_pointer()))
    b.ret_void()
    return str(module)


def loop_assembly(ir_text: str) -> str:
    module = llvm.parse_assembly(ir_text)
    module.verify()
    native.optimize(module)
    assembly = native.emit_assembly(module)
    return assembly[assembly.index(".LBB0_") : assembly.index("ret")]


def main() -> None:
    native.initialize()
    for width in (CHANNELS, LANES):
        loop = loop_assembly(block_loop(width))
        print(
            f"<{width} x float>: {loop.count('vfmadd')} FMAs, "
            f"{loop.count('(%rsp)')} stack references in the loop"
        )


if __name__ == "__main__":
    main()
