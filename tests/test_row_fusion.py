"""Pools and depthwise convs fused into the conv before them (`convc.lower.row_fusion`):
which pairs share a kernel, where the conv's rows live (a ring of rows, no buffer), and
that every window shape (strides, padding, dilation, ceil mode, rows left for after the
conv's last row, bands of rows) computes what the interpreter computes on 1 and 2
threads."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convc
import ir
from convc.lower import row_fusion
from convc.profile import kernel_parts


def conv_pool_graph(pool="max_pool", size=12, reader=False, **window):
    """x -> conv 3x3 (32 channels, stored channel-blocked) -> relu -> pool -> 1x1 conv;
    `reader`: a second reader of the conv's value (a residual add after the pool's
    conv, at the pool's resolution only when the pool keeps the size)."""
    g = ir.Graph(f"cp_{pool}_{size}_{reader}_" + "_".join(f"{k}{v}" for k, v in window.items()))
    g.add_input("x", ("N", 5, size, size + 3))
    rng = np.random.default_rng(size)
    g.add_param("w1", rng.standard_normal((32, 5, 3, 3)).astype(np.float32))
    g.add_param("w2", rng.standard_normal((32, 32, 1, 1)).astype(np.float32))
    g.add_node("conv", ["x", "w1"], {"pads": [1, 1, 1, 1]}, name="c1")
    g.add_node("relu", ["c1"], name="r1")
    g.add_node(pool, ["r1"], window, name="pool")
    g.add_node("conv", ["pool", "w2"], name="c2")
    out = "c2"
    if reader:
        g.add_node("add", ["c2", "r1"], name="sum")
        out = "sum"
    g.set_outputs(out)
    return g


def kernel_names(graph) -> list[str]:
    return [k.name for k in convc.compile(graph, threads=1).program.kernels]


