"""Shared by the compiled-path tests: compiled == interpreted, element by element, and the
random input those tests feed."""

from __future__ import annotations

import numpy as np

import convc

RTOL, ATOL = 1e-4, 1e-5


def assert_compiled_matches(graph, inputs, threads=1):
    """Compile `graph`, run it on `inputs` and compare with the interpreter; return outputs."""
    model = convc.compile(graph, threads=threads)
    got = model.run(inputs)
    expected = convc.interpret(graph, inputs)
    assert list(got) == list(expected)
    for name, want in expected.items():
        array = got[name]
        assert array.shape == want.shape and array.dtype == want.dtype, name
        assert array.flags.c_contiguous and array.flags.owndata or array.base is not None
        np.testing.assert_allclose(array, want, rtol=RTOL, atol=ATOL, err_msg=name)
    return got


def inputs_for(graph, batch, seed=1):
    """A standard-normal float32 input "x" for `graph` at `batch` (its other dims are fixed)."""
    shape = (batch, *(int(d) for d in graph.values["x"].type.shape[1:]))
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
