"""Channel-vector convs with 32-channel tiles (output channels a multiple of 32): windows
with padding, strides, deep 1x1, rows narrow enough for one block or split into blocks
with columns left over, batches 1 and 3, two threads; compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import ir
from convc.compiler import stage_source


def conv(cin, cout, size, kernel, stride=1, pad=0, seed=0):
    rng = np.random.default_rng(seed)
    g = ir.Graph("wide_tile")
    g.add_input("x", ("N", cin, size, size))
    w = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32) / kernel
    g.add_param("w", w)
    g.add_param("b", rng.standard_normal(cout).astype(np.float32))
    attrs = {"strides": [stride] * 2, "pads": [pad] * 4}
    g.add_node("conv", ["x", "w", "b"], attrs, name="conv")
    g.add_node("relu", ["conv"], name="act")
    g.set_outputs("act")
    return g


CASES = [
    (5, 32, 9, 3, 1, 1),  # whole row (9 <= 10 columns), borders checked per copy
    (3, 64, 23, 3, 2, 1),  # strided, interior split into blocks plus a column left over
    (7, 32, 13, 3, 1, 1),  # 11-14 columns, windowed: stays on 16-channel vectors
    (64, 32, 17, 1, 1, 0),  # deep 1x1 on NCHW rows: a block of 12 + 5 columns over
    (16, 64, 29, 1, 2, 0),  # 1x1 stride 2
    (4, 32, 31, 5, 2, 2),  # 5x5 stride 2, padding 2
]


@pytest.mark.parametrize("cin, cout, size, kernel, stride, pad", CASES)
@pytest.mark.parametrize("batch", [1, 3])
def test_wide_channel_tiles(cin, cout, size, kernel, stride, pad, batch):
    g = conv(cin, cout, size, kernel, stride, pad)
    assert_compiled_matches(g, inputs_for(g, batch))


def test_tile_width_follows_the_rule():
    assert "vector o.i/32" in stage_source(conv(5, 32, 9, 3, 1, 1), "loops")
    assert "vector o.i/16" in stage_source(conv(7, 32, 13, 3, 1, 1), "loops")
    assert "vector o.i/16" in stage_source(conv(5, 48, 9, 3, 1, 1), "loops")


def test_wide_tiles_in_parallel():
    g = conv(32, 64, 30, 3, 1, 1)  # over a million multiply-adds: a parallel loop
    assert "parallel for n_i_o_o" in stage_source(g, "loops")  # rows before channel blocks
    assert_compiled_matches(g, inputs_for(g, 1), threads=2)


def test_pointwise_convs_on_nchw_rows_take_the_fewest_longest_blocks():
    # 32 columns: 12 + 12 + 8 on 32-lane vectors, 23 + 9 on 16-lane ones (48 channels)
    assert "tiles j=12,o=32" in stage_source(conv(64, 32, 32, 1), "loops")
    assert "tiles j=23,o=16" in stage_source(conv(64, 48, 32, 1), "loops")
    # on a blocked input (a 3x3 conv's output) blocks that divide the row: 4 of 8
    g = ir.Graph("blocked_pointwise")
    g.add_input("x", ("N", 8, 32, 32))
    rng = np.random.default_rng(1)
    g.add_param("w0", (rng.standard_normal((64, 8, 3, 3)) / 9).astype(np.float32))
    g.add_param("w1", (rng.standard_normal((32, 64, 1, 1)) / 8).astype(np.float32))
    g.add_node("conv", ["x", "w0"], {"pads": [1] * 4}, name="c0")
    g.add_node("conv", ["c0", "w1"], name="c1")
    g.set_outputs("c1")
    text = stage_source(g, "loops")
    kernel = text[text.index("kernel c1") :]
    assert "tiles j=8,o=32" in kernel.splitlines()[0]
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)
        wide = conv(64, 48, 32, 1)
        assert_compiled_matches(wide, inputs_for(wide, batch), threads=threads)
