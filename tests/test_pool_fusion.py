"""Pools fused into the conv before them (`convc.lower.pool_fusion`): which pairs share a
kernel, and that every window shape (strides, padding, dilation, ceil mode, rows left
for after the conv's last row) computes what the interpreter computes on 1 and 2
threads."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import convc
import ir
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


def test_parallel_fused_kernels_share_bands_of_rows_and_finish_the_straddling_pool_rows():
    # 41 rows in bands of 16: each band's pool rows whose windows start inside it (band 0:
    # all), then in a second loop row 8 (conv rows 15-17), row 16 (31-33) and row 20 (past
    # the last conv row)
    graph = conv_pool_graph(size=41, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    text = convc.compile(graph, threads=1).source("loops")
    kernel = text[text.index("kernel c1__pool") :].split("\nkernel ")[0]
    assert kernel.count("parallel for n_o_o_band in 0..3*N:") == 2
    assert "for i_in in 0..Min(16, 41 - 16*Mod(n_o_o_band, 3)):" in kernel
    assert "(idx(Mod(n_o_o_band, 3)) == idx(0)) | (idx(i_in) >= idx(2))" in kernel
    assert "for i in 8*(Mod(n_o_o_band, 3))..Min(20, 8*(Mod(n_o_o_band, 3)) + 1):" in kernel
    assert "for i in 20..21:" in kernel


def test_a_conv_value_with_a_second_reader_keeps_its_own_kernel():
    graph = conv_pool_graph(
        size=12, reader=True, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]
    )
    names = kernel_names(graph)
    assert any(name.startswith("pool") for name in names), names
    assert_compiled_matches(graph, inputs_for(graph, 2))
