"""Graphs whose shapes depend on run-time input values compile per value.

A reshape target fed as a graph input: `convc.compile` returns a model that
specialises on the target's value, compiles once per distinct value, and equals
the interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

import convc
import ir
from convc.specialize import ShapeSpecializedModel, shape_inputs


def reshape_graph() -> ir.Graph:
    graph = ir.Graph("runtime_reshape")
    x = graph.add_input("x", ("N", 4, 6))
    shape = graph.add_input("shape", (3,), "int64")
    (y,) = graph.add_node("reshape", [x, shape], name="reshape")
    (z,) = graph.add_node("relu", [y], name="relu")
    graph.set_outputs(z)
    return graph


def inputs(batch: int, target) -> dict:
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 4, 6)).astype(np.float32)
    return {"x": x, "shape": np.array(target, dtype=np.int64)}


def test_shape_inputs_are_the_integer_targets():
    assert shape_inputs(reshape_graph()) == ("shape",)


def test_compiles_once_per_target_and_equals_the_interpreter():
    graph = reshape_graph()
    model = convc.compile(graph, threads=1)
    assert isinstance(model, ShapeSpecializedModel)
    for batch, target in ((2, (0, 12, 2)), (3, (0, 12, 2)), (2, (-1, 8, 3)), (2, (0, 12, 2))):
        feed = inputs(batch, target)
        expected = convc.interpret(graph, feed)["relu"]
        actual = model.run(feed)["relu"]
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=0, atol=0)
    assert "2 compiled" in repr(model)


def test_bad_inputs_raise_input_error_before_compiling():
    model = convc.compile(reshape_graph(), threads=1)
    with pytest.raises(convc.InputError, match="shape"):
        model.run({"x": np.zeros((2, 4, 6), np.float32)})
    with pytest.raises(convc.InputError, match="shape"):
        model.run({"x": np.zeros((2, 4, 6), np.float32), "shape": np.array([0, 12, 2])[:2]})
    assert "0 compiled" in repr(model)


def test_a_target_that_does_not_fit_names_the_node():
    model = convc.compile(reshape_graph(), threads=1)
    with pytest.raises(convc.ShapeError, match="reshape 'reshape'"):
        model.run(inputs(2, (0, 5, 5)))


def test_source_is_that_of_the_latest_specialisation():
    model = convc.compile(reshape_graph(), threads=1)
    with pytest.raises(convc.GraphError, match="run it once"):
        model.source("loops")
    model.run(inputs(2, (0, 3, 8)))
    assert "f32[N,3,8]" in model.source("graph")


def test_with_constants_rejects_a_name_that_is_not_an_input():
    with pytest.raises(convc.GraphError, match="'relu' is not an input"):
        reshape_graph().with_constants({"relu": np.zeros(3)})
