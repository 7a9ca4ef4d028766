"""Dense layers under their panel schedule (32-wide feature vectors, blocks of 8 rows):
feature counts that leave masked tails, batches below, at and above the row block, both
weight orientations and a fused epilogue, compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches

import ir
from convc.compiler import stage_source


def dense_graph(features_in, features_out, trans_b, seed=0):
    rng = np.random.default_rng(seed)
    g = ir.Graph("dense")
    g.add_input("x", ("N", features_in))
    shape = (features_out, features_in) if trans_b else (features_in, features_out)
    g.add_param("w", rng.standard_normal(shape).astype(np.float32))
    g.add_param("b", rng.standard_normal(features_out).astype(np.float32))
    g.add_node("gemm", ["x", "w", "b"], {"transB": int(trans_b)}, name="fc")
    g.add_node("relu", ["fc"], name="act")
    g.set_outputs("act")
    return g


@pytest.mark.parametrize("features_out", [5, 32, 37, 70])
@pytest.mark.parametrize("batch", [1, 3, 8, 17])
def test_dense_tails_and_row_blocks(features_out, batch):
    g = dense_graph(23, features_out, trans_b=True)
    x = np.random.default_rng(batch).standard_normal((batch, 23)).astype(np.float32)
    assert_compiled_matches(g, {"x": x})


@pytest.mark.parametrize("threads", [1, 2])
def test_dense_untransposed_weights_threads(threads):
    g = dense_graph(129, 45, trans_b=False)
    x = np.random.default_rng(2).standard_normal((9, 129)).astype(np.float32)
    assert_compiled_matches(g, {"x": x}, threads=threads)


@pytest.mark.parametrize("batch", [1, 9])
def test_deep_dense_uses_16_wide_panels(batch):
    g = dense_graph(2100, 37, trans_b=True)
    assert "vector j.i/16" in stage_source(g, "loops")
    x = np.random.default_rng(batch).standard_normal((batch, 2100)).astype(np.float32)
    assert_compiled_matches(g, {"x": x})