WINDOWS = [
    ("max_pool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("max_pool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("max_pool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ("max_pool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("max_pool", {"kernel_shape": [2, 2], "strides": [1, 1], "dilations": [2, 2]}),
    ("avg_pool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("avg_pool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
]


@pytest.mark.parametrize("pool, window", WINDOWS)
@pytest.mark.parametrize("size", [12, 13, 40, 41])
def test_pools_after_a_blocked_conv_run_in_its_kernel_and_match_the_interpreter(pool, window, size):
    # 12 and 13 rows: a serial kernel, rows in order; 40 and 41: parallel, in bands of 16
    # conv rows (the last one partial)
    graph = conv_pool_graph(pool, size, **window)
    model = convc.compile(graph, threads=1)
    names = [k.name for k in model.program.kernels]
    # one kernel for conv (+ relu) and pool (+ relu): the relu moves past a max pool
    assert len(names) == 2 and names[0].startswith("c1") and "pool" in names[0], names
    assert ("n_o_o_band" in model.source("loops")) == (size > 16)
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(graph, inputs_for(graph, batch), threads=threads)


def test_a_conv_that_splits_its_batch_from_a_larger_batch_keeps_its_pool():
    """A conv too small to split at batch 1 splits its batch loop from batch 5 on
    (`Kernel.parallel_when`): the pool after it still runs in its kernel, inside that
    loop, and 2 threads give 1 thread's results below and above that batch."""
    graph = conv_pool_graph(size=12, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    model = convc.compile(graph, threads=2)
    fused = model.program.kernels[0]
    assert fused.name.startswith("c1__pool") and fused.parallel_when is not None
    assert "parallel when idx(N) >= idx(5)" in model.source("loops")
    (batch_loop,) = fused.body.stmts
    assert str(batch_loop.var) == "n" and batch_loop.kind == "parallel"
    for batch in (2, 6):
        inputs = inputs_for(graph, batch)
        two = assert_compiled_matches(graph, inputs, threads=2)
        one = convc.compile(graph, threads=1).run(inputs)
        np.testing.assert_array_equal(one["c2"], two["c2"])


def test_the_fused_kernel_runs_pool_rows_inside_the_conv_row_loop():
    # 3x3/2 pad 1 on 13 rows: pool row r follows conv row 2r + 1 (rows 0..5); row 6's
    # window reaches past the last conv row (12), so it runs after the loop
    graph = conv_pool_graph(size=13, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    model = convc.compile(graph, threads=1)
    # the profile (and the tuner) see every node the kernel computes
    assert kernel_parts(model.program.kernels[0].comment)[0] == ("c1", "pool", "r1")
    text = model.source("loops")
    kernel = text[text.index("kernel c1__pool") :].split("\nkernel ")[0]
    assert "      for i in 0..13:" in kernel
    assert "(idx(Mod(i + 1, 2)) == idx(0))" in kernel and "< idx(6)" in kernel
    assert "      for i in 6..7:" in kernel


def test_the_conv_value_lives_in_a_ring_of_window_rows_with_no_buffer():
    graph = conv_pool_graph(size=13, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    model = convc.compile(graph, threads=1)
    text = model.source("loops")
    # c1 (relu moved past the pool) is only ever in the ring: 3 rows of 16 columns
    assert "buffer c1" not in text and not re.search(r"\bc1\[", text)
    assert "alloc ring: f32[3, 16] x32 lanes" in text
    assert "ring[Mod(i, 3), j_i]" in text
    unfused = convc.compile(conv_pool_graph(size=13, kernel_shape=[3, 3], strides=[1, 1]), 1)
    assert unfused.memory_report().activations > model.memory_report().activations


def test_parallel_fused_kernels_share_bands_of_output_rows_each_recomputing_its_first_row():
    # 41 conv rows, 21 pool rows: bands of 8 would make 3 bands of one channel block, 2:1
    # between two threads, so they are 4 bands of 6: band b computes conv rows 12b - 1 ..
    # 12b + 11 (row 12b - 1 also belongs to the band before) and pool rows 6b .. 6b + 5;
    # pool row 20 reaches past the last conv row and follows the loop
    graph = conv_pool_graph(size=41, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    text = convc.compile(graph, threads=1).source("loops")
    kernel = text[text.index("kernel c1__pool") :].split("\nkernel ")[0]
    assert kernel.count("parallel for n_o_o_band in 0..4*N:") == 1
    assert kernel.splitlines()[0].endswith(
        "; ring of 3 rows, threads share batch x 4 bands x channel blocks"
    )
    band = "Mod(n_o_o_band, 4)"
    assert f"for i in Max(0, 12*({band}) - 1)..Min(41, 2*Min(21, 6*({band}) + 6)):" in kernel
    assert f"(idx(floor(i/2 - 1/2)) >= idx(6*({band})))" in kernel
    assert f"for i in Max(20, 6*({band}))..Min(21, 6*({band}) + 6):" in kernel


@pytest.mark.parametrize(
    "rows, stride, blocks, band_rows",
    [
        (112, 1, 1, 14),  # MobileNetV2's stem: 7 bands of 16 -> 8 of 14
        (112, 1, 3, 14),  # 21 units -> 24
        (112, 1, 2, 16),  # 14 units: even already
        (56, 2, 1, 7),  # bands of 8 conv rows at stride 2: 7 bands -> 8
        (28, 1, 1, 14),  # 2 bands: even already
        (16, 1, 1, 16),  # one band: the rows are not split
        (33, 1, 1, 9),  # 3 bands of 11 -> 4 of 9 (the last 6)
    ],
)
def test_bands_times_channel_blocks_are_even_so_two_threads_share_them_evenly(
    rows, stride, blocks, band_rows
):
    window = row_fusion.Window(3, stride, 1, 1, rows * stride, rows)
    assert row_fusion._band_rows(window, blocks) == band_rows


def expansion_graph(size=20, channels=32, multiplier=1, **window):
    """x -> 1x1 conv (8 -> `channels`) -> relu -> depthwise 3x3 conv (`window`, `multiplier`
    outputs a channel) -> relu -> 1x1 conv: MobileNet's inverted residual, unfused."""
    name = "_".join(f"{k}{v}" for k, v in window.items())
    g = ir.Graph(f"dw_{size}_{channels}_{multiplier}_{name}".replace(" ", ""))
    g.add_input("x", ("N", 8, size, size + 3))
    rng = np.random.default_rng(size)
    outputs = channels * multiplier
    g.add_param("w1", rng.standard_normal((channels, 8, 1, 1)).astype(np.float32))
    g.add_param("w2", rng.standard_normal((outputs, 1, 3, 3)).astype(np.float32))
    g.add_param("w3", rng.standard_normal((16, outputs, 1, 1)).astype(np.float32))
    g.add_node("conv", ["x", "w1"], name="expand")
    g.add_node("relu", ["expand"], name="r1")
    g.add_node("conv", ["r1", "w2"], {"group": channels, **window}, name="dw")
    g.add_node("relu", ["dw"], name="r2")
    g.add_node("conv", ["r2", "w3"], name="project")
    g.set_outputs("project")
    return g


DEPTHWISE = [
    {"pads": [1, 1, 1, 1]},
    {"pads": [1, 1, 1, 1], "strides": [2, 2]},
    {"strides": [2, 2]},
    {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    {"pads": [0, 1, 2, 1]},
]


@pytest.mark.parametrize("window", DEPTHWISE)
@pytest.mark.parametrize("size, channels", [(12, 32), (41, 32), (40, 48)])
def test_depthwise_convs_after_a_blocked_conv_run_from_its_ring(window, size, channels):
    # 41 and 40 rows: parallel, in bands; 48 channels: three blocks of 16
    graph = expansion_graph(size, channels, **window)
    model = convc.compile(graph, threads=1)
    names = [k.name for k in model.program.kernels]
    assert names == ["expand__r1__dw__r2", "project"], names
    assert "buffer r1" not in model.source("loops")
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(graph, inputs_for(graph, batch), threads=threads)


def test_depthwise_convs_with_two_outputs_a_channel_keep_their_own_kernel():
    # output channel o reads input channel o // 2: its vector spans two input blocks' lanes
    graph = expansion_graph(12, 32, multiplier=2, pads=[1, 1, 1, 1])
    assert "dw__r2" in kernel_names(graph)
    assert_compiled_matches(graph, inputs_for(graph, 2))


def test_rings_past_their_limit_leave_the_kernels_apart(monkeypatch):
    # 3 rows x 23 columns x 32 lanes x 4 bytes = 8832 bytes
    monkeypatch.setattr(convc.lower.row_fusion, "RING_MAX_BYTES", 8831)
    graph = expansion_graph(20, 32, pads=[1, 1, 1, 1])
    assert kernel_names(graph) == ["expand__r1", "dw__r2", "project"]
    monkeypatch.setattr(convc.lower.row_fusion, "RING_MAX_BYTES", 8832)
    graph.name += "_fits"
    assert kernel_names(graph) == ["expand__r1__dw__r2", "project"]


def test_a_conv_value_with_a_second_reader_keeps_its_own_kernel():
    graph = conv_pool_graph(
        size=12, reader=True, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]
    )
    names = kernel_names(graph)
    assert any(name.startswith("pool") for name in names), names
    assert_compiled_matches(graph, inputs_for(graph, 2))


@st.composite
def fused_pairs(draw):
    """A conv (1x1 or 3x3, stride 1 or 2) and a depthwise conv or pool reading it, with
    windows, strides, dilations, asymmetric padding and sizes drawn at random."""
    consumer = draw(st.sampled_from(["depthwise", "max_pool", "avg_pool"]))
    size = draw(st.integers(1, 4))
    dilation = draw(st.integers(1, 2)) if consumer != "avg_pool" else 1
    extent = (size - 1) * dilation + 1
    window = {
        "kernel_shape": [size, size],
        "strides": [draw(st.integers(1, 3))] * 2,
        "dilations": [dilation, dilation],
        "pads": [draw(st.integers(0, min(2, extent - 1))) for _ in range(4)],
    }
    if consumer == "avg_pool":
        del window["dilations"]
    return {
        "consumer": consumer,
        "window": window,
        "channels": draw(st.sampled_from([16, 32, 48, 64])),
        "producer": draw(st.sampled_from([(1, 1), (3, 1), (3, 2)])),
        "rows": draw(st.integers(max(extent, 4), 40)),
        "columns": draw(st.integers(15, 30)),
        "batch": draw(st.integers(1, 3)),
    }


@settings(max_examples=12, deadline=None, derandomize=True)
@given(fused_pairs())
def test_random_fused_pairs_run_in_one_kernel_and_match_the_interpreter(pair):
    kernel, stride = pair["producer"]
    channels, window = pair["channels"], pair["window"]
    rng = np.random.default_rng(pair["rows"])

    def build():
        g = ir.Graph("fused_pair")
        g.add_input("x", ("N", 8, pair["rows"], pair["columns"]))
        g.add_param("w1", rng.standard_normal((channels, 8, kernel, kernel)).astype(np.float32))
        conv = {"pads": [kernel // 2] * 4, "strides": [stride] * 2}
        g.add_node("conv", ["x", "w1"], conv, name="c1")
        g.add_node("relu", ["c1"], name="r1")
        if pair["consumer"] == "depthwise":
            shape = (channels, 1, *window["kernel_shape"])
            g.add_param("w2", rng.standard_normal(shape).astype(np.float32))
            g.add_node("conv", ["r1", "w2"], {**window, "group": channels}, name="out")
        else:
            g.add_node(pair["consumer"], ["r1"], window, name="out")
        g.set_outputs("out")
        return g

    try:
        g = build()
    except convc.ShapeError:  # a strided conv left fewer rows than the window spans
        assume(False)
    (fused,) = convc.compile(g, threads=1).program.kernels  # (a relu moves past a max pool)
    assert kernel_parts(fused.comment)[0] in (("c1", "r1", "out"), ("c1", "out", "r1"))
    for threads in (1, 2):
        assert_compiled_matches(g, inputs_for(g, pair["batch"]), threads=threads)
