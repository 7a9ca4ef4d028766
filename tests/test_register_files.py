"""Schedules sized for AVX2's register file (CONVC_REGISTER_BLOCKS=avx2): every register
block keeps its accumulators within 16 registers of 8 floats, and the kernels match the
interpreter; loops around register blocks stay rolled where the code generator is asked
to (`rolled_blocks`). The rest of the suite runs with AVX-512's blocks (conftest)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import convc
import ir
from convc import InputError, runtime
from convc.codegen import generate
from convc.compiler import lower_graph, stage_source
from convc.lower import registers

#: Accumulator registers a block may hold: AVX2 has 16, a block needs the weights' vector
#: (two registers at 16 floats) and a broadcast besides.
AVX2_ACCUMULATORS = 14


@pytest.fixture
def avx2(monkeypatch):
    monkeypatch.setenv(registers.ENV, "avx2")


def conv(cin, cout, size, kernel, stride=1, pad=0):
    """A conv + relu layer; `pad` is one number for every side or ONNX's list of four."""
    rng = np.random.default_rng(cin * cout + size)
    g = ir.Graph("avx2_conv")
    g.add_input("x", ("N", cin, size, size))
    w = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32) / kernel
    g.add_param("w", w)
    g.add_param("b", rng.standard_normal(cout).astype(np.float32))
    pads = pad if isinstance(pad, list) else [pad] * 4
    g.add_node("conv", ["x", "w", "b"], {"strides": [stride] * 2, "pads": pads})
    g.add_node("relu", ["conv"], name="act")
    g.set_outputs("act")
    return g


