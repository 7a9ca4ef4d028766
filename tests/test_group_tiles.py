"""Grouped convs whose groups hold 8 or more output channels, not a multiple of 16
(`schedule.group_tile`): a tile a group, stepping by the group's channels, in one
channel vector (its last lanes masked) or several (the last one partly masked), weights
packed in blocks of the vector's lanes. In 1-D, 2-D and 3-D, strided, at batches 1 and 3,
on one and two threads, with constant weights and with weights given at run time, and
with AVX2's blocks (a widest vector of 16); compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for
from test_partial_channel_vectors import conv

import convc
import ir
from convc.compiler import stage_source
from convc.lower import registers

CASES = [
    # cin, cout, spatial, kernel, stride, pad, group -> tile, lanes
    ((40, 120, (20, 20), 3, 1, 1, 4), 30, 32),  # a window over a deep reduction
    ((8, 40, (15, 15), 3, 1, 1, 2), 20, 32),  # narrow rows
    ((12, 36, (17, 17), 3, 2, 1, 3), 12, 16),  # strided
    ((16, 16, (9, 9), 3, 1, 1, 2), 8, 16),  # the fewest channels a group that qualify
    ((20, 20, (25,), 3, 1, 1, 2), 10, 16),  # 1-D
    ((8, 24, (6, 7, 9), 3, 1, 1, 2), 12, 16),  # 3-D
    ((80, 80, (20, 20), 3, 1, 1, 2), 40, 16),  # 16 + 16 + 8 lanes a group
    ((168, 168, (14, 14), 3, 1, 1, 3), 56, 32),  # 32 + 24
    ((112, 112, (9, 9), 3, 2, 1, 2), 56, 32),  # strided
    ((80, 120, (11,), 3, 1, 1, 2), 60, 32),  # 1-D, 32 + 28
    ((24, 120, (5, 6, 7), 3, 1, 1, 3), 40, 16),  # 3-D
]


@pytest.mark.parametrize("case, tile, lanes", CASES)
@pytest.mark.parametrize("batch, threads", [(1, 1), (3, 2)])
def test_a_tile_a_group_matches(case, tile, lanes, batch, threads):
    g = conv(*case)
    loops = stage_source(g, "loops")
    assert f"o={tile} " in loops and f"vector o.i/{lanes}" in loops
    assert f"w.oc{tile}in{lanes}" in loops
    assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


@pytest.mark.parametrize("groups, copy", [(4, "w.0b30in32"), (2, "w.0b60in32")])
def test_weights_given_at_run_time(groups, copy):
    """Weights that are an input, not a constant, are blocked at run time as packed
    weights are: 4 groups of 30 in one vector of 32 lanes each, 2 of 60 in 32 + 28."""
    g = ir.Graph("grouped_inputs")
    g.add_input("x", (2, 40, 12, 12))
    g.add_input("w", (120, 40 // groups, 3, 3))
    attrs = {"strides": [1, 1], "pads": [1, 1, 1, 1], "group": groups}
    g.add_node("conv", ["x", "w"], attrs, name="conv")
    g.set_outputs("conv")
    assert copy in stage_source(g, "loops")
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 40, 12, 12)).astype(np.float32)}
    feeds["w"] = rng.standard_normal((120, 40 // groups, 3, 3)).astype(np.float32)
    got = convc.compile(g).run(feeds)["conv"]
    want = convc.interpret(g, feeds)["conv"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "case",
    [
        (4, 12, (40, 40), 3, 1, 1, 2),  # a shallow window over wide rows
        (8, 24, (12, 12), 3, 1, 1, 4),  # 6 channels a group: under PARTIAL_MIN_CHANNELS
    ],
)
def test_width_vectors_kept(case):
    g = conv(*case)
    assert "vector o.i" not in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 1))


def test_a_deep_group_keeps_its_reduction_whole():
    """64 input channels a group: a tile of 32 lanes holds 72 KB of weights, past
    `reduction_chunks.CHUNK_MIN_WEIGHTS`, but grouped convs run their reductions whole, so
    no partial sums wait in a scratch blocked by the vector, which a group's tile would
    not fill."""
    g = conv(128, 48, (14, 14), 3, 1, 1, group=2)
    loops = stage_source(g, "loops")
    assert "o=24 " in loops and "reduce-tiles" not in loops and ".partial" not in loops
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)


@pytest.mark.parametrize(
    "case, packed",
    [
        ((12, 36, (17, 17), 3, 2, 1, 3), "w.oc12in16"),
        ((40, 120, (20, 20), 3, 1, 1, 4), "w.oc30in16"),
    ],
)
def test_avx2_blocks_take_vectors_of_16(monkeypatch, case, packed):
    monkeypatch.setenv(registers.ENV, "avx2")
    g = conv(*case)
    loops = stage_source(g, "loops")
    assert "vector o.i/16" in loops and packed in loops
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)
