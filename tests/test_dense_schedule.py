"""Dense layers under their panel schedule (32-wide feature vectors, blocks of 8 rows):
feature counts that leave masked tails, batches below, at and above the row block, both
weight orientations and a fused epilogue, compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches

import ir
from convc.compiler import stage_source


def dense_graph(features_in, features_out, trans_b, seed=0, batch="N"):
    rng = np.random.default_rng(seed)
    g = ir.Graph("dense")
    g.add_input("x", (batch, features_in))
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


@pytest.mark.parametrize("batch, prefetches", [("N", True), (8, True), (1, False)])
def test_large_dense_prefetches_its_next_panel_unless_one_row(batch, prefetches):
    """1024 x 256 weights (1 MB): rows of a batch share each panel, and the next panel's
    lines are hinted; a batch of one (a GEMV) streams the panels once, unhinted."""
    g = dense_graph(1024, 256, trans_b=True, batch=batch)
    text = stage_source(g, "loops")
    assert ("prefetch w" in text) == prefetches
    x = np.random.default_rng(3).standard_normal((1 if batch == "N" else batch, 1024))
    assert_compiled_matches(g, {"x": x.astype(np.float32)})
