"""Channel concats written in place (`convc.lower.concat_slices`): which concats lose their
kernel, that each input's producer stores into its slice of the output, and that results
equal the interpreter's, the concat a graph output or not, on one and two threads."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import convc
import ir

WINDOW = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1] * 4}


def block(channels=(8, 24, 16), extra_reader=False, output=False, axis=1, pool_branch=True):
    """Branches of 1x1 convs (+ relu) and a 3x3/1 max pool of the input, concatenated
    along `axis`, then a 1x1 conv (unless the concat is the graph `output`)."""
    g = ir.Graph("block")
    g.add_input("x", ("N", 16, 9, 11))
    rng = np.random.default_rng(len(channels))
    pieces = []
    for k, width in enumerate(channels):
        g.add_param(f"w{k}", (rng.standard_normal((width, 16, 1, 1)) / 4).astype(np.float32))
        g.add_node("conv", ["x", f"w{k}"], name=f"c{k}")
        g.add_node("relu", [f"c{k}"], name=f"b{k}")
        pieces.append(f"b{k}")
    if pool_branch:
        g.add_node("max_pool", ["x"], WINDOW, name="pool")
        pieces.append("pool")
    g.add_node("concat", pieces, {"axis": axis}, name="cat")
    last = "cat"
    if extra_reader:
        g.add_node("add", ["cat", "cat"], name="twice")
        g.add_node("relu", ["b0"], name="again")
        g.add_node("global_avg_pool", ["again"], name="side")
        g.set_outputs("twice", "side")
        return g
    if not output:
        total = sum(channels) + (16 if pool_branch else 0) if axis == 1 else channels[0]
        g.add_param("wo", (rng.standard_normal((8, total, 1, 1)) / 8).astype(np.float32))
        g.add_node("conv", ["cat", "wo"], name="out")
        last = "out"
    g.set_outputs(last)
    return g


@pytest.mark.parametrize("output", [False, True])
def test_concat_inputs_are_stored_into_their_slices(output):
    g = block(output=output)
    text = convc.compile(g, threads=1).source("loops")
    assert "kernel cat" not in text
    # no buffer for the branches: each stores at its channel offset in the concat
    assert not re.search(r"buffer (b\d|pool): ", text)
    for k, offset in ((1, 8), (2, 32)):
        kernel = text[text.index(f"kernel c{k}__b{k}") :].split("\nkernel ")[0]
        assert re.search(rf"cat\[[^]]*{offset}[^]]*\] = ", kernel), kernel
    assert "buffer pool:rows:" in text  # the pool branch keeps its row pass
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


@pytest.mark.parametrize(
    "graph",
    [
        block(extra_reader=True),  # b0 is read by another node too
        block(channels=(8, 8, 8), axis=2, pool_branch=False),  # not along channels
    ],
)
def test_other_concats_keep_their_copy(graph):
    text = convc.compile(graph, threads=1).source("loops")
    assert "kernel cat" in text
    assert_compiled_matches(graph, inputs_for(graph, 2), threads=2)


def test_a_concat_of_the_model_input_keeps_its_copy():
    g = ir.Graph("input_piece")
    g.add_input("x", ("N", 16, 5, 5))
    g.add_node("relu", ["x"], name="r")
    g.add_node("concat", ["x", "r"], {"axis": 1}, name="cat")
    g.set_outputs("cat")
    assert "kernel cat" in convc.compile(g, threads=1).source("loops")
    assert_compiled_matches(g, inputs_for(g, 2))


def test_nested_concats_write_the_inner_one_in_place():
    # the inner concat's pieces go in place; its value then has two writers, so the outer
    # concat copies it
    g = ir.Graph("nested")
    g.add_input("x", ("N", 16, 6, 6))
    for k in range(3):
        g.add_node("relu" if k != 1 else "sigmoid", ["x"], name=f"p{k}")
    g.add_node("concat", ["p0", "p1"], {"axis": 1}, name="inner")
    g.add_node("concat", ["inner", "p2"], {"axis": 1}, name="outer")
    g.set_outputs("outer")
    text = convc.compile(g, threads=1).source("loops")
    assert "kernel inner" not in text and "kernel outer" in text
    assert_compiled_matches(g, inputs_for(g, 2), threads=2)
