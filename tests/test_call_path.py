"""The per-call path of `CompiledModel.run` / `Executable.run`: cached signatures and pointers
must never serve stale data (arrays changed in place, other arrays of the same signature,
read-only, misaligned or strided arrays, mappings other than dict)."""

from __future__ import annotations

import types
import weakref

import numpy as np
import pytest

import convc
import ir
from convc import runtime


def model():
    rng = np.random.default_rng(3)
    g = ir.Graph("call_path")
    g.add_input("x", ("N", 3, 8, 8), "float32")
    g.add_param("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    g.add_node("conv", ["x", "w"], {"pads": [1, 1, 1, 1]}, name="y")
    g.add_node("relu", ["y"], name="act")
    g.set_outputs("act", "x")  # `x` passes through: copied, not computed
    return convc.compile(g, threads=1)


def expected(m, x):
    return convc.interpret(m.graph, {"x": np.array(x)})["act"]


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: a.reshape(-1)[1:].reshape(-1),  # misaligned by 4 bytes
        lambda a: a[:, ::2],  # strided
        lambda a: np.asfortranarray(a),
        lambda a: a[:0],  # empty
    ],
)
def test_address_is_the_data_pointer(make):
    view = make(np.arange(24, dtype=np.float32).reshape(4, 6))
    assert runtime.address(view) == view.ctypes.data
    view.flags.writeable = False
    assert runtime.address(view) == view.ctypes.data


def test_repeated_calls_see_new_data_and_new_arrays():
    m = model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    first = m.run({"x": x})
    np.testing.assert_allclose(first["act"], expected(m, x), rtol=1e-5, atol=1e-5)
    x[...] = rng.standard_normal(x.shape)  # same array object, new contents
    second = m.run({"x": x})
    np.testing.assert_allclose(second["act"], expected(m, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(second["x"], x)
    assert second["act"] is not first["act"] and second["x"] is not x
    other = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)  # same signature
    np.testing.assert_allclose(m.run({"x": other})["act"], expected(m, other), 1e-5, 1e-5)


def test_read_only_misaligned_and_mapping_inputs():
    m = model()
    rng = np.random.default_rng(1)
    base = rng.standard_normal(3 * 3 * 64 + 1).astype(np.float32)
    misaligned = base[1:].reshape(3, 3, 8, 8)
    read_only = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    read_only.flags.writeable = False
    for x in (misaligned, read_only, misaligned, read_only):
        out = m.run(types.MappingProxyType({"x": x}))
        np.testing.assert_allclose(out["act"], expected(m, x), rtol=1e-5, atol=1e-5)
        assert out["act"].ctypes.data % 64 == 0 and out["act"].flags.c_contiguous


def test_profile_of_a_model_with_a_passed_through_output():
    """`profile` goes through the same output plan as `run`: a graph input as output (copied)
    and the computed outputs."""
    m = model()
    x = np.random.default_rng(4).standard_normal((2, 3, 8, 8)).astype(np.float32)
    profile = m.profile({"x": x}, repeat=2)
    assert len(profile.kernels) == len(m.program.calls) and profile.total_ms > 0


def test_outputs_are_not_kept_after_the_call():
    """A run keeps no reference to its outputs: dropped by the caller, an output's memory
    is free for the next run's (the same block, still in cache, not a second one)."""
    m = model()
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = m.run({"x": x})["act"]
    expect = expected(m, x)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)
    gone = weakref.ref(out)
    del out
    assert gone() is None
    np.testing.assert_allclose(m.run({"x": x})["act"], expect, rtol=1e-5, atol=1e-5)
