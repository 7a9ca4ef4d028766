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
    (64, 32, 17, 1, 1, 0),  # deep 1x1: blocks of 8 + 1 column over
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
