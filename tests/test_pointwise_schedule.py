"""1x1 stride-1 convolutions under their schedule (32-column vectors, output-channel
register blocks; unpadded ones run the whole plane as one row in packed panels, padded
ones row by row): widths that leave masked tails and partial panels, channel counts with
and without a block, padding, batches 1 and 3, two threads, a fused epilogue, an input not
aligned to a vector; compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import convc
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
    assert "merge-rows 5 pack-columns 128" in text


def test_channel_blocks_read_the_packed_panel():
    text = stage_source(pointwise(8, 16, 40), "loops")
    assert "alloc panel: f32[8, 4] x32 lanes" in text
    assert "panel[c, j_o] = x[" in text  # the panel is copied from the input once
    assert "acc[o_i] + (panel[c, j_o] * w." in text  # and every channel block reads it
    assert text.count("x[") == 1


def test_padded_pointwise_runs_row_by_row():
    text = stage_source(pointwise(8, 16, 40, pads=1), "loops")
    assert "pack-columns" not in text and "merge-rows" not in text and "panel" not in text


@pytest.mark.parametrize("group", [2, 4])
def test_grouped_pointwise_runs_row_by_row(group):
    """Each group reads its own input channels: no panel shared by all channel blocks."""
    rng = np.random.default_rng(0)
    g = ir.Graph("grouped")
    g.add_input("x", ("N", 8, 5, 40))
    g.add_param("w", rng.standard_normal((16, 8 // group, 1, 1)).astype(np.float32))
    g.add_node("conv", ["x", "w"], {"group": group}, name="y")
    g.set_outputs("y")
    assert "pack-columns" not in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 2))


def test_deep_pointwise_without_channel_blocks_runs_row_by_row():
    """200 input channels make a 100 KB panel: past PACK_MAX_BYTES, so rows stay."""
    g = pointwise(200, 24, 40)
    assert "pack-columns" not in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 1))


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


@pytest.mark.parametrize("batch", [1, 3])
def test_large_pointwise_runs_panels_in_parallel(batch):
    g = pointwise(32, 64, 32, height=17)  # over a million multiply-adds: a parallel loop
    assert "parallel for n_j_o in" in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, batch), threads=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_model_output_is_streamed(threads):
    """A 1 MB model output (at batch 1) is written with non-temporal stores, fenced."""
    g = pointwise(16, 64, 64, height=64)
    model = convc.compile(g, threads=threads)
    loops_text, asm = model.source("loops"), model.source("asm")
    assert "streaming-stores" in loops_text and "  # streaming" in loops_text
    assert "vmovntps" in asm and "sfence" in asm
    assert_compiled_matches(g, inputs_for(g, 2), threads=threads)


@pytest.mark.parametrize(
    "width, height, read_by",
    # small; not a model output; a model output another kernel reads; 4225-float planes
    [(64, 60, None), (64, 64, "cat"), (64, 64, "cat+act"), (65, 65, None)],
)
def test_other_outputs_are_not_streamed(width, height, read_by):
    """Under STREAM_MIN_BYTES, a value another kernel reads (a model output or not), or
    planes that are not whole cache lines (65x65) keep ordinary stores."""
    g = pointwise(16, 64, width, height=height)
    if read_by:  # a concat keeps its inputs NCHW
        g.add_node("concat", ["act", "x"], {"axis": 1}, name="cat")
        g.set_outputs(*read_by.split("+"))
    text = stage_source(g, "loops")
    assert "pack-columns" in text and "streaming" not in text
    assert_compiled_matches(g, inputs_for(g, 1))


@pytest.mark.parametrize("offset", [4, 8, 12])
def test_unaligned_input_is_read_in_place(offset):
    """NumPy aligns large arrays to 16 bytes, not to a vector's 64: such an input is read
    in place (the panels copy it), at each offset within a cache line."""
    g = pointwise(16, 24, 45, height=6)
    shape = (2, 16, 6, 45)
    raw = np.zeros(int(np.prod(shape)) + 32, np.float32)
    start = (-raw.ctypes.data // 4) % 16 + offset
    x = raw[start : start + int(np.prod(shape))].reshape(shape)
    x[...] = inputs_for(g, 2)["x"]
    assert x.ctypes.data % 64 == offset * 4
    assert_compiled_matches(g, {"x": x})
