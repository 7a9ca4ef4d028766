"""Lowering: the structure of the loop IR that schedules produce (numbers are checked
end to end in test_compile.py): padding split out of vectorized interiors, register
blocks, collapsed parallel loops, fused epilogues that never store intermediates, and
the liveness-planned arena."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import sympy

import convc
import ir
from convc import loops
from convc.compiler import lower_graph
from convc.lower import default_schedule
from convc.lower.registers import ROW_BLOCK
from convc.texpr import texpr_of

RNG = np.random.default_rng(1)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def walk(stmt, enclosing=()):
    """Yield (statement, enclosing For loops) for every statement under `stmt`."""
    yield stmt, enclosing
    if isinstance(stmt, loops.Block):
        for s in stmt.stmts:
            yield from walk(s, enclosing)
    elif isinstance(stmt, loops.For):
        yield from walk(stmt.body, (*enclosing, stmt))
    elif isinstance(stmt, loops.If):
        yield from walk(stmt.then, enclosing)
        if stmt.orelse is not None:
            yield from walk(stmt.orelse, enclosing)


def conv_graph(channels=6, size=10, pads=(1, 1, 1, 1), act="relu", stride=1):
    """A 3x3 conv + `act` over 3 input channels; by default 6 output channels, under
    `PARTIAL_MIN_CHANNELS`, so the rows narrower than `NARROW_WIDTH` keep width vectors."""
    g = ir.Graph("conv")
    g.add_input("x", ("N", 3, size, size))
    g.add_param("w", randn(channels, 3, 3, 3))
    g.add_param("b", randn(channels))
    attrs = {"pads": list(pads), "strides": [stride, stride]}
    g.add_node("conv", ["x", "w", "b"], attrs, name="conv")
    g.add_node(act, ["conv"], name="act")
    g.set_outputs("act")
    return g


def kernels(graph):
    return lower_graph(graph)[2].kernels


def test_padding_checks_stay_out_of_the_vectorized_interior():
    # the border columns are masked vectors that keep the checks on j
    (kernel,) = kernels(conv_graph())
    vector_loops = [s for s, _ in walk(kernel.body) if isinstance(s, loops.For) and s.width > 1]
    assert [(s.var.name, s.start, s.stop, s.width) for s in vector_loops] == [
        ("j", 0, 1, 16),
        ("j", 1, 9, 16),
        ("j", 9, 10, 16),
    ]
    checks_j = [
        any(
            isinstance(stmt, loops.If) and "j" in loops.format_expr(stmt.cond)
            for stmt, _ in walk(loop.body)
        )
        for loop in vector_loops
    ]
    assert checks_j == [True, False, True]


def test_unpadded_conv_has_no_bound_checks_at_all():
    (kernel,) = kernels(conv_graph(pads=(0, 0, 0, 0)))
    assert not [s for s, _ in walk(kernel.body) if isinstance(s, loops.If)]


def test_output_channels_are_register_blocked_and_unrolled():
    (kernel,) = kernels(conv_graph(channels=6))
    vector = [s for s, _ in walk(kernel.body) if isinstance(s, loops.For) and s.width > 1]
    allocs = [[a.shape for a, _ in walk(v.body) if isinstance(a, loops.Alloc)] for v in vector]
    assert allocs == [[(6,)]] * 3  # the masked borders and the interior
    unrolled = [
        s for s, _ in walk(kernel.body) if isinstance(s, loops.For) and s.kind == "unrolled"
    ]
    # the register block of 6 output channels, and the window's 3 rows (`UNROLLED_TAPS`)
    assert {(str(s.var), s.stop) for s in unrolled} == {("o_i", 6), ("a", 3)}
    # a depthwise conv (one input channel a window) keeps its rows a loop
    g = ir.Graph("depthwise")
    g.add_input("x", ("N", 32, 20, 20))
    g.add_param("w", randn(32, 1, 3, 3))
    g.add_node("conv", ["x", "w"], {"pads": [1] * 4, "group": 32}, name="conv")
    g.set_outputs("conv")
    (kernel,) = kernels(g)
    taps = [s for s, _ in walk(kernel.body) if isinstance(s, loops.For) and str(s.var) == "a"]
    assert taps and all(s.kind != "unrolled" for s in taps)


def test_epilogue_is_applied_in_registers_and_only_the_group_output_is_stored():
    _, _, program = lower_graph(conv_graph())
    (kernel,) = program.kernels
    stores = {s.buffer for s, _ in walk(kernel.body) if isinstance(s, loops.Store)}
    assert stores == {"act"}
    assert "conv" not in {b.name for b in program.buffers}
    assert "max(0.0, v" in loops.format_kernel(kernel)
    assert kernel.comment.startswith("conv + act | tiles o=6 order n,o,i,j vector j/16")


def test_big_kernels_get_one_collapsed_parallel_loop():
    g = conv_graph(channels=48, size=64)
    (kernel,) = kernels(g)
    outer = kernel.body.stmts[0]
    assert outer.kind == "parallel" and str(outer.var) == "n_i_o_o"  # rows, then channels
    assert outer.stop == sympy.Symbol("N", integer=True, positive=True) * 3 * 64
    (small,) = kernels(conv_graph(channels=16, size=8))  # under the work a region pays for
    parallel = [s for s, _ in walk(small.body) if isinstance(s, loops.For) and s.kind == "parallel"]
    assert [str(s.var) for s in parallel] == ["n"] and small.parallel_when is not None


def test_windowed_convs_with_16k_channels_vectorize_over_channels():
    (kernel,) = kernels(conv_graph(channels=32, size=23))
    text = loops.format_kernel(kernel)
    assert "vector(32, tail=masked) for o_i in 0..32:" in text  # a multiple of 32: two registers
    # 23 columns, blocks of at most 10: three blocks at fixed places (8, 8, 7 columns), each
    # copy checking its own column (no one-column passes, no loop over blocks)
    assert text.count("unrolled for j_i in 0..8:") == 4 and "for j_o" not in text
    assert "unrolled for j_i in 0..7:" in text and "j_i + 16]" in text
    (wide,) = kernels(conv_graph(channels=32, size=100))
    text = loops.format_kernel(wide)
    # interior 1..99 in a loop of blocks of 7 (14 blocks); the border and leftover columns
    # as fixed blocks: [0, 1) and [99, 100)
    assert "for j_o in 0..14:" in text and "unrolled for j_i in 0..7:" in text
    assert "unrolled for j_i in 0..1:" in text and "j_i + 99]" in text
    assert "w.oc32[" in text and ", o_i]" in text
    (padded,) = kernels(conv_graph(channels=32, size=56))
    text = loops.format_kernel(padded)
    # 56 padded columns: the fewest blocks of at most 10 at fixed places, six of 10, 10, 9,
    # 9, 9, 9 columns (not seven of 8: one more pass over the weights)
    assert text.count("unrolled for j_i in 0..10:") == 2 * 2  # each: its FMAs and stores
    assert text.count("unrolled for j_i in 0..9:") == 4 * 2 and "for j_o" not in text
    (odd,) = kernels(conv_graph(channels=48, size=20))
    assert "vector(16, tail=masked) for o_i in 0..16:" in loops.format_kernel(odd)
    (narrow,) = kernels(conv_graph(channels=32, size=7))
    text = loops.format_kernel(narrow)
    assert "alloc acc: f32[7] = " in text  # the whole row is one register block
    per_copy = "unrolled for j_i in 0..7:\n                    if (idx(-b - j_i + 1) <= idx(0))"
    assert per_copy in text  # border checks inside each copy, folded where j_i is interior


def test_default_schedules_by_family():
    g = conv_graph(channels=12, size=64)
    te = texpr_of(g, g.nodes["conv"])[0]
    schedule = default_schedule(te)
    assert schedule.vector_axis == "j" and schedule.vector_width == 16
    assert schedule.tiles == {"o": 6} and schedule.unroll == ("o.i",)
    assert schedule.parallel_axis == "n*o"
    dense = ir.Graph("dense")
    dense.add_input("x", ("N", 20))
    dense.add_param("w", randn(20, 10))
    dense.add_node("gemm", ["x", "w"], name="fc")
    dense.set_outputs("fc")
    te = texpr_of(dense, dense.nodes["fc"])[0]
    schedule = default_schedule(te)
    assert schedule.vector_axis == "j.i" and schedule.tiles == {"j": 32, "i": ROW_BLOCK}
    assert schedule.unroll == ("i.i",)


def chain_graph():
    """Four kernels in a row; each temp dies when the next kernel has read it."""
    g = ir.Graph("chain")
    g.add_input("x", ("N", 4, 6, 6))
    g.add_param("w", randn(4, 4, 1, 1))
    previous = "x"
    for k in range(4):
        g.add_node("conv", [previous, "w"], name=f"c{k}")
        previous = f"c{k}"
    g.set_outputs(previous)
    return g


def test_arena_reuses_slots_of_dead_temporaries():
    _, _, program = lower_graph(chain_graph())
    temps = {b.name: b for b in program.buffers if b.role == "temp"}
    assert sorted(temps) == ["c0", "c1", "c2"]
    assert temps["c0"].offset == temps["c2"].offset != temps["c1"].offset
    n = sympy.Symbol("N", integer=True, positive=True)
    per_temp = 4 * 6 * 6 * 4
    assert sympy.simplify(program.arena_size.subs(n, 3) - 2 * 64 * -(-3 * per_temp // 64)) == 0
    assert program.symbols == ("N",)
    roles = {b.name: b.role for b in program.buffers}
    assert roles == {
        "x": "input",
        "c3": "output",
        "w.oc4": "param",
        "c0": "temp",
        "c1": "temp",
        "c2": "temp",
    }
    assert program.params["w.oc4"].flags.c_contiguous


def test_offsets_are_64_byte_multiples_for_odd_sizes():
    g = ir.Graph("odd")
    g.add_input("x", ("N", 3))
    g.add_node("relu", ["x"], name="r")
    g.add_node("softmax", ["r"], name="s")
    g.add_node("tanh", ["s"], name="t")
    g.set_outputs("t")
    _, _, program = lower_graph(g)
    n = sympy.Symbol("N", integer=True, positive=True)
    for buffer in program.buffers:
        if buffer.role == "temp":
            for batch in (1, 3, 7):
                assert int(buffer.offset.subs(n, batch)) % 64 == 0


def test_weights_are_packed_once_per_output_channel_block():
    g = conv_graph(channels=6)
    _, _, program = lower_graph(g)
    w = program.params["w.oc6"]
    assert w.shape == (1, 3, 3, 3, 6) and w.flags.c_contiguous
    np.testing.assert_array_equal(w[0, 2, 1, 0, :], g.values["w"].data[:, 2, 1, 0])
    text = loops.format_program(program)
    assert "w.oc6[o_o, c, a, b, o_i]" in text


def test_linear_weights_are_packed_in_panels_of_32_outputs():
    g = ir.Graph("linear")
    g.add_input("x", ("N", 20))
    weight = randn(40, 20)
    g.add_param("w", weight)
    g.add_node("gemm", ["x", "w"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    _, _, program = lower_graph(g)
    panels = program.params["w.p32"]
    assert panels.shape == (2, 20, 32) and panels.flags.c_contiguous
    np.testing.assert_array_equal(panels[1, 7, :8], weight[32:, 7])
    assert not panels[1, :, 8:].any()  # zero padding past the 40 outputs
    text = loops.format_program(program)
    assert "w.p32[j_o, k, j_i]" in text
    assert "vector(32, tail=masked) for j_i in 0..Min(32, 40 - 32*j_o):" in text
    assert f"unrolled for i_i in 0..{ROW_BLOCK}:" in text  # rows sharing each weight vector


def test_batched_matmul_reads_its_row_major_weights_directly():
    g = ir.Graph("bmm")
    g.add_input("x", ("N", 3, 20))
    weight = randn(20, 10)
    g.add_const("w", weight)
    g.add_node("matmul", ["x", "w"], name="mm")
    g.set_outputs("mm")
    _, _, program = lower_graph(g)
    assert "w[k, j]" in loops.format_program(program)


def test_views_share_their_source_memory_instead_of_copying():
    g = ir.Graph("view")
    g.add_input("x", ("N", 2, 3))
    g.add_node("relu", ["x"], name="r")
    g.add_node("flatten", ["r"], name="flat")
    g.add_node("tanh", ["flat"], name="t")
    g.set_outputs("t")
    _, _, program = lower_graph(g)
    assert [k.name for k in program.kernels] == ["r", "t"]
    temps = {b.name: b for b in program.buffers if b.role == "temp"}
    assert temps["flat"].offset == temps["r"].offset
    assert temps["flat"].shape != temps["r"].shape


def test_kernel_names_are_unique_c_identifiers():
    g = ir.Graph("names")
    g.add_input("x", ("N", 3))
    g.add_node("relu", ["x"], name="a.b")
    g.add_node("tanh", ["x"], name="a_b")
    g.add_node("add", ["a.b", "a_b"], name="sum")
    g.set_outputs("sum", "a.b", "a_b")
    _, _, program = lower_graph(g)
    names = [k.name for k in program.kernels]
    assert names == ["a_b", "a_b_1", "sum"]


def deep_conv(channels, outputs, kernel, size=4):
    g = ir.Graph("deep")
    g.add_input("x", ("N", channels, size, size))
    g.add_param("w", randn(outputs, channels, kernel, kernel) * 0.05)
    g.add_node("conv", ["x", "w"], {"pads": [kernel // 2] * 4}, name="conv")
    g.set_outputs("conv")
    return g


def test_convs_with_weights_past_the_caches_prefetch_the_next_channel_block():
    # 512 inputs x 3x3 x 32 lanes: 590 KB a block (past L2), 1.8 MB in all
    g = deep_conv(512, 96, 3)
    text = loops.format_kernel(kernels(g)[0])
    # once per step of the innermost reduction, both lines of the next block (the last
    # block's "next" clamped to itself)
    assert text.count("prefetch w.oc32[Min(") == 2 and "Min(2, " in text
    assert "a, b, 0]" in text and "a, b, 16]" in text
    x = RNG.standard_normal((2, 512, 4, 4)).astype(np.float32)
    got = convc.compile(g, threads=1).run({"x": x})["conv"]
    np.testing.assert_allclose(got, convc.interpret(g, {"x": x})["conv"], rtol=1e-4, atol=1e-4)
    # 1x1 320 -> 1280: 41 KB blocks, 1.6 MB in all
    assert "prefetch w.oc32[" in loops.format_kernel(kernels(deep_conv(320, 1280, 1))[0])
    # from 128 KB: 3x3 128 -> 128 (590 KB) prefetches; 3x3 32 -> 32 (37 KB) and a small
    # stem stay in cache
    assert "prefetch w.oc32[" in loops.format_kernel(kernels(deep_conv(128, 128, 3))[0])
    assert "prefetch" not in loops.format_kernel(kernels(deep_conv(32, 32, 3))[0])
    (small,) = kernels(conv_graph(channels=32, size=8))
    assert "prefetch" not in loops.format_kernel(small)
    # a 31x31 map (961 outputs a weight) prefetches; from 32x32 (1024) the weights stay in
    # L2 while the rows reuse them
    assert "prefetch w.oc32[" in loops.format_kernel(kernels(deep_conv(128, 128, 3, 31))[0])
    assert "prefetch w" not in loops.format_kernel(kernels(deep_conv(128, 128, 3, 32))[0])


@pytest.mark.parametrize("spatial", [(7,), (3, 3, 3)])
def test_deep_1d_and_3d_convs_with_chunks_outside_the_rows_keep_block_hints(spatial):
    # next-pass hints key on a 2-D conv's rows; a 1-D conv's axis 2 is its register block
    # (no loop outside it) and a 3-D conv's its depth: both keep the next block's hints
    g = ir.Graph(f"deep{len(spatial)}d")
    g.add_input("x", ("N", 512, *spatial))
    g.add_param("w", randn(512, 512, *([3] * len(spatial))) * 0.02)
    g.add_node("conv", ["x", "w"], {"pads": [1] * (2 * len(spatial))}, name="c")
    g.add_node("relu", ["c"], name="r")
    g.add_param("w2", randn(32, 512, *([3] * len(spatial))) * 0.02)
    g.add_node("conv", ["r", "w2"], {"pads": [1] * (2 * len(spatial))}, name="c2")
    g.set_outputs("c2")
    model = convc.compile(g, threads=2)
    assert "reduce-tiles" in model.source("loops") and "prefetch" in model.source("loops")
    x = RNG.standard_normal((2, 512, *spatial)).astype(np.float32)
    np.testing.assert_allclose(
        model.run({"x": x})["c2"], convc.interpret(g, {"x": x})["c2"], rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize("stride, pads", [(1, 1), (2, 1), (1, 0)])
def test_convs_reading_many_nchw_planes_hint_each_planes_next_row(stride, pads):
    # a 64-channel NCHW input of 2 MB an image: around the innermost tap, a hint for the
    # line the tap reads for the next output row, clamped to the rows the conv reads
    size = 90
    g = ir.Graph("planes")
    g.add_input("x", ("N", 64, size, size))
    g.add_param("w", randn(32, 64, 3, 3) * 0.05)
    g.add_node("conv", ["x", "w"], {"pads": [pads] * 4, "strides": [stride] * 2}, name="conv")
    g.set_outputs("conv")
    (kernel,) = kernels(g)
    hints = [s for s, _ in walk(kernel.body) if isinstance(s, loops.Prefetch)]
    assert hints and all(h.buffer == "x" for h in hints)
    assert re.search(r"prefetch x\[[^\n]*\n +for b in 0..3:", loops.format_kernel(kernel))
    rows = (size + 2 * pads - 3) // stride + 1
    for row in {h.index[2] for h in hints}:
        names = {str(v): v for v in row.free_symbols}
        assert set(names) <= {"n_i_o_o", "a"}
        read = {
            int(row.subs({names[k]: v for k, v in point.items() if k in names}))
            for point in ({"n_i_o_o": n, "a": a} for n in range(2 * rows) for a in range(3))
        }
        assert min(read) >= 0 and max(read) == size - 1
    x = RNG.standard_normal((2, 64, size, size)).astype(np.float32)
    got = convc.compile(g, threads=2).run({"x": x})["conv"]
    np.testing.assert_allclose(got, convc.interpret(g, {"x": x})["conv"], rtol=1e-4, atol=1e-4)
    # 3 planes (a stem), or 64 planes of 13x13, get none
    assert "prefetch" not in loops.format_kernel(kernels(conv_graph(channels=32, size=8))[0])
    small = ir.Graph("small")
    small.add_input("x", ("N", 64, 13, 13))
    small.add_param("w", randn(32, 64, 3, 3) * 0.05)
    small.add_node("conv", ["x", "w"], {"pads": [1] * 4}, name="conv")
    small.set_outputs("conv")
    assert "prefetch" not in loops.format_kernel(kernels(small)[0])


def test_passes_over_chunks_prefetch_the_next_chunk_once_between_their_rows():
    # 512 -> 512 @7 runs its reduction in chunks of 32 channels outside the rows (a pass:
    # one chunk over all 7 rows). Each step around the innermost tap issues one hint, and
    # the rows of a pass, less the taps their padding skips, hint every line of the next
    # pass's weights: the next chunk of the block, or the next block's first chunk
    g = deep_conv(512, 512, 3, 7)
    (kernel,) = kernels(g)
    hints = [s for s, _ in walk(kernel.body) if isinstance(s, loops.Prefetch)]
    assert len(hints) == 1
    text = loops.format_kernel(kernel)
    around_b = r"for a in 0..3:\n( +if [^\n]*\n)? +prefetch w.oc32\[[^\n]*\n +for b in 0..3:"
    assert re.search(around_b, text)
    (hint,) = hints
    shape = (16, 512, 3, 3, 32)
    symbols = {str(v): v for e in hint.index for v in e.free_symbols}

    def hinted(block, chunk):
        lines = set()
        for i, c_i, a in itertools.product(range(7), range(32), range(3)):
            if not 0 <= i + a - 1 < 7:  # a padding row: the step is skipped
                continue
            values = {"n_o_o": block, "c_o": chunk, "i": i, "c_i": c_i, "a": a}
            index = [
                int(e.subs({symbols[k]: v for k, v in values.items() if k in symbols}))
                for e in hint.index
            ]
            assert all(0 <= k < n for k, n in zip(index, shape))
            lines.add(int(np.ravel_multi_index(index, shape)) // 16)
        return lines

    def chunk_lines(block, chunk):
        start = np.ravel_multi_index((block, 32 * chunk, 0, 0, 0), shape) // 16
        return set(range(start, start + 32 * 9 * 32 // 16))

    assert hinted(3, 4) == chunk_lines(3, 5)
    assert hinted(3, 15) == chunk_lines(4, 0)
    assert hinted(15, 15) <= chunk_lines(15, 0)  # the last pass: in bounds
    x = RNG.standard_normal((1, 512, 7, 7)).astype(np.float32)
    got = convc.compile(g, threads=2).run({"x": x})["conv"]
    np.testing.assert_allclose(got, convc.interpret(g, {"x": x})["conv"], rtol=1e-4, atol=1e-4)


def test_a_sum_starts_from_its_bias_unless_chunked():
    """The accumulators of a conv with a bias start from the bias (one addition an output
    fewer); a reduction run in chunks keeps zero, since its later chunks resume from the
    partial sums, and adds the bias after the last; results match the interpreter."""
    (kernel,) = kernels(conv_graph(channels=32, size=7))
    text = loops.format_kernel(kernel)
    assert "alloc acc: f32[7] = b[o_i + 32*o_o]" in text and "let v = acc[j_i]\n" in text
    g = ir.Graph("chunked")
    g.add_input("x", (1, 512, 7, 7))
    g.add_param("w", randn(512, 512, 3, 3) / 50)
    g.add_param("b", randn(512))
    g.add_node("conv", ["x", "w", "b"], {"pads": [1, 1, 1, 1]}, name="conv")
    g.set_outputs("conv")
    (chunked,) = kernels(g)
    text = loops.format_kernel(chunked)
    assert "c_o" in text and "= 0.0" in text and "+ b[" in text
    x = {"x": randn(1, 512, 7, 7)}
    for graph, inputs in ((conv_graph(channels=32, size=7), {"x": randn(2, 3, 7, 7)}), (g, x)):
        got = convc.compile(graph, threads=1).run(inputs)
        want = convc.interpret(graph, inputs)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
