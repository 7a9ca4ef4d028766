"""1x1 stride-1 convolutions under their schedule (32-column vectors, output-channel
register blocks, rows outside the channel blocks): widths that leave masked tails, channel
counts with and without a block, padding, batches 1 and 3, two threads, a fused epilogue;
compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import ir
from convc.compiler import stage_source


def pointwise(cin, cout, width, pads=0, bias=True, seed=0, height=5):
    rng = np.random.default_rng(seed)
    g = ir.Graph("pointwise")
    g.add_input("x", ("N", cin, height, width))
    g.add_param("w", rng.standard_normal((cout, cin, 1, 1)).astype(np.float32))
    inputs = ["x", "w"]
    if bias:
        inputs.append(g.add_param("b", rng.standard_normal(cout).astype(np.float32)).name)
    g.add_node("conv", inputs, {"pads": [pads] * 4}, name="conv")
    g.add_node("relu", ["conv"], name="act")
    g.set_outputs("act")
    return g


def test_schedule_is_applied():
    text = stage_source(pointwise(8, 16, 40), "loops")
    assert "order n,i,o,j vector j/32" in text and "unroll o.i" in text


@pytest.mark.parametrize("cin, cout", [(3, 16), (8, 24), (5, 7), (16, 6)])
@pytest.mark.parametrize("width", [7, 32, 45, 70])
@pytest.mark.parametrize("batch", [1, 3])
def test_pointwise_shapes(cin, cout, width, batch):
    g = pointwise(cin, cout, width)
    assert_compiled_matches(g, inputs_for(g, batch))


@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_padding_and_threads(threads):
    g = pointwise(12, 16, 37, pads=1, bias=False)
    assert_compiled_matches(g, inputs_for(g, 3), threads=threads)


def test_large_pointwise_runs_rows_in_parallel():
    g = pointwise(32, 64, 32, height=17)  # over a million multiply-adds: a parallel loop
    assert "parallel for n_i in" in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 1), threads=2)
