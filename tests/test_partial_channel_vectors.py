"""Convs over NCHW values whose output channels leave the last channel vector partly empty
(`schedule.PARTIAL_MIN_CHANNELS`): strided convs, and deep reductions over windows or
narrow rows, take channel vectors with the last block masked, in 1-D, 2-D and 3-D, at
batches 1 and 3, on one and two threads; compiled == interpreted. Fewer channels, shallow
windows over wide rows and 1x1 stride-1 convs over wide rows keep width vectors. (Grouped
convs whose groups split vectors: test_group_tiles.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import ir
from convc.compiler import stage_source


def conv(cin, cout, spatial, kernel, stride=1, pad=0, group=1, seed=0):
    """A conv (+ bias, relu) over ("N", cin, *spatial) with `kernel` taps on every axis."""
    rng = np.random.default_rng(seed)
    g = ir.Graph("partial")
    g.add_input("x", ("N", cin, *spatial))
    taps = (kernel,) * len(spatial)
    w = rng.standard_normal((cout, cin // group, *taps)).astype(np.float32) / kernel
    g.add_param("w", w)
    g.add_param("b", rng.standard_normal(cout).astype(np.float32))
    dims = len(spatial)
    attrs = {"strides": [stride] * dims, "pads": [pad] * 2 * dims, "group": group}
    g.add_node("conv", ["x", "w", "b"], attrs, name="conv")
    g.add_node("relu", ["conv"], name="act")
    g.set_outputs("act")
    return g


CASES = [
    (24, 40, (19, 19), 5, 1, 2),  # 16 + 16 + 8 channels, padded window, narrow rows
    (16, 24, (30, 30), 3, 2, 1),  # strided
    (32, 12, (40, 40), 3, 1, 1),  # one masked block of 12 over a row split into blocks
    (16, 8, (21, 21), 3, 1, 1),  # the fewest channels that qualify
    (200, 72, (11, 11), 1, 1, 0),  # deep 1x1 over narrow rows
    (24, 20, (37,), 3, 1, 1),  # 1-D
    (4, 20, (6, 7, 9), 3, 1, 1),  # 3-D
]


@pytest.mark.parametrize("cin, cout, spatial, kernel, stride, pad", CASES)
@pytest.mark.parametrize("batch, threads", [(1, 1), (3, 2)])
def test_partial_channel_vectors_match(cin, cout, spatial, kernel, stride, pad, batch, threads):
    g = conv(cin, cout, spatial, kernel, stride, pad)
    assert "vector o.i/16" in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


@pytest.mark.parametrize(
    "cin, cout, size, kernel",
    [
        (1, 6, 32, 5),  # under PARTIAL_MIN_CHANNELS
        (3, 12, 40, 3),  # a shallow window over wide rows
        (64, 24, 56, 1),  # 1x1 stride 1 over wide rows
        (64, 40, 56, 1),
    ],
)
def test_width_vectors_kept(cin, cout, size, kernel):
    g = conv(cin, cout, (size, size), kernel)
    assert "vector o.i" not in stage_source(g, "loops")
    assert_compiled_matches(g, inputs_for(g, 1))
