"""Pools on NCHW rows as a row pass and a column pass (`convc.lower.separable`): which pools
split, that both passes share one loop over planes, and that the results equal the
interpreter's for strides, padding, dilation, ceil mode, the average's divisor, a fused
activation, a symbolic batch, NaN and infinities, on one and two threads."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches
from test_max_reduction import check, special_input

import convc
import ir


def pool_graph(op, attrs, channels=3, size=11, relu=False):
    g = ir.Graph("separable")
    g.add_input("x", ("N", channels, size, size + 2))
    g.add_node(op, ["x"], attrs, name="p")
    if relu:
        g.add_node("relu", ["p"], {}, name="r")
    g.set_outputs("r" if relu else "p")
    return g


def kernel_text(g):
    return convc.compile(g, threads=1).source("loops")


def pool(kernel, stride, pads=(0, 0, 0, 0), **extra):
    return {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(pads), **extra}


SIZES = [(3, 11), (64, 40)]  # too little work to share among threads, and enough

SPLIT = [
    ("max_pool", pool((3, 3), (2, 2), (1, 1, 1, 1))),
    ("max_pool", pool((3, 3), (1, 1), (1, 1, 1, 1))),
    ("max_pool", pool((3, 2), (2, 1), (0, 1, 2, 0), ceil_mode=1)),
    ("max_pool", pool((2, 3), (1, 2), (1, 1, 0, 1), dilations=[2, 2])),
    ("avg_pool", pool((3, 3), (2, 2), (1, 1, 1, 1), count_include_pad=0)),
    ("avg_pool", pool((3, 3), (2, 2), (1, 0, 1, 1), count_include_pad=1, ceil_mode=1)),
    ("avg_pool", pool((5, 4), (3, 2), (2, 1, 2, 2))),
]


@pytest.mark.parametrize("op, attrs", SPLIT)
@pytest.mark.parametrize("channels, size", SIZES)
def test_pools_whose_windows_share_columns_run_as_two_passes_in_one_loop(op, attrs, channels, size):
    text = kernel_text(pool_graph(op, attrs, channels, size))
    assert "buffer p:rows:" in text
    kernel = text[text.index("kernel p:") :]
    # the row pass and the column pass run inside one outer loop: over the batch, or
    # over batch x channels when there is work enough to share among threads
    # (an average's divisor has a loop of its own, before)
    blocks = re.split(r"\n(?=  (?:parallel )?for )", kernel)[1:]
    (both,) = [block for block in blocks if "p:rows[" in block]
    assert re.search(r"p:rows\[.*\] = acc", both) and re.search(r"(let \w+ = |\+ )p:rows\[", both)
    # the column pass reads the row pass without bound checks
    column_pass = kernel[kernel.rindex("for i in") :]
    assert "if " not in column_pass and "x[" not in column_pass


@pytest.mark.parametrize("op, attrs", SPLIT)
@pytest.mark.parametrize("threads", [1, 2])
def test_two_pass_pools_equal_the_interpreter(op, attrs, threads):
    for batch, relu in ((1, False), (3, True)):
        g = pool_graph(op, attrs, channels=5, size=13, relu=relu)
        x = np.random.default_rng(batch).standard_normal((batch, 5, 13, 15)).astype(np.float32)
        assert_compiled_matches(g, {"x": x}, threads=threads)


@pytest.mark.parametrize("attrs", [SPLIT[0][1], SPLIT[1][1], SPLIT[3][1]])
def test_two_pass_max_pools_keep_nan_and_infinities(attrs):
    g = ir.Graph("separable_nan")
    g.add_input("x", ("N", 3, 12, 12))
    g.add_node("max_pool", ["x"], attrs, name="p")
    g.set_outputs("p")
    assert "buffer p:rows:" in kernel_text(g)
    check(g, special_input(2, 3, 12))


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("max_pool", pool((2, 2), (2, 2))),  # windows share no column
        ("avg_pool", pool((3, 3), (3, 3))),
        ("max_pool", pool((1, 3), (1, 1), (0, 1, 0, 1))),  # one row a window
        ("max_pool", pool((3, 1), (1, 1), (1, 0, 1, 0))),  # one column a window
        ("global_max_pool", {}),
    ],
)
def test_other_pools_keep_one_pass(op, attrs):
    assert ":rows" not in kernel_text(pool_graph(op, attrs))


def test_one_dimensional_pools_keep_one_pass():
    g = ir.Graph("pool1d")
    g.add_input("x", ("N", 3, 20))
    g.add_node("max_pool", ["x"], pool((3,), (2,), (1, 1)), name="p")
    g.set_outputs("p")
    assert ":rows" not in kernel_text(g)


def test_pools_on_channel_blocked_values_keep_their_channel_vectors():
    g = ir.Graph("blocked_pool")
    g.add_input("x", ("N", 3, 20, 20))
    rng = np.random.default_rng(0)
    g.add_param("w", (rng.standard_normal((32, 3, 3, 3)) / 5).astype(np.float32))
    g.add_param("w2", (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32))
    g.add_node("conv", ["x", "w"], {"pads": [1] * 4}, name="c")
    g.add_node("max_pool", ["c"], pool((3, 3), (2, 2), (1, 1, 1, 1)), name="p")
    g.add_node("conv", ["p", "w2"], {"pads": [1] * 4}, name="c2")
    g.set_outputs("c2")
    text = kernel_text(g)
    assert ":rows" not in text and "buffer p: f32[N,1,10,10,32]" in text
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 20)).astype(np.float32)
    assert_compiled_matches(g, {"x": x}, threads=2)
