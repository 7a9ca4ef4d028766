"""`CompiledModel.memory_report`: bytes by category equal the plan's numbers (arena size,
packed parameters, input/output sizes) and hand counts of the live temporaries."""

from __future__ import annotations

import numpy as np
import pytest

import convc
import ir
from convc.memory import live_bytes


def aligned(nbytes):
    return -(-nbytes // 64) * 64


def chain_model(params_seed=0):
    """Four 1x1 convs in a row: temps c0, c1, c2; during each call two of them are live."""
    rng = np.random.default_rng(params_seed)
    g = ir.Graph("memory_chain")
    g.add_input("x", ("N", 4, 6, 6))
    g.add_param("w", rng.standard_normal((4, 4, 1, 1)).astype(np.float32))
    previous = "x"
    for k in range(4):
        g.add_node("conv", [previous, "w"], name=f"c{k}")
        previous = f"c{k}"
    g.set_outputs(previous)
    return convc.compile(g, threads=1)


@pytest.mark.parametrize("batch", [1, 3])
def test_report_equals_the_plan(batch):
    m = chain_model()
    report = m.memory_report(N=batch)
    tensor = batch * 4 * 6 * 6 * 4
    arena = m.program.arena_size.subs({s: batch for s in m.program.arena_size.free_symbols})
    assert report.activations == int(arena) == 2 * aligned(tensor)  # c0 and c2 share a slot
    assert report.largest_live_set == 2 * aligned(tensor)  # c(k-1) read while c(k) written
    assert report.weights == sum(a.nbytes for a in m.program.params.values()) == 4 * 4 * 4
    assert report.inputs == report.outputs == tensor and report.scratch == 0
    assert report.peak == report.weights + report.activations + 2 * tensor
    assert report.as_dict()["peak"] == report.peak
    assert "activations (arena)" in str(report) and f"N={batch}" in str(report)


def test_live_bytes_per_call_and_views_count_once():
    g = ir.Graph("memory_view")
    g.add_input("x", ("N", 3, 4, 4))
    g.add_node("conv", ["x", g.add_param("w", np.ones((2, 3, 1, 1), np.float32)).name], name="c")
    g.add_node("flatten", ["c"], name="f")  # a view of c: same arena range
    g.add_node("softmax", ["f"], name="s")
    g.add_node("relu", ["s"], name="out")
    g.set_outputs("out")
    m = convc.compile(g, threads=1)
    conv_out = 2 * 2 * 4 * 4 * 4  # N=2; the view f re-indexes it in place
    softmax_rows = 2 * 4  # its max and sum temporaries, one float per row
    rows = 2 * 32 * 4  # the softmax's output, which also holds its exponentials (forwarded)
    assert m.program.calls == ("c", "s", "out")
    live = live_bytes(m.program, {"N": 2})
    assert live == [conv_out, conv_out + 2 * softmax_rows + rows, rows]
    report = m.memory_report(N=2)
    assert report.largest_live_set == max(live) <= report.activations


def test_scratch_and_passthrough_outputs_are_counted():
    g = ir.Graph("memory_io")
    g.add_input("x", ("N", 5))
    g.add_node("relu", ["x"], name="r")
    g.set_outputs("r", "x")
    m = convc.compile(g, threads=1)
    assert m.memory_report(N=2).outputs == 2 * 2 * 5 * 4  # r computed, x copied
    base = np.zeros(11, np.float32)
    m.run({"x": base[1:].reshape(2, 5)})  # misaligned: goes through an aligned copy
    assert m.memory_report(N=2).scratch >= 2 * 5 * 4


@pytest.mark.parametrize("symbols, match", [({"M": 2}, "no symbol"), ({"N": 0}, ">= 1")])
def test_bad_symbols_raise_input_error(symbols, match):
    with pytest.raises(convc.InputError, match=match):
        chain_model().memory_report(**symbols)
