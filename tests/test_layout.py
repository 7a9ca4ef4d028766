"""Channel-blocked activations inside compiled models (`convc.lower.layout`): which values
are stored NCHW[B]c, that the kernels touching them read and write whole channel vectors,
and that models mixing blocked and NCHW values (partial blocks, depthwise, pooling,
residual adds, concatenation, flatten) still compute what the interpreter computes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for
from llvmlite import binding as llvm

import convc
import ir
from convc import nn
from convc.compiler import lower_graph
from convc.lower.layout import blocked_shape, channel_block, choose_layouts
from convc.passes import FusedGroup


class Mixed(nn.Module):
    """Blocked and NCHW values side by side: a partial block (24 channels), a depthwise
    conv, pools, a residual add, a concat (movement: its operands stay NCHW) and a
    flatten (a view) feeding a dense layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 24, 3, padding=1)
        self.depthwise = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.expand = nn.Conv2d(24, 64, 1)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.body = nn.Conv2d(64, 64, 3, padding=1)
        self.side = nn.Conv2d(64, 16, 1)
        self.average = nn.AvgPool2d(3, 1, 1)
        self.head = nn.Conv2d(80, 40, 3, stride=2, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(40, 10)

    def forward(self, x):
        x = self.depthwise(self.stem(x)).relu()
        x = self.pool(self.expand(x))
        x = (self.body(x) + x).relu()
        x = convc.nn.functional.cat([self.average(x), self.side(x)], 1)
        return self.fc(self.gap(self.head(x)).flatten(1))


def mixed_graph(batch="N", size=13):
    return nn.trace(Mixed(), convc.Input("x", (batch, 3, size, size)))


def test_blocked_values_are_the_internal_channel_rich_activations():
    graph, groups, _ = lower_graph(mixed_graph())
    layouts = choose_layouts(graph, groups)
    by_node = {group.output: group for group in groups}
    assert layouts, "a model of convs and pools stores its activations blocked"
    for name, block in layouts.items():
        value = graph.values[name]
        assert len(value.shape) == 4 and int(value.shape[1]) >= 16
        assert block == channel_block(value.shape[1])
        assert name in by_node and name not in graph.outputs
    stem, pool = (
        by_node[graph.nodes["stem"].outputs[0]],
        next(g for g in groups if g.anchor == "pool"),
    )
    assert layouts[stem.output] == 32  # 24 channels: one block of 32, the last 8 lanes unused
    assert layouts[pool.output] == 32
    # concat's operands and the value flatten views stay NCHW
    concat = next(n for n in graph.topological_nodes() if n.op == "concat")
    assert not set(concat.inputs) & set(layouts)
    assert concat.outputs[0] not in layouts
    flatten = next(n for n in graph.topological_nodes() if n.op == "flatten")
    assert flatten.inputs[0] not in layouts


def test_blocked_buffers_have_the_blocked_shape_and_the_same_element_count_rounded_up():
    graph, groups, program = lower_graph(mixed_graph(batch=2))
    layouts = choose_layouts(graph, groups)
    buffers = {b.name: b for b in program.buffers}
    # the stem's value lives in a ring of rows of the kernel that also runs its pool
    assert {name for name in layouts if name not in buffers} == {"stem"}
    for name, block in layouts.items():
        if name == "stem":
            continue
        shape = graph.values[name].shape
        assert buffers[name].shape == blocked_shape(shape, block)
        assert buffers[name].shape[-1] == block
    assert blocked_shape((2, 24, 5, 7), 16) == (2, 2, 5, 7, 16)
    assert blocked_shape((2, 24, 5, 7), 32) == (2, 1, 5, 7, 32)
    # 32 unless the last block of 32 would be at most half full
    assert [channel_block(c) for c in (96, 48, 24, 40, 56, 144, 16)] == [32, 16, 32, 16, 32, 16, 16]


def test_kernels_on_blocked_values_load_and_store_whole_channel_vectors():
    graph, groups, program = lower_graph(mixed_graph(batch=1))
    layouts = choose_layouts(graph, groups)
    text = "\n".join(convc.loops.format_kernel(k) for k in program.kernels)
    # the body conv (+ residual add + relu): o = 32*o_o + o_i, its result stored and the
    # residual read at [n, o_o, i, j, o_i], contiguous in o_i
    body = next(g for g in groups if g.anchor == "body")
    assert layouts[body.output] == 32
    assert re.search(rf"{body.output}\[[^]]*, j_i, o_i\] = ", text)
    assert re.search(r"let v1 = v \+ pool\[[^]]*, j_i, o_i\]", text)
    llvm = convc.compile(mixed_graph(batch=1), threads=1).source("llvm")
    functions = [f for f in llvm.split("\ndefine ") if f.split("(")[0].count("kernel.body__")]
    assert functions  # the kernel and its outlined parallel body
    assert not any("masked.scatter" in f or "masked.gather" in f for f in functions)


@pytest.mark.parametrize("batch", [1, 3])
def test_mixed_layouts_match_the_interpreter(batch):
    graph = mixed_graph(batch="N")
    assert_compiled_matches(graph, inputs_for(graph, batch))


@pytest.mark.parametrize("channels", [16, 20, 32, 48])
def test_partial_and_whole_blocks_through_pools_and_depthwise(channels):
    g = ir.Graph("blocks")
    g.add_input("x", ("N", 3, 9, 11))
    rng = np.random.default_rng(channels)

    def param(name, *shape):
        g.add_param(name, rng.standard_normal(shape).astype(np.float32))

    param("w1", channels, 3, 3, 3)
    param("w2", channels, 1, 3, 3)
    param("w3", 8, channels, 1, 1)
    g.add_node("conv", ["x", "w1"], {"pads": [1, 1, 1, 1]}, name="c1")
    g.add_node("relu", ["c1"], name="r1")
    g.add_node("conv", ["r1", "w2"], {"pads": [1, 1, 1, 1], "group": channels}, name="dw")
    g.add_node("max_pool", ["dw"], {"kernel_shape": [2, 2], "strides": [2, 2]}, name="mp")
    g.add_node("avg_pool", ["mp"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, name="ap")
    g.add_node("add", ["ap", "mp"], name="sum")
    g.add_node("conv", ["sum", "w3"], name="out")
    g.set_outputs("out")
    graph, groups, _ = lower_graph(g)
    assert set(choose_layouts(graph, groups)) >= {"r1", "mp"}
    assert_compiled_matches(g, inputs_for(g, 2))


@pytest.mark.parametrize("outputs, width", [(24, 9), (40, 13), (64, 5)])
def test_nchw_outputs_of_channel_vector_kernels_are_stored_as_rows(outputs, width):
    # the last conv reads a blocked value and writes the NCHW graph output: its register
    # block of columns is transposed in registers and stored one channel row at a time
    # (masked where the channel tile is partial), not scattered lane by lane
    g = ir.Graph("rows")
    g.add_input("x", ("N", 3, 7, width))
    rng = np.random.default_rng(outputs)
    # weights scaled by fan-in keep values near 1, where the absolute tolerance is meant
    g.add_param("w1", (rng.standard_normal((32, 3, 3, 3)) / np.sqrt(27)).astype(np.float32))
    w2 = rng.standard_normal((outputs, 32, 3, 3)) / np.sqrt(288)
    g.add_param("w2", w2.astype(np.float32))
    g.add_node("conv", ["x", "w1"], {"pads": [1, 1, 1, 1]}, name="c1")
    g.add_node("conv", ["c1", "w2"], {"pads": [1, 1, 1, 1]}, name="c2")
    g.set_outputs("c2")
    llvm = convc.compile(g, threads=1).source("llvm")
    functions = [f for f in llvm.split("\ndefine ") if f.split("(")[0].count("kernel.c2")]
    assert functions and not any("masked.scatter" in f for f in functions)
    assert any("llvm.masked.store.v16f32" in f for f in functions)
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


def deep_residual_graph(outputs=264, size=5):
    """A 256-input 3x3 conv + residual add + relu writing a blocked value (`outputs`
    channels: 264 is 16 blocks of 16 and a partial one of 8 lanes), read by a max pool."""
    g = ir.Graph(f"deep{outputs}")
    g.add_input("x", ("N", 8, size, size))
    rng = np.random.default_rng(outputs)

    def param(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        weights = rng.standard_normal(shape) / np.sqrt(fan_in)
        g.add_param(name, weights.astype(np.float32))

    param("w0", 256, 8, 3, 3)
    param("w1", outputs, 256, 3, 3)
    param("w2", outputs, 256, 1, 1)
    param("w3", 8, outputs, 1, 1)
    g.add_node("conv", ["x", "w0"], {"pads": [1, 1, 1, 1]}, name="c0")
    g.add_node("relu", ["c0"], name="r0")
    g.add_node("conv", ["r0", "w1"], {"pads": [1, 1, 1, 1]}, name="deep")
    g.add_node("conv", ["r0", "w2"], name="side")
    g.add_node("add", ["deep", "side"], name="sum")
    g.add_node("relu", ["sum"], name="r1")
    g.add_node("max_pool", ["r1"], {"kernel_shape": [2, 2], "strides": [1, 1]}, name="mp")
    g.add_node("conv", ["mp", "w3"], name="out")
    g.set_outputs("out")
    return g


def test_deep_convs_writing_blocked_values_run_their_reduction_in_chunks(monkeypatch):
    # one block of 32 input channels at a time, each chunk over all the rows; the partial
    # sums wait in the blocked output, and only the last chunk adds the residual and
    # applies the relu
    graph = deep_residual_graph()
    program = convc.compile(graph, threads=1).program
    (deep,) = [k for k in program.kernels if k.name.startswith("deep")]
    text = convc.loops.format_kernel(deep)
    assert "reduce-tiles c=32" in text and "for c_i in 0..32" in text
    assert re.search(r"if idx\(c_o\) == idx\(7\):", text)
    assert re.search(r"r0\[[^]]*c_o, [^]]*, c_i\]", text)  # the chunk's lanes, no quotients
    (last,) = [k for k in program.kernels if k.name.startswith("out")]
    assert "reduce-tiles" not in convc.loops.format_kernel(last)  # 17 KB of weights a block
    x = inputs_for(graph, 2)
    chunked = assert_compiled_matches(graph, x, threads=2)["out"]
    # the same sums in the same order: bit for bit what the unchunked kernel computes
    monkeypatch.setattr(convc.lower.reduction_chunks, "CHUNK_MIN_WEIGHTS", 1 << 40)
    unchunked = deep_residual_graph()
    unchunked.name = "unchunked"  # another fingerprint: not the model compiled above
    whole = convc.compile(unchunked, threads=2)
    assert "reduce-tiles" not in whole.source("loops")
    np.testing.assert_array_equal(whole.run(x)["out"], chunked)


@pytest.mark.parametrize("outputs", [32 * 7, 272])
def test_convs_with_few_output_channel_blocks_keep_the_whole_reduction(outputs):
    # 7 blocks of 32 share too little between threads once the rows are inside the chunks;
    # 272 channels are 17 blocks of 16 and do chunk
    graph = deep_residual_graph(outputs)
    text = convc.compile(graph, threads=1).source("loops")
    deep = text[text.index("kernel deep") :].split("\nkernel ")[0]
    assert ("reduce-tiles" in deep) == (outputs == 272)


def test_reductions_over_a_blocked_input_loop_over_its_blocks_then_their_lanes():
    # the body conv reads the 64-channel pool output, stored in blocks of 32: c = 32*c_b + c_l,
    # read as pool[.., c_b, .., c_l] (no quotient or remainder left in the loop)
    _, _, program = lower_graph(mixed_graph(batch=1))
    (kernel,) = [k for k in program.kernels if k.name.startswith("body")]
    text = convc.loops.format_kernel(kernel)
    assert "for c_b in 0..2:" in text and "for c_l in 0..32:" in text
    assert re.search(r"pool\[[^]]*, c_b, [^]]*, c_l\]", text)
    assert "floor(c/" not in text and "Mod(c," not in text


def _loop_order(text: str, *names: str) -> list[int]:
    """Where each `for <name> in` loop first opens in `text` (-1 if absent)."""
    return [text.find(f"for {name} in ") for name in names]


@pytest.mark.parametrize("chunked", [False, True])
def test_blocked_input_lanes_run_inside_the_outer_window_taps(chunked, monkeypatch):
    # consecutive reduction steps over a channel-blocked input read the lanes of the same
    # lines: c_b, a, c_l, b (an NCHW input keeps its rows adjacent: c, a, b)
    if chunked:  # chunks of one input block, outside the rows
        monkeypatch.setattr(convc.lower.reduction_chunks, "CHUNK_MIN_WEIGHTS", 1)
        monkeypatch.setattr(convc.lower.reduction_chunks, "CHUNK_MIN_BLOCKS", 1)
    g = ir.Graph(f"taps{int(chunked)}")
    g.add_input("x", ("N", 8, 12, 12))
    rng = np.random.default_rng(3)
    g.add_param("w1", (rng.standard_normal((64, 8, 3, 3)) / np.sqrt(72)).astype(np.float32))
    g.add_param("w2", (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32))
    g.add_node("conv", ["x", "w1"], {"pads": [1, 1, 1, 1]}, name="c1")
    g.add_node("relu", ["c1"], name="r1")
    g.add_node("conv", ["r1", "w2"], {"pads": [1, 1, 1, 1]}, name="c2")
    g.add_node("relu", ["c2"], name="r2")
    g.set_outputs("r2")
    _, _, program = lower_graph(g)
    first, second = (convc.loops.format_kernel(k) for k in program.kernels[:2])
    c, a, b = _loop_order(first, "c", "a", "b")
    assert 0 <= c < a < b
    lanes = "c_i" if chunked else "c_l"
    assert ("reduce-tiles" in second) == chunked
    blocks, a, lane, b = _loop_order(second, "c_o" if chunked else "c_b", "a", lanes, "b")
    assert 0 <= blocks < a < lane < b
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


def test_chunked_reductions_into_nchw_outputs_keep_their_partial_sums_in_blocked_scratch(
    monkeypatch,
):
    # a lone deep conv writes the NCHW graph output: the partial sums wait in a blocked
    # temporary, and the last chunk stores the rows of the output
    g = ir.Graph("deep_nchw")
    g.add_input("x", ("N", 256, 5, 6))
    rng = np.random.default_rng(5)
    weights = rng.standard_normal((272, 256, 3, 3)) / 48
    g.add_param("w", weights.astype(np.float32))
    g.add_node("conv", ["x", "w"], {"pads": [1, 1, 1, 1]}, name="conv")
    g.set_outputs("conv")
    model = convc.compile(g, threads=2)
    text = model.source("loops")
    assert "buffer conv.partial: f32[N,17,5,6,16] temp" in text
    assert "reduce-tiles c=32" in text
    x = inputs_for(g, 2)
    chunked = assert_compiled_matches(g, x, threads=2)["conv"]
    monkeypatch.setattr(convc.lower.reduction_chunks, "CHUNK_MIN_WEIGHTS", 1 << 40)
    g.name = "deep_nchw_whole"
    whole = convc.compile(g, threads=2)
    assert "partial" not in whole.source("loops")
    np.testing.assert_array_equal(whole.run(x)["conv"], chunked)


def wide_row_graph(strided_consumer: bool) -> ir.Graph:
    """relu -> 3x3 64 -> 64 conv "wide" on 40-wide rows, then (if `strided_consumer`) a
    3x3/2 conv "s2" that reads it, else "wide" is the graph's (NCHW) output."""
    g = ir.Graph("row_chunks" if strided_consumer else "row_chunks_nchw")
    g.add_input("x", ("N", 64, 12, 40))
    rng = np.random.default_rng(7)
    g.add_param("w1", (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32))
    g.add_node("relu", ["x"], name="r0")
    g.add_node("conv", ["r0", "w1"], {"pads": [1, 1, 1, 1]}, name="wide")
    if not strided_consumer:
        g.set_outputs("wide")
        return g
    g.add_param("w2", (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32))
    g.add_node("conv", ["wide", "w2"], {"pads": [1, 1, 1, 1], "strides": [2, 2]}, name="s2")
    g.set_outputs("s2")
    return g


def test_convs_with_few_channel_blocks_chunk_their_reduction_inside_each_wide_row(monkeypatch):
    # 64 -> 64 channels (2 blocks): threads keep sharing rows, and each row's 4 register
    # blocks of 10 columns share a chunk's weights; a 3x3/2 conv (2 blocks a row) does not
    g = wide_row_graph(strided_consumer=True)
    text = convc.compile(g, threads=2).source("loops")
    wide = text[text.index("kernel wide") :].split("\nkernel ")[0]
    assert "order n,i,o,c.o,j" in wide and "parallel n*i*o reduce-tiles c=32" in wide
    assert "reduce-tiles" not in text[text.index("kernel s2") :]
    x = inputs_for(g, 2)
    chunked = assert_compiled_matches(g, x, threads=2)["s2"]
    monkeypatch.setattr(convc.lower.reduction_chunks, "CHUNK_MIN_WEIGHTS", 1 << 40)
    g.name = "row_chunks_whole"
    np.testing.assert_array_equal(convc.compile(g, threads=2).run(x)["s2"], chunked)


def test_convs_writing_nchw_keep_the_whole_reduction_in_each_row():
    # the wide conv of the test above, now the graph's output (stored NCHW): row chunks
    # measured slower there, so its reduction runs whole; its result is unchanged
    g = wide_row_graph(strided_consumer=False)
    text = convc.compile(g, threads=2).source("loops")
    assert "order n,i,o,j" in text and "reduce-tiles" not in text and "partial" not in text
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


@pytest.mark.parametrize("outputs", [128, 160])
def test_convs_whose_weights_pass_l2_chunk_outside_the_rows_with_few_blocks(outputs):
    # 5x5 160 -> 160: 5 blocks of 32 and 2.56 MB of weights, which every row would stream
    # from beyond L2; 160 -> 128 (4 blocks, 2.05 MB, just under 2 MiB) keeps them whole
    g = ir.Graph(f"wide_weights{outputs}")
    g.add_input("x", ("N", 160, 6, 7))
    rng = np.random.default_rng(outputs)
    g.add_param("w", (rng.standard_normal((outputs, 160, 5, 5)) / 60).astype(np.float32))
    g.add_node("relu", ["x"], name="r0")
    g.add_node("conv", ["r0", "w"], {"pads": [2, 2, 2, 2]}, name="wide")
    g.add_node("relu", ["wide"], name="r1")
    g.set_outputs("r1")
    text = convc.compile(g, threads=2).source("loops")
    wide = text[text.index("kernel wide") :].split("\nkernel ")[0]
    assert ("order n,o,c.o,i,j" in wide and "parallel n*o reduce-tiles c=32" in wide) == (
        outputs == 160
    )
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


def bias_free_chain(width: int) -> ir.Graph:
    """Two bias-free 3x3 64->64 convs: the first writes a blocked value in row chunks."""
    g = ir.Graph(f"bias_free{width}")
    g.add_input("x", ("N", 64, 8, width))
    rng = np.random.default_rng(width)
    for k in range(2):
        g.add_param(f"w{k}", (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32))
        g.add_node("conv", ["x" if k == 0 else "c0", f"w{k}"], {"pads": [1] * 4}, name=f"c{k}")
    g.set_outputs("c1")
    return g


@pytest.mark.skipif(
    "avx512f" not in llvm.get_host_cpu_features().flatten(), reason="counts AVX-512 registers"
)
def test_chunks_of_a_bias_free_conv_leave_their_partial_sums_in_memory():
    # with nothing to add at the end, the last chunk's store and the others' match; LLVM
    # merged them and kept a whole row of partial sums in registers across the chunk loop,
    # spilling them inside the reduction (223 vector spill stores at 40 columns, 3.0 ms
    # instead of 1.35 at 56). The barrier after each chunk's stores leaves them in memory.
    # Counted in the parallel body only (the launcher zeroes its argument block with
    # vector stores), and against one register block's 20 accumulators: LLVM's schedule
    # for some CPUs (znver5) spills a few of the block's 32 live vectors (8 stores), which
    # is register pressure inside one block, not a row kept across the chunk loop.
    g = bias_free_chain(40)
    model = convc.compile(g, threads=1)
    text = model.source("loops")
    first = text[text.index("kernel c0") : text.index("kernel c1")]
    assert "parallel n*i*o reduce-tiles c=32" in first
    # one a register block: four of 10 columns
    assert first.count("barrier") == first.count("alloc acc") == 4
    asm = model.source("asm")
    c0 = asm[asm.index("kernel.c0.par0.thunk:") : asm.index("kernel.c1")]
    assert len(re.findall(r"vmov\w+\s+%zmm\d+, -?\d*\(%rsp\)", c0)) < 2 * 10
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


@pytest.mark.parametrize("size, merged", [(7, 7), (14, 2), (28, 1)])
def test_narrow_unpadded_1x1_convs_merge_rows_so_register_blocks_span_them(size, merged):
    # 1x1 convs on 7-wide rows run all 7 rows as one row of 49 columns, on 14-wide rows
    # pairs of rows; the residual add and the relu read and write with the same indices
    g = ir.Graph(f"merged{size}")
    g.add_input("x", ("N", 64, size, size))
    rng = np.random.default_rng(size)
    g.add_param("w1", (rng.standard_normal((96, 64, 1, 1)) / 8).astype(np.float32))
    g.add_param("w2", (rng.standard_normal((64, 96, 1, 1)) / 10).astype(np.float32))
    g.add_node("relu", ["x"], name="r0")
    g.add_node("conv", ["r0", "w1"], name="expand")
    g.add_node("relu", ["expand"], name="r1")
    g.add_node("conv", ["r1", "w2"], name="project")
    g.add_node("add", ["project", "r0"], name="sum")
    g.add_node("relu", ["sum"], name="out")
    g.set_outputs("out")
    text = convc.compile(g, threads=1).source("loops")
    expected = f"merge-rows {merged}" if merged > 1 else "order n,i,o,j vector"
    assert text.count(expected) >= 2, text[:3000]
    if merged == 1:  # (the relu of the NCHW input runs its planes as rows)
        convs = [
            line
            for line in text.splitlines()
            if line.startswith(("kernel expand", "kernel project"))
        ]
        assert len(convs) == 2 and not [line for line in convs if "merge-rows" in line]
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def grouped_graph(channels: int, group: int, size: int = 14) -> ir.Graph:
    """1x1 conv + relu -> grouped 3x3 conv -> relu: the grouped conv's input is an internal
    value (a relu of the NCHW input itself would read it channel by channel, so its
    output stays NCHW: `layout._without_gathers`)."""
    g = ir.Graph(f"grouped{channels}_{group}_{size}")
    g.add_input("x", ("N", channels, size, size))
    rng = np.random.default_rng(group)
    w0 = rng.standard_normal((channels, channels, 1, 1)) / channels**0.5
    g.add_param("w0", w0.astype(np.float32))
    w = rng.standard_normal((channels, channels // group, 3, 3)) / 12
    g.add_param("w", w.astype(np.float32))
    g.add_param("b", rng.standard_normal(channels).astype(np.float32))
    g.add_node("conv", ["x", "w0"], name="c0")
    g.add_node("relu", ["c0"], name="r0")
    g.add_node("conv", ["r0", "w", "b"], {"pads": [1] * 4, "group": group}, name="gc")
    g.add_node("relu", ["gc"], name="r1")
    g.set_outputs("r1")
    return g


@pytest.mark.parametrize(
    "channels, group, size, vector, blocked",
    # 64 a group: blocks of 32 lie in one group, so the values around it are blocked too;
    # 48 and 16 a group: 16-channel vectors on NCHW values (a block of 32 would span two
    # groups), on 14-wide rows and on 28-wide ones (where 128 channels would take 32-lane
    # vectors if ungrouped); 8 a group: one vector of 16 lanes a group, half of them masked
    # (`schedule.group_tile`); 4 a group: width vectors
    [
        (128, 2, 14, "vector o.i/32", True),
        (96, 2, 14, "vector o.i/16", False),
        (64, 4, 14, "vector o.i/16", False),
        (128, 8, 28, "vector o.i/16", False),
        (96, 2, 28, "vector o.i/16", False),
        (64, 8, 14, "vector o.i/16", False),
        (64, 16, 14, "vector j/16", False),
    ],
)
def test_grouped_convs_take_channel_vectors_when_each_lies_in_one_group(
    channels, group, size, vector, blocked
):
    g = grouped_graph(channels, group, size)
    graph, groups, _ = lower_graph(g)
    assert bool(choose_layouts(graph, groups)) == blocked
    text = convc.compile(g, threads=2).source("loops")
    kernel = text[text.index("kernel gc") :].split("\nkernel ")[0]
    assert vector in kernel
    if "o.i" in vector:  # every lane reads the same input channel: one broadcast a step
        reads = re.findall(r"r0\[[^]]*\]", kernel)
        assert reads and not [r for r in reads if "o_i" in r]
    for batch in (1, 2):
        assert_compiled_matches(g, inputs_for(g, batch), threads=2)


def lane_graph(first: str, second: str = "relu") -> ir.Graph:
    """`first` (reading the NCHW input x) -> `second` -> 3x3 conv -> add of the conv and
    `first`'s value -> 1x1 conv: what each value's layout becomes around ops that read
    their input at their own output channel."""
    g = ir.Graph(f"lanes_{first}_{second}")
    g.add_input("x", ("N", 32, 12, 12))
    rng = np.random.default_rng(5)
    g.add_param("w", (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32))
    g.add_param("dw", (rng.standard_normal((32, 1, 3, 3)) / 3).astype(np.float32))
    g.add_param("w1", (rng.standard_normal((32, 32, 1, 1)) / 6).astype(np.float32))
    window = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1] * 4}
    nodes = {
        "relu": ("relu", {}, []),
        "pool": ("max_pool", window, []),
        "depthwise": ("conv", {"pads": [1] * 4, "group": 32}, ["dw"]),
    }
    for name, source in ((first, "x"), (second, first)):
        op, attrs, params = nodes[name]
        g.add_node(op, [source, *params], attrs, name=name if source == "x" else "second")
    g.add_node("conv", ["second", "w"], {"pads": [1] * 4}, name="c")
    g.add_node("add", ["c", first], name="sum")
    g.add_node("conv", ["sum", "w1"], name="out")
    g.set_outputs("out")
    return g


@pytest.mark.parametrize("first", ["relu", "pool", "depthwise"])
@pytest.mark.parametrize("second", ["relu", "pool"])
def test_lane_readers_of_nchw_values_store_nchw_and_take_width_vectors(first, second):
    # each of them would gather its input on channel vectors: it and the op after it,
    # which reads it the same way, store NCHW; the conv after them (the add fused into
    # it) reads NCHW with broadcasts and stores blocked for the 1x1 conv
    g = lane_graph(first, second)
    graph, groups, _ = lower_graph(g)
    layouts = choose_layouts(graph, groups)
    assert first not in layouts and "second" not in layouts
    assert layouts == {"sum": 32}
    text = convc.compile(g, threads=1).source("loops")
    for name in (first, "second"):
        header = next(line for line in text.splitlines() if line.startswith(f"kernel {name}"))
        assert "vector j/16" in header or "vector q/16" in header, header
    for batch, threads in ((1, 1), (2, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def test_a_pool_after_a_concat_reads_its_rows_not_gathered_channels():
    # Inception's pool branch: the concat stays NCHW, so the pool on it does too (its row
    # and column passes), and the 1x1 conv after the pool reads it with broadcasts
    g = ir.Graph("concat_pool")
    g.add_input("x", ("N", 16, 10, 10))
    rng = np.random.default_rng(6)
    for k in range(2):
        g.add_param(f"w{k}", (rng.standard_normal((32, 16, 1, 1)) / 4).astype(np.float32))
        g.add_node("conv", ["x", f"w{k}"], name=f"b{k}")
    g.add_node("concat", ["b0", "b1"], {"axis": 1}, name="cat")
    window = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1] * 4}
    g.add_node("max_pool", ["cat"], window, name="pool")
    g.add_param("wp", (rng.standard_normal((32, 64, 1, 1)) / 8).astype(np.float32))
    g.add_node("conv", ["pool", "wp"], name="proj")
    g.add_node("relu", ["proj"], name="r")
    g.set_outputs("r")
    graph, groups, _ = lower_graph(g)
    layouts = choose_layouts(graph, groups)
    assert "cat" not in layouts and "pool" not in layouts
    text = convc.compile(g, threads=2).source("loops")
    assert "buffer pool:rows:" in text
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


def test_a_lane_reader_whose_epilogue_reads_a_blocked_value_keeps_it_blocked():
    # a pool of the NCHW input with an add fused after it that reads a conv's blocked
    # value (groups given by hand: the fuser puts such an add after the conv): the
    # kernel touches a blocked value either way, so it keeps channel vectors and its
    # output stays blocked; with the add after the conv, the pool's output is NCHW
    g = ir.Graph("pool_add")
    g.add_input("x", ("N", 32, 12, 12))
    rng = np.random.default_rng(7)
    g.add_param("w", (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32))
    g.add_param("w1", (rng.standard_normal((32, 32, 1, 1)) / 6).astype(np.float32))
    g.add_node("conv", ["x", "w"], {"pads": [1] * 4}, name="c")
    window = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1] * 4}
    g.add_node("max_pool", ["x"], window, name="pool")
    g.add_node("add", ["pool", "c"], name="sum")
    g.add_node("conv", ["sum", "w1"], name="out")
    g.set_outputs("out")
    graph, groups, _ = lower_graph(g)
    assert choose_layouts(graph, groups) == {"sum": 32}
    by_hand = [
        FusedGroup(anchor="c", epilogue=(), output="c"),
        FusedGroup(anchor="pool", epilogue=("sum",), output="sum"),
        FusedGroup(anchor="out", epilogue=(), output="out"),
    ]
    assert choose_layouts(graph, by_hand) == {"c": 32, "sum": 32}
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)
