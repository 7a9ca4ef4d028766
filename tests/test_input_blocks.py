"""Deep convs over narrow NCHW model inputs read a channel-blocked copy made in their own
kernel (`convc.lower.input_blocks`), with AVX2's register blocks only: the copy is the
kernel's first nest, the conv's input lanes then run around its unrolled innermost taps, and the
results match the interpreter; shallow or wide convs, and AVX-512's blocks, read the
input in place."""

from __future__ import annotations

import re

import numpy as np
import pytest
from compile_check import assert_compiled_matches, inputs_for

import ir
from convc.compiler import stage_source
from convc.lower import registers


@pytest.fixture
def avx2(monkeypatch):
    monkeypatch.setenv(registers.ENV, "avx2")


def convs_over_input(channels, size, convs=1):
    """`convs` 3x3 convs (bias, relu) over one model input, summed when there are two."""
    rng = np.random.default_rng(channels + size)
    g = ir.Graph("input_blocks")
    g.add_input("x", ("N", channels, size, size))
    outputs = []
    for k in range(convs):
        w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) / 24
        g.add_param(f"w{k}", w)
        g.add_param(f"b{k}", rng.standard_normal(channels).astype(np.float32))
        attrs = {"strides": [1, 1], "pads": [1, 1, 1, 1]}
        g.add_node("conv", ["x", f"w{k}", f"b{k}"], attrs, name=f"conv{k}")
        outputs.append(g.add_node("relu", [f"conv{k}"], name=f"act{k}")[0].name)
    if convs == 2:
        g.add_node("add", outputs, name="sum")
        outputs = ["sum"]
    g.set_outputs(*outputs)
    return g


def test_a_deep_conv_over_a_narrow_input_reads_a_blocked_copy(avx2):
    g = convs_over_input(256, 7)
    listing = stage_source(g, "loops")
    assert re.search(r"buffer conv0\.input: f32\[N,16,7,7,16\] temp", listing), listing
    copy = re.search(r"^ *conv0\.input\[.*\] = x\[", listing, re.MULTILINE)
    assert copy, listing
    assert len(re.findall(r"(?<![\w.])x\[", listing)) == 1  # the copy alone reads the input
    assert "conv0.input[floor(n_o_o" in listing  # and the conv reads the copy
    lanes = re.search(
        r"^( *)for c_\w+ in 0\.\.16:\n(\1  .*\n)*?\1  unrolled for b in 0\.\.3:",
        listing,
        re.MULTILINE,
    )
    assert lanes, listing
    for batch, threads in ((1, 1), (3, 2)):
        assert_compiled_matches(g, inputs_for(g, batch), threads=threads)


def test_two_convs_over_one_input_keep_a_copy_each(avx2):
    g = convs_over_input(256, 5, convs=2)
    listing = stage_source(g, "loops")
    assert "buffer conv0.input:" in listing and "buffer conv1.input:" in listing
    assert_compiled_matches(g, inputs_for(g, 2))


@pytest.mark.parametrize(
    "channels, size",
    [(128, 7), (256, 14)],
    ids=["shallow", "wide"],
)
def test_shallow_or_wide_convs_read_the_input_in_place(avx2, channels, size):
    assert ".input" not in stage_source(convs_over_input(channels, size), "loops")


def test_avx512_blocks_read_the_input_in_place():
    assert ".input" not in stage_source(convs_over_input(256, 7), "loops")
