"""Compiled convolution gradients: the gradient schedules and run-time re-layouts.

Each case compiles `convc.gradient` of one convolution (weights as run-time
inputs, as in a training step) and checks every output against the interpreter
running the same gradient graph in float64 (rtol 1e-4, atol 1e-4: float32
sums of up to a few thousand products); the interpreter's gradients are checked
against finite differences in test_gradient.py. The cases cover each schedule:
channel vectors (16k channels) and width vectors with a channel block (odd
counts) for the input gradient, per-sample weight gradients with a channel or a
column register block, strides (residue-split taps), dilation, groups and
asymmetric padding, 1-D and 3-D. The loop-IR tests check what the lowering
promises: no buffer the size of a Jacobian, no divisibility test left in a
strided input gradient, and no bound check inside a padded gradient's vector loop.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy

import convc
import ir
from convc import loops
from convc.compiler import lower_graph

RTOL = ATOL = 1e-4
MIN_JACOBIAN_SIDE = 128

# (batch, channels, out channels, spatial, kernel, strides, pads, dilations, group)
CASES = {
    "lenet conv2": ("N", 6, 16, (14, 14), (5, 5), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "16k channels, pad 1": (2, 16, 32, (9, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "stride 2, asymmetric pads": (2, 3, 5, (9, 8), (3, 3), (2, 2), (1, 0, 0, 1), (1, 1), 1),
    "stride 2, 16 channels": ("N", 16, 16, (10, 10), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    "dilation 2": (2, 5, 7, (11, 11), (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1),
    "groups 2": (2, 4, 6, (8, 8), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "groups of 20 channels": (2, 16, 40, (9, 9), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "groups of 40 channels": (2, 16, 80, (7, 7), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),
    "odd channels, wide rows": (1, 20, 17, (5, 33), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "1-D": (3, 6, 16, (20,), (3,), (1,), (1, 1), (1,), 1),
    "3-D": (1, 2, 16, (5, 5, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1, 1, 1, 1), (1, 1, 1), 1),
}


def conv_graph(batch, channels, out_channels, spatial, kernel, strides, pads, dilations, group):
    g = ir.Graph("layer")
    g.add_input("x", (batch, channels, *spatial), "float32")
    g.add_input("w", (out_channels, channels // group, *kernel), "float32")
    attrs = {
        "kernel_shape": list(kernel),
        "strides": list(strides),
        "pads": list(pads),
        "dilations": list(dilations),
        "group": group,
    }
    g.add_node("conv", ["x", "w"], attrs, outputs=["y"])
    g.set_outputs("y")
    return g


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_conv_gradients_equal_interpreted(name):
    batch, channels, out_channels, spatial, kernel, *rest = CASES[name]
    gg = convc.gradient(conv_graph(*CASES[name]), wrt=["x", "w"])
    rng = np.random.default_rng(len(name))
    n = 3 if batch == "N" else batch
    shapes = {"x": (n, channels, *spatial), "w": (out_channels, channels // rest[-1], *kernel)}
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    y = convc.interpret(conv_graph(*CASES[name]), feeds)["y"]
    feeds["grad_y"] = rng.standard_normal(y.shape).astype(np.float32)
    expected = convc.interpret(gg, feeds, dtype="float64")
    got = convc.compile(gg, threads=1).run(feeds)
    for out in ("y", "grad_x", "grad_w"):
        np.testing.assert_allclose(got[out], expected[out], rtol=RTOL, atol=ATOL, err_msg=out)


@pytest.mark.parametrize(
    "op, attrs",
    [
        ("avg_pool", {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}),
        ("avg_pool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 0]}),
        ("max_pool", {"kernel_shape": [2, 2], "strides": [1, 1], "pads": [1, 1, 0, 0]}),
    ],
)
def test_compiled_pool_gradients_equal_interpreted(op, attrs):
    """Pooling gradients read a divisor or the first maximum at the same positions as the
    upstream gradient: the bounds that guard both must stay (no padded copy drops them)."""
    g = ir.Graph("pool")
    g.add_input("x", (2, 3, 7, 7), "float32")
    extra = {"count_include_pad": 0} if op == "avg_pool" else {}
    g.add_node(op, ["x"], attrs | extra, outputs=["y"])
    g.set_outputs("y")
    gg = convc.gradient(g, wrt=["x"])
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((2, 3, 7, 7)).astype(np.float32)}
    shape = tuple(int(d) for d in gg.values["grad_y"].type.shape)
    feeds["grad_y"] = rng.standard_normal(shape).astype(np.float32)
    expected = convc.interpret(gg, feeds, dtype="float64")
    got = convc.compile(gg, threads=1).run(feeds)
    for out in ("y", "grad_x"):
        np.testing.assert_allclose(got[out], expected[out], rtol=RTOL, atol=ATOL, err_msg=out)


def _program(graph):
    return lower_graph(graph)[2]


def _numel(shape, batch: int) -> int:
    """Elements of `shape` (sympy or printed dims) with the batch N bound to `batch`."""
    total = sympy.Mul(*(sympy.sympify(d, locals={"N": sympy.Symbol("N")}) for d in shape))
    return int(total.subs({s: batch for s in total.free_symbols}))


def test_no_buffer_is_a_dense_jacobian():
    """No buffer of a training step's program (parsed from its printed loop IR, the batch
    bound to the prime 101 so sizes do not coincide) has the size |x| * |y| of a Jacobian
    of a value y by an input or parameter x (both of at least 128 elements, more than the
    batch: biases and per-sample vectors divide many sizes), and each is within a small
    factor (vector padding of 4 channels to 16) of the largest value of the step."""
    model = convc.nn.Sequential(
        convc.nn.Conv2d(1, 4, 3, stride=2, padding=1),
        convc.nn.ReLU(),
        convc.nn.Conv2d(4, 16, 3, padding=1),
        convc.nn.Flatten(),
        convc.nn.Linear(16 * 4 * 4, 10),
    )
    optimizer = convc.optim.SGD(model.parameters(), lr=0.1)
    inputs = convc.Input("x", ("N", 1, 8, 8))
    step = convc.train_step(model, convc.nn.CrossEntropyLoss(), optimizer, inputs=inputs)
    text = convc.compile(step.graph).source("loops")
    buffers = re.findall(r"^  buffer (\S+): \w+\[([^\]]*)\]", text, re.MULTILINE)
    sizes = {name: _numel(dims.split(","), 101) for name, dims in buffers}
    values = step.graph.values.values()
    numel = {v.name: _numel(v.type.shape, 101) for v in values}
    big = MIN_JACOBIAN_SIDE
    sources = [
        numel[v.name] for v in values if v.kind in ("input", "param") and numel[v.name] >= big
    ]
    jacobians = {a * b for a in sources for b in numel.values() if b >= big}
    assert not {name: n for name, n in sizes.items() if n in jacobians}
    assert max(sizes.values()) <= 4 * max(numel.values())


def _walk(stmt, inside=()):
    yield stmt, inside
    for child in _children(stmt):
        yield from _walk(child, (*inside, stmt))


def _children(stmt):
    if isinstance(stmt, loops.Block):
        return stmt.stmts
    if isinstance(stmt, loops.For):
        return (stmt.body,)
    if isinstance(stmt, loops.If):
        return tuple(s for s in (stmt.then, stmt.orelse) if s is not None)
    return ()


def _kernel(program, name):
    return next(k for k in program.kernels if k.name == name)


def test_strided_input_gradient_has_no_divisibility_test():
    """Stride 2: the residue split leaves taps a_2 < ceil(K/2); no Mod test anywhere."""
    program = _program(convc.gradient(conv_graph(*CASES["stride 2, 16 channels"]), wrt=["x"]))
    text = loops.format_kernel(_kernel(program, "d_conv_x"))
    assert "a_2 in 0..2" in text and "b_2 in 0..2" in text
    conditions = [
        loops.format_expr(s.cond)
        for s, _ in _walk(_kernel(program, "d_conv_x").body)
        if isinstance(s, loops.If)
    ]
    assert conditions and not any("mod" in c.lower() or "%" in c for c in conditions)


def test_padded_gradients_run_their_vector_loops_without_checks():
    """The input and weight gradients read zero-padded copies: no If inside their
    channel-vector loops (the copies themselves keep the bounds)."""
    program = _program(convc.gradient(conv_graph(*CASES["16k channels, pad 1"]), wrt=["x", "w"]))
    for name in ("d_conv_x", "d_conv_w"):
        vectors = [
            s
            for s, inside in _walk(_kernel(program, name).body)
            if isinstance(s, loops.For) and s.width > 1 and str(s.var).endswith("_i")
        ]
        assert vectors, name
        for vector in vectors:
            assert not [s for s, _ in _walk(vector) if isinstance(s, loops.If)], name


def test_bench_layer_case_checks_convc_against_the_interpreter():
    """The training suite's forward+backward layer case, at a small size: convc's y, grad_x
    and grad_w match the interpreted reference and convc is timed."""
    from dataclasses import replace

    from convc.bench.training import TRAINING, run_training_case

    layer_case = next(c for c in TRAINING if c.layer is not None)
    case = replace(layer_case, batch=2, input_shape=(16, 8, 8))
    result = run_training_case(case, ["numpy", "convc"], threads=1, repeat=2, block_s=0.001)
    assert result.peers["convc"].median_s > 0 and not result.peers["convc"].note
    assert result.peers["numpy"].max_err == 0.0
    assert result.peers["convc"].max_err < 1e-3
