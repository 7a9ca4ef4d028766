"""ir.binding.bind_inputs: run-time inputs checked against the graph's input types."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import ir
from ir.binding import bind_inputs

F32 = np.float32
N, H = ir.symbol("N"), ir.symbol("H")


def two_input_graph():
    g = ir.Graph("pair")
    g.add_input("x", ("N", 3, "H"))
    g.add_input("labels", ("N",), "int64")
    return g


def good(batch=2, height=5):
    return {"x": np.zeros((batch, 3, height), F32), "labels": np.zeros(batch, np.int64)}


def test_binds_every_symbol():
    assert bind_inputs(two_input_graph(), good()) == {N: 2, H: 5}
    assert bind_inputs(two_input_graph(), good(batch=1, height=1)) == {N: 1, H: 1}


def test_concrete_graph_binds_nothing():
    g = ir.Graph("fixed")
    g.add_input("x", (1, 2))
    assert bind_inputs(g, {"x": np.zeros((1, 2), F32)}) == {}


def test_no_copy_no_cast():
    g = ir.Graph("fixed")
    g.add_input("x", (2, 2))
    x = np.asfortranarray(np.zeros((2, 2), F32))
    bind_inputs(g, {"x": x})
    assert x.flags.f_contiguous  # left as given


@pytest.mark.parametrize(
    "change, pattern",
    [
        (
            lambda d: d.pop("labels"),
            (
                r"graph 'pair': missing input\(s\) \['labels'\]; expected "
                r"'x': f32\[N,3,H\], 'labels': i64\[N\]"
            ),
        ),
        (lambda d: d.update(extra=np.zeros(1)), r"unknown input\(s\) \['extra'\]"),
        (lambda d: d.update(x=[[0.0]]), r"input 'x' is a list; expected a numpy.ndarray"),
        (lambda d: d.update(x=np.float32(1)), r"input 'x' is a float32; expected a numpy"),
        (
            lambda d: d.update(x=np.zeros((2, 3), F32)),
            r"input 'x' has rank 2 \(shape \(2, 3\)\); expected rank 3 \(f32\[N,3,H\]\)",
        ),
        (
            lambda d: d.update(x=np.zeros((2, 3, 5))),
            (
                r"input 'x' has dtype float64; expected float32 \(f32\[N,3,H\]\); inputs are never "
                r"cast implicitly"
            ),
        ),
        (
            lambda d: d.update(labels=np.zeros(2, np.int32)),
            (
                r"input 'labels' has dtype int32; "
                r"expected int64"
            ),
        ),
        (
            lambda d: d.update(x=np.zeros((2, 4, 5), F32)),
            r"input 'x' has shape \(2, 4, 5\): dim 1 is 4 but the graph expects 3",
        ),
        (
            lambda d: d.update(labels=np.zeros(3, np.int64)),
            r"input 'labels' has shape \(3,\): dim 0 gives N=3, but input 'x' dim 0 gave N=2",
        ),
        (
            lambda d: d.update(x=np.zeros((2, 3, 0), F32)),
            (
                r"input 'x' .* dim 2 is 0 but the graph "
                r"expects H >= 1"
            ),
        ),
    ],
)
def test_mistakes_raise_input_error_naming_the_input(change, pattern):
    inputs = good()
    change(inputs)
    with pytest.raises(ir.InputError, match=pattern):
        bind_inputs(two_input_graph(), inputs)


def test_inputs_must_be_a_mapping():
    with pytest.raises(ir.InputError, match="must be a dict of arrays"):
        bind_inputs(two_input_graph(), [np.zeros(1)])


def test_float_dtype_override_admits_that_dtype_only_for_floats():
    inputs = {"x": np.zeros((2, 3, 5)), "labels": np.zeros(2, np.int64)}
    assert bind_inputs(two_input_graph(), inputs, float_dtype="float64") == {N: 2, H: 5}
    assert bind_inputs(two_input_graph(), good(), float_dtype="float64") == {N: 2, H: 5}
    with pytest.raises(ir.InputError, match="'labels' has dtype float64; expected int64"):
        bind_inputs(
            two_input_graph(),
            {"x": np.zeros((2, 3, 5)), "labels": np.zeros(2)},
            float_dtype="float64",
        )


def composite_graph():
    g = ir.Graph("composite")
    g.add_input("x", ("N", 2))
    g.add_input("pairs", (2 * N, 2))
    return g


def test_composite_dims_checked_after_substitution():
    x, pairs = np.zeros((3, 2), F32), np.zeros((6, 2), F32)
    assert bind_inputs(composite_graph(), {"x": x, "pairs": pairs}) == {N: 3}
    with pytest.raises(
        ir.InputError,
        match=r"input 'pairs' .* dim 0 is 5 but the graph expects "
        r"2\*N = 6",
    ):
        bind_inputs(composite_graph(), {"x": x, "pairs": np.zeros((5, 2), F32)})


def test_composite_dim_alone_is_solved():
    g = ir.Graph("solve")
    g.add_input("pairs", (2 * N + 1,))
    assert bind_inputs(g, {"pairs": np.zeros(7, F32)}) == {N: 3}
    with pytest.raises(ir.InputError, match=r"dim 0 is 6 but the graph expects 2\*N \+ 1"):
        bind_inputs(g, {"pairs": np.zeros(6, F32)})


def test_composite_dim_with_two_unknowns_is_reported():
    g = ir.Graph("under")
    g.add_input("x", (N * H,))
    with pytest.raises(ir.InputError, match=r"does not determine its symbols \['H', 'N'\]"):
        bind_inputs(g, {"x": np.zeros(6, F32)})


def test_input_too_small_for_a_window():
    g = ir.Graph("window")
    g.add_input("x", ("N", 1, "H"))
    g.add_param("w", np.ones((1, 1, 3), F32))
    g.add_node("conv", ["x", "w"], {"strides": [2]}, name="conv1")
    assert bind_inputs(g, {"x": np.zeros((1, 1, 3), F32)}) == {N: 1, H: 3}
    with pytest.raises(ir.InputError, match=r"H=2.*value 'conv1' of node 'conv1' would have shape"):
        bind_inputs(g, {"x": np.zeros((1, 1, 2), F32)})


def test_symbols_are_sympy_symbols():
    bindings = bind_inputs(two_input_graph(), good())
    assert all(isinstance(s, sympy.Symbol) and isinstance(v, int) for s, v in bindings.items())
