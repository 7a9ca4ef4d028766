"""Generated code never touches memory outside its buffers.

Each buffer is placed flush against a PROT_NONE guard page (once ending exactly at the
guard page after it, once starting exactly after the guard page before it), so a read or
write one element out of bounds (a vector tail, a gather at a padding edge, a stride) faults.
The kernels run in a child process, so a fault is a failed test, not a dead test runner; a
deliberately off-by-one kernel proves the harness catches a fault.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap

import pytest
from child_process import run_python

HARNESS = textwrap.dedent(
    """
    import ctypes, mmap, sys
    import numpy as np
    import sympy
    from convc import runtime
    from convc.loops import *
    from ir.types import symbol

    PAGE = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    KEEP = []

    def guarded(shape, dtype, at_end):
        # An array whose first (at_end=False) or last byte touches a PROT_NONE page.
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        pages = (nbytes + PAGE - 1) // PAGE
        mm = mmap.mmap(-1, (pages + 2) * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        for page in (base, base + (pages + 1) * PAGE):
            assert libc.mprotect(page, PAGE, 0) == 0
        start = PAGE + (pages * PAGE - nbytes if at_end else 0)
        KEEP.append(mm)
        return np.frombuffer(mm, dtype=dtype, count=int(np.prod(shape)), offset=start).reshape(shape)

    def check(program, inputs, outputs, symbols, expected):
        exe = runtime.load(program, threads=2)
        for at_end in (True, False):
            ins = {k: guarded(v.shape, v.dtype, at_end) for k, v in inputs.items()}
            for k, v in inputs.items():
                ins[k][...] = v
            outs = {k: guarded(s, np.float32, at_end) for k, s in outputs.items()}
            exe.run(ins, outs, symbols)
            for k, v in expected.items():
                np.testing.assert_allclose(outs[k], v, rtol=1e-5, atol=1e-5, err_msg=k)

    def check_graph(g, mark, rng):
        # a compiled graph of float inputs and one output "y": its loops show `mark`, and
        # its guarded run matches the interpreter
        import convc
        shapes = {name: tuple(int(d) for d in g.values[name].type.shape) for name in g.inputs}
        feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        program = convc.compile(g).program
        assert mark in format_program(program), mark
        shape = tuple(int(d) for d in g.values["y"].type.shape)
        check(program, feeds, {"y": shape}, {}, convc.interpret(g, feeds))

    N = symbol("N")
    i, j, kw = loop_var("i"), loop_var("j"), loop_var("kw")
    """
)

IN_BOUNDS = textwrap.dedent(
    """
    rng = np.random.default_rng(0)
    A = 4  # align 4: the runtime uses the guarded arrays in place, no aligned copy
    # 1. vectorized elementwise with a masked tail, then with a scalar tail, in a parallel loop
    for tail in ("masked", "scalar"):
        body = For(j, 0, 3, [For(i, 0, N, [Store("y", (j, i), Load("x", (j, i)) * 2.0)],
                                 "vectorized", 16, tail)], "parallel")
        bufs = [Buffer("x", "float32", (3, N), "input", align=A), Buffer("y", "float32", (3, N), "output", align=A)]
        x = rng.standard_normal((3, 37)).astype(np.float32)
        check(Program("ew" + tail, bufs, [Kernel("ew", [body])], ("N",)), {"x": x}, {"y": (3, 37)}, {"N": 37}, {"y": 2 * x})

    # 2. 1-D convolution, padding 1 on both sides: clamped gathers at both edges
    iw = i + kw - 1
    inside = Binary("and", Cmp("ge", Index(iw), Const(0, "int64")), Cmp("lt", Index(iw), Index(N)))
    tap = Select(inside, Load("x", (sympy.Min(sympy.Max(iw, 0), N - 1),)), Const(0.0))
    body = For(i, 0, N, [Alloc("acc", "float32", (), 0.0),
                         For(kw, 0, 3, [Assign("acc", (), Fma(tap, Load("w", (kw,)), Ref("acc")))], "unrolled"),
                         Store("y", (i,), Ref("acc"))], "vectorized", 16, "masked")
    bufs = [Buffer("x", "float32", (N,), "input", align=A), Buffer("w", "float32", (3,), "input", align=A),
            Buffer("y", "float32", (N,), "output", align=A)]
    x, w = rng.standard_normal(35).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    ref = np.convolve(np.pad(x, 1), w[::-1], mode="valid")
    check(Program("conv1d", bufs, [Kernel("conv1d", [body])], ("N",)), {"x": x, "w": w}, {"y": (35,)}, {"N": 35}, {"y": ref})

    # 3. row reductions with vector partials and a masked tail
    row = [Alloc("s", "float32", (), 0.0),
           For(i, 0, N, [Assign("s", (), Ref("s") + Load("x", (j, i)))], "vectorized", 16, "masked"),
           Store("y", (j,), Ref("s"))]
    bufs = [Buffer("x", "float32", (5, N), "input", align=A), Buffer("y", "float32", (5,), "output", align=A)]
    x = rng.standard_normal((5, 19)).astype(np.float32)
    check(Program("rsum", bufs, [Kernel("rsum", [For(j, 0, 5, row)])], ("N",)), {"x": x}, {"y": (5,)}, {"N": 19}, {"y": x.sum(1)})

    # 4. strided gather and scatter reaching the last element exactly
    body = For(i, 0, N, [Store("y", (2 * i + 1,), Load("x", (3 * i + 2,)))], "vectorized", 16, "masked")
    bufs = [Buffer("x", "float32", (3 * N,), "input", align=A), Buffer("y", "float32", (2 * N,), "output", align=A)]
    x = rng.standard_normal(3 * 21).astype(np.float32)
    exe = runtime.load(Program("stride", bufs, [Kernel("stride", [body])], ("N",)))
    for at_end in (True, False):
        gx, gy = guarded((63,), np.float32, at_end), guarded((42,), np.float32, at_end)
        gx[...] = x
        gy[...] = 0
        exe.run({"x": gx}, {"y": gy}, {"N": 21})
        np.testing.assert_array_equal(gy[1::2], x[2::3])

    # 5. stride-2 loads (a wide masked load + shuffle) touching the first and the last element
    body = For(i, 0, N, [Store("y", (i,), Load("x", (2 * i,)) + Load("x", (2 * i + 1,)))], "vectorized", 16, "masked")
    bufs = [Buffer("x", "float32", (2 * N,), "input", align=A), Buffer("y", "float32", (N,), "output", align=A)]
    x = rng.standard_normal(2 * 19).astype(np.float32)
    check(Program("pairs", bufs, [Kernel("pairs", [body])], ("N",)), {"x": x}, {"y": (19,)}, {"N": 19},
          {"y": x[0::2] + x[1::2]})

    # 6. the same convolution guarded by a lane-varying If instead of clamping: masked lanes
    body = For(i, 0, N, [Alloc("acc", "float32", (), 0.0),
                         For(kw, 0, 3, [If(inside, Assign("acc", (), Fma(Load("x", (iw,)), Load("w", (kw,)),
                                                                          Ref("acc"))))], "unrolled"),
                         Store("y", (i,), Ref("acc"))], "vectorized", 16, "masked")
    bufs = [Buffer("x", "float32", (N,), "input", align=A), Buffer("w", "float32", (3,), "input", align=A),
            Buffer("y", "float32", (N,), "output", align=A)]
    x, w = rng.standard_normal(35).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    ref = np.convolve(np.pad(x, 1), w[::-1], mode="valid")
    check(Program("guarded", bufs, [Kernel("guarded", [body])], ("N",)), {"x": x, "w": w}, {"y": (35,)}, {"N": 35},
          {"y": ref})

    # 7. a register block of 7 columns over channel lanes, stored as rows (transposed in
    # registers): the rows end at the buffer's last element, the channel tail is masked;
    # whole vectors' rows are one masked store each, or without fast masked stores plain
    # stores of 4, 2 and 1 elements (codegen options are part of the code's cache key)
    c, r = loop_var("c"), loop_var("r")
    host_options = runtime.llvm.codegen_options
    for width, channels in ((16, 20), (32, 37)):
        for masked in (True, False):
            runtime.llvm.codegen_options = lambda masked=masked: {**host_options(), "masked_stores": masked}
            block = For(r, 0, 7, [Store("y", (c, r), Load("x", (r, c)) * 2.0)], "unrolled")
            body = For(c, 0, N, [block], "vectorized", width, "masked")
            bufs = [Buffer("x", "float32", (7, N), "input", align=A), Buffer("y", "float32", (N, 7), "output", align=A)]
            x = rng.standard_normal((7, channels)).astype(np.float32)
            program = Program("rows", bufs, [Kernel("rows", [body])], ("N",))
            text = runtime.load(program).source("llvm")
            assert "llvm.masked.store.v16f32" in text  # the channel tail
            assert ("store <4 x float>" in text and "store <2 x float>" in text) == (not masked)
            check(program, {"x": x}, {"y": (channels, 7)}, {"N": channels}, {"y": 2 * x.T})
    runtime.llvm.codegen_options = host_options

    # 8. compiled 1x1 convs in packed panels: a plane of 200 columns is a panel of 128 and
    # a partial one of 72 (vectors of 32, 32 and 8 masked lanes); a 1 MB output of 64x64
    # planes is written with streaming stores. Inputs and outputs end at the guard page
    # (sizes are multiples of 64 bytes, so the runtime reads and writes them in place).
    import ir
    for cin, cout, height, width, mark in ((4, 24, 5, 40, "pack-columns 128"),
                                           (16, 64, 64, 64, "streaming-stores")):
        g = ir.Graph("packed")
        g.add_input("x", (1, cin, height, width))
        g.add_param("w", rng.standard_normal((cout, cin, 1, 1)).astype(np.float32))
        g.add_node("conv", ["x", "w"], name="y")
        g.set_outputs("y")
        check_graph(g, mark, rng)

    # 9. a compiled 5x5 conv with padding 2 on 17-wide rows (width vectors, 6 channels): its
    # two border columns a side run as masked vectors whose lanes past the row's end read
    # nothing; with 20 channels the same conv runs on channel vectors, the last block's 4
    # channels masked and stored as rows that end at the guard page (21760 bytes)
    for channels, mark in ((6, "vector(16, tail=masked) for j in 15..17:"),
                           (20, "for o_i in 0..Min(16, 20 - 16*o_o):")):
        g = ir.Graph("borders")
        g.add_input("x", (1, 3, 16, 17))
        g.add_param("w", rng.standard_normal((channels, 3, 5, 5)).astype(np.float32))
        g.add_node("conv", ["x", "w"], {"pads": [2, 2, 2, 2]}, name="y")
        g.set_outputs("y")
        check_graph(g, mark, rng)

    # 10. a 1x1 conv and the depthwise 3x3/2 conv after it in one kernel, the 1x1's rows in
    # a ring on the stack: the depthwise reads padding rows and columns from no memory
    g = ir.Graph("ring")
    g.add_input("x", (1, 8, 9, 16))
    g.add_param("w1", rng.standard_normal((32, 8, 1, 1)).astype(np.float32))
    g.add_param("w2", rng.standard_normal((32, 1, 3, 3)).astype(np.float32))
    g.add_node("conv", ["x", "w1"], name="e")
    g.add_node("relu", ["e"], name="r")
    g.add_node("conv", ["r", "w2"], {"group": 32, "pads": [1] * 4, "strides": [2, 2]}, name="y")
    g.set_outputs("y")
    check_graph(g, "alloc ring: f32[3, 16] x32 lanes", rng)

    # 11. an elementwise kernel over whole NCHW planes: rows of 9 run as one row of 45 per
    # plane (vectors of 16, 16 and 13 masked lanes), the last plane ending at the guard page
    # (16 planes: 2880 bytes, a multiple of 64, so the arrays are used in place)
    g = ir.Graph("planes")
    g.add_input("x", (1, 16, 5, 9))
    g.add_node("sigmoid", ["x"], name="y")
    g.set_outputs("y")
    check_graph(g, "merge-rows 5", rng)

    # 12. a 3x3/2 max pool with padding and ceil mode as row and column passes
    # (`separable`): the row pass reads the input's edge rows and columns only under its
    # bounds, the column pass the last window's column of its rows exactly (arrays of
    # 9152 and 2688 bytes, used in place)
    g = ir.Graph("pool_rows")
    g.add_input("x", (1, 16, 11, 13))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1] * 4, "ceil_mode": 1}
    g.add_node("max_pool", ["x"], attrs, name="y")
    g.set_outputs("y")
    check_graph(g, "y:rows[", rng)

    # 13. a conv in 2 groups of 30 channels, one vector of 32 lanes a group (`group_tile`):
    # its 2 masked lanes store nothing, the last group's rows ending at the guard page
    # (21600 bytes); with the weights an input, their copy in blocks of 32 lanes reads
    # none of the 2 past each group's 30 (the last ending at the guard page). In 2 groups
    # of 40, three vectors of 16 a group, the third's 8 masked lanes likewise.
    for channels, lanes, mark in ((60, 32, "for o_i in 0..30:"),
                                  (80, 16, "for o_i in 0..Min(16, 40 - 16*")):
        for weights in ("param", "input"):
            g = ir.Graph("group_tiles")
            g.add_input("x", (1, 20, 9, 10))
            w = rng.standard_normal((channels, 10, 3, 3)).astype(np.float32)
            if weights == "param":
                g.add_param("w", w)
            else:
                g.add_input("w", w.shape)
            g.add_node("conv", ["x", "w"], {"pads": [1] * 4, "group": 2}, name="y")
            g.set_outputs("y")
            check_graph(g, f"vector({lanes}, tail=masked) {mark}", rng)
    print("ok")
    """
)

OFF_BY_ONE = textwrap.dedent(
    """
    body = For(i, 0, N, [Store("y", (i,), Load("x", (i + 1,)))], "vectorized", 16, "masked")
    bufs = [Buffer("x", "float32", (N,), "input", align=4), Buffer("y", "float32", (N,), "output", align=4)]
    exe = runtime.load(Program("oob", bufs, [Kernel("oob", [body])], ("N",)))
    x, y = guarded((20,), np.float32, True), guarded((20,), np.float32, True)
    exe.run({"x": x}, {"y": y}, {"N": 20})
    print("survived")
    """
)


def _child(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVC_CACHE": "0"}
    return run_python(HARNESS + code, env, timeout=180)


def test_kernels_stay_inside_guarded_buffers():
    proc = _child(IN_BOUNDS)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.skipif(not hasattr(signal, "SIGSEGV"), reason="needs POSIX signals")
def test_harness_catches_an_off_by_one_read():
    proc = _child(OFF_BY_ONE)
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "survived" not in proc.stdout
