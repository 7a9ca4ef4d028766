"""Max reductions (max pooling, global max pooling, softmax's row max) compiled as compares
and selects: NaN propagates from any position (first, middle, last of a window, border or
interior columns), -inf and ties behave, results equal the interpreter's."""

from __future__ import annotations

import numpy as np
import pytest

import convc
import ir


def pool_graph(op, attrs, channels, size):
    g = ir.Graph("max_reduction")
    g.add_input("x", ("N", channels, size, size))
    g.add_node(op, ["x"], attrs, name="p")
    g.set_outputs("p")
    return g


def special_input(batch, channels, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan  # a corner: border column, first window element
    x[0, 0, size // 2, size // 2] = np.nan  # interior
    x[-1, -1, -1, -1] = np.nan  # last element of the last window
    x[0, -1, 1:4, 1:4] = -np.inf
    x[-1, 0, :, 2] = 7.0  # ties
    return x


def check(g, x):
    got = convc.compile(g, threads=1).run({"x": x})["p"]
    want = convc.interpret(g, {"x": x})["p"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want).any()
    np.testing.assert_array_equal(np.nan_to_num(got), np.nan_to_num(want))


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0]},
        {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]},
    ],
)
@pytest.mark.parametrize("size", [9, 37])
def test_max_pool_nan_and_infinities(attrs, size):
    check(pool_graph("max_pool", attrs, 3, size), special_input(2, 3, size))


@pytest.mark.parametrize("size", [7, 14, 19])
def test_global_max_pool_nan(size):
    check(pool_graph("global_max_pool", {}, 4, size), special_input(3, 4, size))