def dense(features_in, features_out, batch):
    rng = np.random.default_rng(features_in)
    g = ir.Graph("avx2_dense")
    g.add_input("x", (batch, features_in))
    g.add_param("w", rng.standard_normal((features_out, features_in)).astype(np.float32))
    g.add_param("b", rng.standard_normal(features_out).astype(np.float32))
    g.add_node("gemm", ["x", "w", "b"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    return g


def accumulator_registers(listing: str) -> list[int]:
    """Registers of accumulators of every register-blocked nest in a loop listing: the
    unrolled tile times the vector's 8-float registers."""
    counts = []
    for header in re.findall(r"^kernel .*# .*$", listing, re.MULTILINE):
        for schedule in header.split("# ", 1)[1].split("; "):  # one a nest of the kernel
            tiles = dict(re.findall(r"([\w.]+)=(\d+)", schedule.split(" order ")[0]))
            vector = re.search(r"vector \S+/(\d+)", schedule)
            unrolled = re.search(r"unroll ([\w.]+)\.i\b", schedule)
            if tiles and vector and unrolled:
                counts.append(int(tiles[unrolled.group(1)]) * int(vector.group(1)) // 8)
    return counts


CONVS = {
    "3x3 pad 1, rows split into blocks": (64, 64, 20, 3, 1, 1),
    "3x3 over 7-wide rows, one block a row": (32, 64, 7, 3, 1, 1),
    "1x1 stride 2": (16, 32, 29, 1, 2, 0),
    "1x1 over NCHW rows, width vectors": (32, 64, 32, 1, 1, 0),
    "stem-like 7x7 stride 2": (3, 64, 40, 7, 2, 3),
    "deep 3x3 over a blocked copy of its input": (256, 64, 7, 3, 1, 1),
    "3x3 over NCHW planes, reduction in chunks": (128, 128, 9, 3, 1, 1),
    "3x3 over rows of 50, a loop over blocks": (16, 16, 50, 3, 1, 1),
    "3x3 over rows of 50, padded on the right only": (16, 16, 50, 3, 1, [1, 0, 1, 1]),
}


@pytest.mark.parametrize("name", list(CONVS))
def test_conv_blocks_fit_sixteen_registers_and_match_the_interpreter(avx2, name):
    g = conv(*CONVS[name])
    counts = accumulator_registers(stage_source(g, "loops"))
    assert counts and max(counts) <= AVX2_ACCUMULATORS, counts
    for batch in (1, 3):
        assert_compiled_matches(g, inputs_for(g, batch))


@pytest.mark.parametrize("batch", [8, "N"])
def test_dense_blocks_fit_sixteen_registers_and_match_the_interpreter(avx2, batch):
    g = dense(300, 70, batch)
    counts = accumulator_registers(stage_source(g, "loops"))
    assert counts and max(counts) <= AVX2_ACCUMULATORS, counts
    for n in (8,) if batch == 8 else (1, 7, 13):
        assert_compiled_matches(g, inputs_for(g, n))


def test_border_blocks_of_a_looped_row_hold_four_columns(avx2):
    # a row of 50 with one padded column a side: 4 + 7 blocks of 6 + 4, not 1 + 8 x 6 + 1
    # (a block of one column is FMA-latency bound); padded on the right only (49 columns):
    # 7 x 6 + 4 + 3, not 8 x 6 + 1, the block of 3 with two sets of accumulators
    text = stage_source(conv(*CONVS["3x3 over rows of 50, a loop over blocks"]), "loops")
    assert re.findall(r"alloc acc\d*: f32\[(\d+)\]", text) == ["4", "6", "4"]
    assert "for j_o in 0..7:" in text
    right = stage_source(conv(*CONVS["3x3 over rows of 50, padded on the right only"]), "loops")
    assert re.findall(r"alloc acc\d*: f32\[(\d+)\]", right) == ["6", "4", "6"]
    assert "for j_o in 0..7:" in right


def test_a_merged_row_leaves_no_one_column_block(avx2):
    # a 1x1 conv over 7x7 planes of a channel-blocked value runs each plane as one row of
    # 49: 7 blocks of 6 and 4 + 3, not 8 x 6 + 1
    g = ir.Graph("avx2_planes")
    g.add_input("x", ("N", 32, 7, 7))
    g.add_param("w0", np.ones((32, 32, 3, 3), np.float32) / 100)
    g.add_param("w1", np.random.default_rng(0).standard_normal((48, 32, 1, 1), np.float32))
    g.add_node("conv", ["x", "w0"], {"pads": [1] * 4}, name="c0")
    g.add_node("relu", ["c0"], name="r0")
    g.add_node("conv", ["r0", "w1"], name="c1")
    g.add_node("relu", ["c1"], name="r1")
    g.set_outputs("r1")
    second = list(kernel_listings(stage_source(g, "loops")).values())[1]
    assert "merge-rows 7" in second and "for j_o in 0..7:" in second
    assert re.findall(r"alloc acc\d*: f32\[(\d+)\]", second) == ["6", "4", "3"]
    for batch in (1, 2):
        assert_compiled_matches(g, inputs_for(g, batch))


def test_avx512_blocks_are_larger(monkeypatch):
    # the same 3x3 conv holds more accumulators where AVX-512 has 32 registers
    g = conv(*CONVS["3x3 pad 1, rows split into blocks"])
    wide = max(accumulator_registers(stage_source(g, "loops")))
    monkeypatch.setenv(registers.ENV, "avx2")
    assert max(accumulator_registers(stage_source(g, "loops"))) < wide


def test_conv_gradients_under_avx2_blocks_match_the_interpreter(avx2):
    rng = np.random.default_rng(5)
    g = ir.Graph("layer")
    g.add_input("x", (2, 32, 9, 9), "float32")
    g.add_input("w", (64, 32, 3, 3), "float32")
    g.add_node("conv", ["x", "w"], {"pads": [1] * 4}, outputs=["y"])
    g.set_outputs("y")
    gg = convc.gradient(g, wrt=["x", "w"])
    feeds = {
        "x": rng.standard_normal((2, 32, 9, 9)).astype(np.float32),
        "w": rng.standard_normal((64, 32, 3, 3)).astype(np.float32),
        "grad_y": rng.standard_normal((2, 64, 9, 9)).astype(np.float32),
    }
    expected = convc.interpret(gg, feeds, dtype="float64")
    got = convc.compile(gg, threads=1).run(feeds)
    for out in ("y", "grad_x", "grad_w"):
        np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-3, err_msg=out)


def test_an_unknown_register_file_is_an_input_error(monkeypatch):
    monkeypatch.setenv(registers.ENV, "avx1024")
    with pytest.raises(InputError, match="CONVC_REGISTER_BLOCKS='avx1024'"):
        convc.compile(conv(*CONVS["1x1 stride 2"]))


def test_the_host_register_file_by_default(monkeypatch):
    monkeypatch.delenv(registers.ENV)
    count, _ = runtime.llvm.vector_registers()
    assert registers.register_file() == ("avx512" if count >= 32 else "avx2")


def test_loops_around_register_blocks_stay_rolled_when_asked(monkeypatch):
    # the loops holding a block (an unrolled loop) carry llvm.loop.unroll.disable; the
    # row loop of a relu, which holds none, does not; the code still computes the layer
    g = conv(*CONVS["3x3 pad 1, rows split into blocks"])
    _, _, program = lower_graph(g)
    rolled = str(generate(program, rolled_blocks=True).module)
    assert '!"llvm.loop.unroll.disable"' in rolled
    loop_ids = re.findall(r"^(!\d+) = !\{ (!\d+), (!\d+) \}$", rolled, re.MULTILINE)
    assert loop_ids and all(node == first for node, first, _ in loop_ids)  # self-referential
    assert len({node for node, _, _ in loop_ids}) == len(loop_ids)  # one ID a loop
    assert "llvm.loop" not in str(generate(program, rolled_blocks=False).module)
    monkeypatch.setattr(runtime.llvm, "rolled_blocks", lambda: True)
    monkeypatch.setenv("CONVC_CACHE", "0")
    assert_compiled_matches(g, inputs_for(g, 2))


def two_convs(size):
    """conv + relu twice, 32 -> 64 -> 64 channels: the second conv reads the first's
    channel-blocked output."""
    rng = np.random.default_rng(size)
    g = ir.Graph("avx2_two_convs")
    g.add_input("x", ("N", 32, size, size))
    last = "x"
    for k, cin in enumerate((32, 64)):
        w = rng.standard_normal((64, cin, 3, 3)).astype(np.float32) / 3
        g.add_param(f"w{k}", w)
        g.add_node("conv", [last, f"w{k}"], {"pads": [1] * 4}, name=f"conv{k}")
        last = g.add_node("relu", [f"conv{k}"], name=f"act{k}")[0].name
    g.set_outputs(last)
    return g


def kernel_listings(listing: str) -> dict[str, str]:
    """Each kernel's part of a loop listing, by kernel name."""
    parts = re.split(r"^kernel (\S+):", listing, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_window_taps_run_unrolled_inside_the_lanes_and_rows_of_seven_split(avx2):
    # the second conv reads a channel-blocked value: its input-channel lanes loop runs
    # inside the outer window taps and around the innermost ones, unrolled (AVX-512 keeps
    # them a loop), and its rows of 7 are split into blocks of at most 6 columns (a block
    # of 7 x 16 channels spilled); the first, reading NCHW rows, keeps a row of 7 as one
    # block, and its 14 accumulators leave no registers for unrolled innermost taps
    g = two_convs(7)
    first, second = kernel_listings(stage_source(g, "loops")).values()
    assert re.findall(r"alloc acc\d*: f32\[(\d+)\]", first) == ["7"]
    assert all(int(n) <= 6 for n in re.findall(r"alloc acc\d*: f32\[(\d+)\]", second))
    assert re.search(r"^ *unrolled for a in 0\.\.3:$", first, re.MULTILINE)
    assert re.search(r"^ *for b in 0\.\.3:$", first, re.MULTILINE)
    assert re.search(r"for a in 0\.\.3:\n.*\n *for c_\w+ in 0\.\.16:\n *unrolled for b", second)
    for batch in (1, 3):
        assert_compiled_matches(g, inputs_for(g, batch))


def test_broadcasts_that_unrolled_copies_share_load_apart_when_asked(avx2):
    # tap b of column j + 1 reads what tap b + 1 of column j reads: with rolled blocks
    # (16 registers) each copy loads its own, volatile, so that LLVM keeps none alive
    # across copies; the stem-like 7-tap conv's taps stay a loop, so its broadcasts
    # repeat in no two copies and load as usual
    _, _, program = lower_graph(two_convs(7))
    apart = str(generate(program, rolled_blocks=True).module)
    assert re.search(r"load volatile float, ptr %\S+$", apart, re.MULTILINE)
    assert "load volatile" not in str(generate(program, rolled_blocks=False).module)
    _, _, stem = lower_graph(conv(*CONVS["stem-like 7x7 stride 2"]))
    assert "load volatile" not in str(generate(stem, rolled_blocks=True).module)


def test_avx512_blocked_input_lanes_run_outside_the_innermost_tap():
    # the same second conv under AVX-512's blocks (the suite's): lanes, then the taps
    second = list(kernel_listings(stage_source(two_convs(7), "loops")).values())[1]
    assert re.search(r"^( *)for c_\w+ in 0\.\.32:\n\1  for b in 0\.\.3:", second, re.MULTILINE)


def test_blocks_of_fewer_registers_than_fma_chains_keep_two_sets_of_accumulators(avx2):
    # a row of 7 over a channel-blocked input splits 4 + 3 columns: the 3-column block's 6
    # registers keep too few FMAs in flight, so its unrolled taps alternate between two
    # sets of accumulators, added before the stores; the 4-column block keeps one set
    second = list(kernel_listings(stage_source(two_convs(7), "loops")).values())[1]
    assert re.findall(r"alloc acc\d*: f32\[(\d+)\]", second) == ["4", "6"]
    assert re.search(r"acc(\d*)\[j_i \+ 3\*\(Mod\(b, 2\)\)\] = acc\1\[j_i \+ 3\*", second)
    assert re.search(r"acc(\d*)\[j_i\] = acc\1\[j_i\] \+ acc\1\[j_i \+ 3\]", second)
    biased = conv(*CONVS["deep 3x3 over a blocked copy of its input"])  # bias not added first
    for g in (two_convs(7), biased):
        for batch in (1, 3):
            assert_compiled_matches(g, inputs_for(g, batch))


def blocked_then(channels, kernel, pad):
    """conv + relu 32 -> 32, then a conv + relu to `channels` reading that channel-blocked
    value (so in channel vectors, whatever its channel count)."""
    rng = np.random.default_rng(channels + kernel)
    g = ir.Graph("avx2_tail")
    g.add_input("x", ("N", 32, 12, 12))
    g.add_param("w0", rng.standard_normal((32, 32, 3, 3)).astype(np.float32) / 3)
    g.add_node("conv", ["x", "w0"], {"pads": [1] * 4}, name="c0")
    g.add_node("relu", ["c0"], name="r0")
    w1 = rng.standard_normal((channels, 32, kernel, kernel)).astype(np.float32) / kernel
    g.add_param("w1", w1)
    g.add_param("b1", rng.standard_normal(channels).astype(np.float32))
    g.add_node("conv", ["r0", "w1", "b1"], {"pads": [pad] * 4}, name="c1")
    g.add_node("relu", ["c1"], name="r1")
    g.set_outputs("r1")
    return g


@pytest.mark.parametrize("kernel, pad", [(1, 0), (3, 1)])
def test_a_last_tile_of_whole_registers_runs_as_a_narrow_vector(avx2, kernel, pad):
    # 24 output channels: a tile of 16, then a tail of 8, one AVX2 register, computed as a
    # vector of 8 rather than a masked vector of 16 whose dead half runs all the same
    g = blocked_then(24, kernel, pad)
    text = stage_source(g, "loops")
    assert re.search(r"^ *vector\(8, tail=scalar\) for o_i in 0\.\.8:$", text, re.MULTILINE)
    assert "vector(16, tail=masked) for o_i in 0..16:" in text and "Min(16, 24" not in text
    dense_g = dense(40, 1000, 3)  # 1000 features: 62 tiles of 16 and a tail of 8
    assert "vector(8, tail=scalar) for j_i in 0..8:" in stage_source(dense_g, "loops")
    for batch in (1, 3):
        assert_compiled_matches(g, inputs_for(g, batch))
    assert_compiled_matches(dense_g, inputs_for(dense_g, 3))


def test_masked_tails_of_part_registers_stay_masked(avx2):
    # 20 channels: a tail of 4, half a register, stays a masked vector of 16
    text = stage_source(blocked_then(20, 3, 1), "loops")
    assert "vector(8" not in text and "Min(16, 20 - 16*o_o)" in text


def deep_projection(depth, size):
    """conv 3x3 + relu 32 -> `depth` (a channel-blocked value), a 1x1 projection to 48
    channels + bias, added to a second 1x1 conv of the first value's, then relu and a 1x1
    conv to 16: the projection reads and writes channel-blocked values."""
    rng = np.random.default_rng(depth + size)
    g = ir.Graph("avx2_projection")
    g.add_input("x", ("N", 32, size, size))
    g.add_param("w0", rng.standard_normal((depth, 32, 3, 3)).astype(np.float32) / 9)
    g.add_node("conv", ["x", "w0"], {"pads": [1] * 4}, name="c0")
    g.add_node("relu", ["c0"], name="r0")
    w1 = rng.standard_normal((48, depth, 1, 1)) / np.sqrt(depth)
    g.add_param("w1", w1.astype(np.float32))
    g.add_param("b1", rng.standard_normal(48).astype(np.float32))
    g.add_node("conv", ["r0", "w1", "b1"], name="project")
    g.add_param("w2", rng.standard_normal((48, depth, 1, 1)).astype(np.float32) / 30)
    g.add_node("conv", ["r0", "w2"], name="side")
    g.add_node("add", ["project", "side"], name="sum")
    g.add_node("relu", ["sum"], name="r1")
    g.add_param("w3", rng.standard_normal((16, 48, 1, 1)).astype(np.float32) / 7)
    g.add_node("conv", ["r1", "w3"], name="c3")
    g.set_outputs("c3")
    return g


@pytest.mark.parametrize("depth, size, chunk", [(576, 14, 96), (960, 7, 96)])
def test_deep_1x1_convs_run_their_reduction_in_chunks_of_several_blocks(avx2, depth, size, chunk):
    # 576 or 960 input channels: 37-61 KB of weights a 16-channel block, past L1 beside
    # the input columns, so each row's channel block runs the reduction in chunks of 96
    # channels (6 input blocks of 16, their lanes inside) and every register block of the
    # row reads the chunk's weights from L1; the partial sums wait in the output
    listings = kernel_listings(stage_source(deep_projection(depth, size), "loops"))
    chunked = [text for text in listings.values() if f"reduce-tiles c={chunk}" in text]
    assert chunked, listings.keys()
    for text in chunked:
        assert f"for c_o in 0..{depth // chunk}:" in text
        assert f"for c_b in 0..{chunk // 16}:" in text and "for c_l in 0..16:" in text
        assert f"c_b + {chunk // 16}*c_o, " in text  # the input's block, no division
    g = deep_projection(depth, size)
    for batch, threads in ((1, 1), (3, 1), (2, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def test_1x1_convs_whose_block_weights_fit_l1_keep_the_whole_reduction(avx2):
    # 384 input channels: 24 KB a block, no chunks (chunks of 96 measured slower there)
    assert "reduce-tiles" not in stage_source(deep_projection(384, 14), "loops")


def strided_after_conv(size, out_channels=128):
    """conv 3x3 + relu 3 -> 64 (a channel-blocked value), then a 3x3 stride-2 conv + relu
    to `out_channels`, the output of the model."""
    rng = np.random.default_rng(size)
    g = ir.Graph("avx2_strided")
    g.add_input("x", ("N", 3, size, size))
    g.add_param("w0", rng.standard_normal((64, 3, 3, 3)).astype(np.float32) / 3)
    g.add_node("conv", ["x", "w0"], {"pads": [1] * 4}, name="c0")
    g.add_node("relu", ["c0"], name="r0")
    w1 = rng.standard_normal((out_channels, 64, 3, 3)) / 24
    g.add_param("w1", w1.astype(np.float32))
    g.add_node("conv", ["r0", "w1"], {"pads": [1] * 4, "strides": [2, 2]}, name="down")
    g.add_node("relu", ["down"], name="r1")
    g.add_param("w2", rng.standard_normal((16, out_channels, 1, 1)).astype(np.float32) / 11)
    g.add_node("conv", ["r1", "w2"], name="c2")
    g.set_outputs("c2")
    return g


def test_strided_3x3_convs_take_chunks_from_weights_past_l1(avx2):
    # 3x3 stride 2 from 64 channels: 37 KB of weights a 16-channel block, past L1; a step
    # of a strided window loads more broadcasts (18 for 36 FMAs), so the weights streamed
    # from L2 for every register block slowed it, and one input block at a time runs
    # outside the rows (the partial sums wait in the channel-blocked output)
    listings = kernel_listings(stage_source(strided_after_conv(28), "loops"))
    (down,) = [text for name, text in listings.items() if name.startswith("down")]
    assert "reduce-tiles c=16" in down and "order n,o,c.o,i,j" in down
    g = strided_after_conv(28)
    for batch, threads in ((1, 1), (2, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def test_strided_convs_stored_nchw_keep_the_whole_reduction(avx2):
    # the same conv as a model's output: partial sums would wait in a blocked scratch,
    # which measured slower (a training step's forward conv 9.9 -> 13.7 ms at batch 8)
    g = conv(64, 128, 28, 3, stride=2, pad=1)
    assert "reduce-tiles" not in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 2), threads=1)


@pytest.mark.parametrize("depth", [64, 128])
def test_deep_1x1_convs_over_wide_nchw_rows_keep_packed_panels(avx2, depth):
    # under AVX2's blocks a 1x1 conv over 32-column NCHW rows whose input channels fit a
    # packed panel (128 x 128 columns, 64 KB) runs on width vectors over the panels,
    # which measured 6-21% faster than 16-channel x 6-column blocks there
    g = conv(depth, 64, 32, 1)
    listing = stage_source(g, "loops")
    assert "pack-columns 128" in listing and "vector o.i" not in listing
    for batch, threads in ((1, 1), (2, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def test_1x1_convs_past_a_panel_or_under_avx512_take_channel_vectors(monkeypatch):
    # 192 channels overflow a panel: unpacked rows measured 2x slower than channel vectors
    monkeypatch.setenv(registers.ENV, "avx2")
    assert "vector o.i" in stage_source(conv(192, 64, 32, 1), "loops")
    monkeypatch.setenv(registers.ENV, "avx512")
    assert "vector o.i" in stage_source(conv(128, 64, 32, 1), "loops")
