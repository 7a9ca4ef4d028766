"""Shared by the compiled-path tests: compiled == interpreted, element by element, and the
random input those tests feed."""

from __future__ import annotations

import numpy as np

import convc

#: Relative to each element, and absolute relative to the output's largest magnitude: a
#: float32 sum of many terms errs by a multiple of its terms' size, so an element that
#: cancels to near zero (0.08 among outputs of 50) carries the error of its neighbours,
#: and the order of the sums differs with the schedule and the CPU it was chosen for.
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
        finite = np.abs(want[np.isfinite(want)]) if want.dtype.kind == "f" else np.abs(want)
        scale = max(1.0, float(np.max(finite, initial=0.0)))
        np.testing.assert_allclose(array, want, rtol=RTOL, atol=ATOL * scale, err_msg=name)
    return got


def inputs_for(graph, batch, seed=1):
    """A standard-normal float32 input "x" for `graph` at `batch` (its other dims are fixed)."""
    shape = (batch, *(int(d) for d in graph.values["x"].type.shape[1:]))
    return {"x": np.random.default_rng(seed).standard_normal(shape).astype(np.float32)}
