"""Dense layers under their panel schedule (32-wide feature vectors, blocks of ROW_BLOCK
rows): feature counts that leave masked tails, batches below, at and above the row block
(and every leftover of a run-time batch), both weight orientations, a fused epilogue and a
GEMV read as several weight streams, compiled == interpreted."""

from __future__ import annotations

import numpy as np
import pytest
from compile_check import assert_compiled_matches

import convc.lower.streams
import ir
from convc.compiler import lower_graph, stage_source
from convc.lower.reduction_chunks import DENSE_CHUNK
from convc.lower.registers import ROW_BLOCK
from convc.lower.schedule import DEEP_DENSE
from convc.tune import tunables


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


@pytest.mark.parametrize("batch", [1, 8, "N"])
def test_a_last_panel_of_one_register_runs_as_a_narrow_vector(batch):
    """48 features in 32-wide panels: the last panel's 16 fill one AVX-512 register and run
    as a vector of 16, not a masked vector of 32."""
    g = dense_graph(23, 48, trans_b=True, batch=batch)
    text = stage_source(g, "loops")
    assert "vector(16, tail=scalar) for j_i in 0..16:" in text
    assert "vector(32, tail=masked) for j_i in 0..32:" in text and "Min(32, 48" not in text
    x = np.random.default_rng(7).standard_normal((5 if batch == "N" else batch, 23))
    assert_compiled_matches(g, {"x": x.astype(np.float32)}, threads=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_run_time_batch_leftover_rows_run_in_power_of_two_blocks(threads):
    """A batch known at run time runs its whole blocks of ROW_BLOCK rows, then the rows
    left over as at most one block of each power of two below ROW_BLOCK, never a row at a
    time (each row would stream every weight); every leftover count is checked."""
    g = dense_graph(19, 37, trans_b=True, batch="N")
    text = stage_source(g, "loops")
    sizes = [1 << k for k in range((ROW_BLOCK - 1).bit_length())]
    assert max(sizes) < ROW_BLOCK <= 2 * max(sizes)
    for size in sizes:
        assert f"unrolled for i_i in 0..{size}:" in text
    assert "for i in " not in text  # no loop taking rows one at a time
    for batch in range(1, 2 * ROW_BLOCK + 1):
        x = np.random.default_rng(batch).standard_normal((batch, 19)).astype(np.float32)
        assert_compiled_matches(g, {"x": x}, threads=threads)


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


@pytest.mark.parametrize("batch", [ROW_BLOCK, 2 * ROW_BLOCK + 1, "N"])
@pytest.mark.parametrize("trans_b", [True, False])
def test_deep_dense_rows_past_one_block_run_the_reduction_in_chunks(batch, trans_b):
    """DEEP_DENSE inputs: rows (known at compile time) in more than one register block run
    the reduction in chunks of DENSE_CHUNK, each chunk's row blocks in turn, their partial
    sums waiting in a scratch, and each step hints the next chunk's line; one block of
    rows, or a run-time batch, reads it whole."""
    g = dense_graph(DEEP_DENSE, 37, trans_b=trans_b, batch=batch)
    text = stage_source(g, "loops")
    chunked = batch == 2 * ROW_BLOCK + 1
    assert (f"reduce-tiles k={DENSE_CHUNK}" in text) == chunked
    assert ("buffer fc.partial:" in text) == chunked
    next_chunk = f"k_i + {DENSE_CHUNK}*(Mod(k_o + 1, {DEEP_DENSE // DENSE_CHUNK})), 0]"
    assert (next_chunk in text) == chunked
    for threads in (1, 2):
        x = np.random.default_rng(5).standard_normal((9 if batch == "N" else batch, DEEP_DENSE))
        assert_compiled_matches(g, {"x": x.astype(np.float32)}, threads=threads)


@pytest.mark.parametrize("batch, prefetches", [("N", True), (8, True), (1, False)])
def test_large_dense_prefetches_its_next_panel_unless_one_row(batch, prefetches):
    """1024 x 256 weights (1 MB): rows of a batch share each panel, and the next panel's
    lines are hinted; a batch of one (a GEMV) streams the panels once, unhinted."""
    g = dense_graph(1024, 256, trans_b=True, batch=batch)
    text = stage_source(g, "loops")
    assert ("prefetch w" in text) == prefetches
    x = np.random.default_rng(3).standard_normal((1 if batch == "N" else batch, 1024))
    assert_compiled_matches(g, {"x": x.astype(np.float32)})


@pytest.mark.parametrize("trans_b", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemv_with_large_weights_reads_them_as_four_streams(monkeypatch, trans_b, threads):
    """At batch 1, weights past STREAMS_MIN_BYTES are read as four parts of the reduction
    side by side (one row each of a partial-sum temporary), then summed with the bias;
    37 features leave a masked tail."""
    monkeypatch.setattr(convc.lower.streams, "STREAMS_MIN_BYTES", 1000 * 37 * 4)
    g = dense_graph(1000, 37, trans_b=trans_b, batch=1)
    text = stage_source(g, "loops")
    assert "buffer fc:streams: f32[4,37] temp" in text
    assert "unrolled for k_stream_i in 0..4:" in text and "for k in 0..250:" in text
    assert "prefetch" not in text and "if idx" not in text  # each weight is read once
    x = np.random.default_rng(4).standard_normal((1, 1000)).astype(np.float32)
    assert_compiled_matches(g, {"x": x}, threads=threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_gemv_streams_at_a_run_time_batch_of_one(monkeypatch, threads):
    """A batch known only at run time compiles the streams for one row and the general
    layer, and the batch picks one; both read the same packed panels."""
    monkeypatch.setattr(convc.lower.streams, "STREAMS_MIN_BYTES", 1000 * 37 * 4)
    g = dense_graph(1000, 37, trans_b=True, batch="N")
    text = stage_source(g, "loops")
    assert text.count("if idx(N) == idx(1):") == 2 and text.count("if idx(N) != idx(1):") == 1
    assert text.count("buffer w.p32:") == 1 and "buffer fc:streams: f32[4,37] temp" in text
    for batch in (1, 3, 9):
        x = np.random.default_rng(batch).standard_normal((batch, 1000)).astype(np.float32)
        assert_compiled_matches(g, {"x": x}, threads=threads)


@pytest.mark.parametrize(
    "features_in, batch, min_bytes",
    # weights 4 bytes short of the limit; a batch of 2; 1001 inputs
    [(1000, 1, 1000 * 37 * 4 + 4), (1000, 2, 0), (1001, 1, 0)],
)
def test_gemv_streams_only_for_one_row_and_large_weights(
    monkeypatch, features_in, batch, min_bytes
):
    monkeypatch.setattr(convc.lower.streams, "STREAMS_MIN_BYTES", min_bytes)
    g = dense_graph(features_in, 37, trans_b=True, batch=batch)
    assert "streams" not in stage_source(g, "loops")


def test_tuning_leaves_the_weight_streams_side_by_side(monkeypatch):
    """The tuner may block a dense layer's rows differently, but not a GEMV's streams:
    one stream a row would undo them (measured warm, one row can look faster)."""
    monkeypatch.setattr(convc.lower.streams, "STREAMS_MIN_BYTES", 0)

    def shapes(batch):
        optimized, groups, _ = lower_graph(dense_graph(1000, 37, trans_b=True, batch=batch))
        return [
            t.key.split("|")[2] for found in tunables(optimized, groups).values() for t in found
        ]

    assert shapes(8) == ["8,37"]  # a batch of 8 rows: its row block is tuned
    assert "streams" in stage_source(dense_graph(1000, 37, trans_b=True, batch=1), "loops")
    assert shapes(1) == []  # the four streams are not