def test_softmax_row_with_nan_and_no_nan():
    g = ir.Graph("softmax_nan")
    g.add_input("x", ("N", 21))
    g.add_node("softmax", ["x"], name="p")
    g.set_outputs("p")
    x = np.random.default_rng(0).standard_normal((3, 21)).astype(np.float32)
    x[1, 20] = np.nan
    got = convc.compile(g, threads=1).run({"x": x})["p"]
    want = convc.interpret(g, {"x": x})["p"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[[0, 2]], want[[0, 2]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "op, size, lanes",
    # a global max over NCHW planes: one partial maximum a lane over the whole plane, read
    # as one run of H*W elements; sums: scalar loops (LLVM vectorises them itself)
    [("global_max_pool", 19, True), ("global_max_pool", 14, True), ("global_avg_pool", 19, False)],
)
def test_reductions_with_no_output_axis_take_lanes_for_long_max_rows(op, size, lanes):
    g = pool_graph(op, {}, 4, size)
    text = convc.compile(g, threads=1).source("loops")
    assert ("vector b/16" in text) == lanes
    assert f"for b in 0..{size * size}" in text  # the plane as one run


@pytest.mark.parametrize("where", [0, 500, 999])
def test_softmax_of_one_long_row_finds_nan_in_any_lane(where):
    g = ir.Graph("softmax_row")
    g.add_input("x", (1, 1000))
    g.add_node("softmax", ["x"], name="p")
    g.set_outputs("p")
    model = convc.compile(g, threads=1)
    assert "vector r/16" in model.source("loops")  # the row maximum, 16 lanes at a time
    x = np.random.default_rng(where).standard_normal((1, 1000)).astype(np.float32)
    clean = model.run({"x": x})["p"]
    np.testing.assert_allclose(clean, convc.interpret(g, {"x": x})["p"], rtol=1e-5, atol=1e-7)
    x[0, where] = np.nan
    assert np.isnan(model.run({"x": x})["p"]).all()


def test_softmax_over_many_rows_runs_along_each_row_with_one_exponential_an_element():
    # the row maximum and row sum read each row's contiguous elements (not one element of
    # 16 rows a step); exp(x - max) is stored once, into the output, summed as it is
    # stored (`lower.row_sums`), and scaled there by the sum's reciprocal (`lower.forward`)
    g = ir.Graph("softmax_rows")
    g.add_input("x", ("N", 1000))
    g.add_node("softmax", ["x"], name="p")
    g.set_outputs("p")
    model = convc.compile(g, threads=2)
    text = model.source("loops")
    assert "p.max: order n vector r/16" in text
    assert text.count("exp(") == 1 and "p.sum[n] = 1.0 / acc" in text
    assert "p[n, c] = v" in text and "acc1 = acc1 + v" in text
    assert "p[n, c] = p.sum[n] * p[n, c]" in text and "p.exp" not in text.split("kernel")[0]
    x = np.random.default_rng(1).standard_normal((64, 1000)).astype(np.float32) * 30
    x[5, 999] = np.nan
    got, want = model.run({"x": x})["p"], convc.interpret(g, {"x": x})["p"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size", [7, 8, 9, 19, 23])
def test_long_max_runs_in_several_chains_find_every_position(size):
    """A plane's maximum runs as `codegen.vector_loops.REDUCTION_CHAINS` vector partials a step
    (then single vectors, then a masked tail): the maximum, a NaN or -inf/-0.0 at any
    position (each chain, the leftover vectors, the tail) comes out as NumPy's."""
    plane = size * size
    positions = sorted({0, 17, 35, 50, 63, 64, 79, plane // 2, plane - 17, plane - 1})
    positions = [p for p in positions if p < plane]
    channels = 2 * len(positions) + 2
    rng = np.random.default_rng(size)
    x = rng.standard_normal((1, channels, plane)).astype(np.float32) - 10.0
    for k, p in enumerate(positions):
        x[0, k, p] = 5.0 + k  # the maximum at p
        x[0, len(positions) + k, p] = np.nan
    x[0, -2] = -np.inf
    x[0, -1] = -1.0
    x[0, -1, positions[-1]] = -0.0
    g = pool_graph("global_max_pool", {}, channels, size)
    check(g, x.reshape(1, channels, size, size))
    got = convc.compile(g, threads=1).run({"x": x.reshape(1, channels, size, size)})["p"]
    assert got[0, -2, 0, 0] == -np.inf and got[0, -1, 0, 0] == 0.0
    np.testing.assert_array_equal(got[0, : len(positions), 0, 0], 5.0 + np.arange(len(positions)))


@pytest.mark.parametrize("shape, axis, merged", [((64, 1000), 1, True), ((2, 5, 4, 3), 1, True),
                                                 ((2, 5, 4, 3), 3, True), ((2, 5, 4, 3), 0, False)])  # fmt: skip
def test_softmax_steps_share_the_batch_loop_when_they_read_along_a_later_axis(shape, axis, merged):
    """Max, exponentials, sum and scaling run inside one loop over the batch when each step
    reads the ones before at its own batch index (`group._row_local`); along axis 0 they
    cannot. Either way the results, NaN rows included, are the interpreter's."""
    g = ir.Graph("softmax_rows_merged")
    g.add_input("x", shape)
    g.add_node("softmax", ["x"], {"axis": axis}, name="p")
    g.set_outputs("p")
    model = convc.compile(g, threads=1)
    lines = model.source("loops").splitlines()
    outer = [line for line in lines if line.startswith(("  for ", "  parallel for "))]
    assert (len(outer) == 1) == merged, outer
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32) * 5
    x.reshape(shape[0], -1)[-1, 3] = np.nan
    got, want = model.run({"x": x})["p"], convc.interpret(g, {"x": x})["p"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(np.nan_to_num(got), np.nan_to_num(want), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("threads", [1, 2])
def test_log_softmax_sums_its_exponentials_in_lanes(threads):
    """A sum of exponentials along a row runs 16 lanes at a time (LLVM leaves the scalar
    loop's exp unvectorised): rows of 1000 end in a masked tail; a NaN, a -inf and a row
    of equal values come out as the interpreter's."""
    g = ir.Graph("log_softmax_rows")
    g.add_input("x", ("N", 1000))
    g.add_node("log_softmax", ["x"], name="p")
    g.set_outputs("p")
    model = convc.compile(g, threads=threads)
    assert "p.sum: order n vector r/16" in model.source("loops")
    x = np.random.default_rng(2).standard_normal((9, 1000)).astype(np.float32) * 20
    x[1, 997] = np.nan
    x[2, 3] = -np.inf
    x[3] = 0.25
    got, want = model.run({"x": x})["p"], convc.interpret(g, {"x": x})["p"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5)
