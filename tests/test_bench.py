"""Smoke tests of `convc bench`: tiny cases, one repeat, well-formed tables. Nothing is timed
against a threshold; the figures themselves belong in benchmarks/RESULTS.md."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest

import convc
from convc import runtime
from convc.bench import (
    _result,
    _settle_ms,
    add_arguments,
    format_results,
    run_cases,
    select_peers,
    timing,
)
from convc.bench.cases import LAYERS, OPS, SHAPES, Case, layer_cases, op_cases, shape_cases
from convc.bench.peak import fma_program, fma_shape, measured_peak
from convc.bench.peers import PEERS
from convc.bench.runner import CaseResult, PeerResult, max_error
from convc.bench.timing import calls_per_block, time_interleaved
from convc.cli import main
from convc.loops.printer import format_program
from ir import ConvcError, Graph, UnsupportedError

RNG = np.random.default_rng(7)


def _param(g: Graph, name: str, shape, scale=0.5) -> str:
    return g.add_param(name, (RNG.standard_normal(shape) * scale).astype(np.float32)).name


def mixed_graph() -> Graph:
    """Conv+bias, batch norm, relu6, max pool with asymmetric pads, residual add, head."""
    g = Graph("mixed")
    g.add_input("x", ("N", 3, 9, 9))
    conv = g.add_node(
        "conv",
        ["x", _param(g, "w", (4, 3, 3, 3)), _param(g, "b", (4,))],
        {"pads": [1, 1, 1, 1]},
        name="conv",
    )[0]
    stats = [_param(g, f"bn.{k}", (4,)) for k in ("scale", "bias", "mean")]
    var = g.add_param("bn.var", RNG.uniform(0.5, 2.0, 4).astype(np.float32)).name
    bn = g.add_node("batch_norm", [conv, *stats, var], name="bn")[0]
    low, high = g.add_const("lo", np.float32(0)), g.add_const("hi", np.float32(6))
    act = g.add_node("clip", [bn, low, high], name="relu6")[0]
    pool = g.add_node(
        "max_pool",
        [act],
        {"kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]},
        name="pool",
    )[0]
    side = g.add_node(
        "conv", ["x", _param(g, "w2", (4, 3, 1, 1))], {"strides": [2, 2]}, name="side"
    )[0]
    res = g.add_node("add", [pool, side], name="res")[0]
    gap = g.add_node("global_avg_pool", [res], name="gap")[0]
    flat = g.add_node("flatten", [gap], name="flat")[0]
    fc = g.add_node(
        "gemm", [flat, _param(g, "fc.w", (5, 4)), _param(g, "fc.b", (5,))], {"transB": 1}, name="fc"
    )[0]
    g.add_node("softmax", [fc], name="prob")
    g.set_outputs("prob", "res")
    return g


def tiny_case() -> Case:
    graph = mixed_graph()
    return Case(
        "tiny mixed", 2, lambda: (graph, {"x": RNG.standard_normal((2, 3, 9, 9), dtype=np.float32)})
    )


def test_layer_suite_lists_every_benchmark_layer():
    cases = layer_cases()
    assert len(cases) == sum(len(batches) for _, batches, _ in LAYERS) == 14
    assert [c.batch for c in layer_cases((8,))] == [8, 8, 8]


def test_op_suite_cases_compile_to_the_interpreters_results():
    cases = op_cases()
    assert len(cases) == sum(len(batches) for _, batches, _ in OPS)
    assert [c.name for c in op_cases((64,))] == ["softmax 1000", "dense 784->128 + relu"]
    assert_cases_compile_to_the_interpreters_results(cases)


def test_shape_suite_cases_compile_to_the_interpreters_results():
    cases = shape_cases()
    assert len(cases) == sum(len(batches) for _, batches, _ in SHAPES) == 11
    assert [c.name for c in shape_cases((8,))] == ["1x1 128->64 @32"]
    assert_cases_compile_to_the_interpreters_results(shape_cases((1,)))


def assert_cases_compile_to_the_interpreters_results(cases):
    """Each case's graph, compiled for one thread, gives the interpreter's outputs."""
    for case in cases:
        graph, inputs = case.build()
        assert next(iter(inputs.values())).shape[0] == case.batch
        want = convc.interpret(graph, inputs)
        got = convc.compile(graph, threads=1).run(inputs)
        for name, ref in want.items():
            assert np.isfinite(ref).all(), case.name
            np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-5, err_msg=case.name)


def test_run_cases_times_every_available_peer_and_checks_outputs():
    peers = select_peers(None)
    [result] = run_cases([tiny_case()], peers, threads=1, repeat=1, block_s=0.0)
    assert result.macs > 0 and result.threads == 1 and result.batch == 2
    for name in peers:
        peer = result.peers[name]
        if name == "convc" and peer.note:
            continue  # the compiler's own tests cover what it cannot compile yet
        assert peer.note == "", peer.note
        assert 0 < peer.min_s <= peer.median_s
        if name != "numpy":
            assert peer.max_err < 1e-4


@pytest.mark.parametrize("peer", ["torch", "onnxruntime"])
def test_peer_translation_matches_the_interpreter(peer):
    pytest.importorskip(peer)
    graph = mixed_graph()
    inputs = {"x": RNG.standard_normal((3, 3, 9, 9), dtype=np.float32)}
    outputs = PEERS[peer].prepare(graph, inputs, 1)()
    reference = convc.interpret(graph, inputs)
    for name, ref in reference.items():
        np.testing.assert_allclose(np.asarray(outputs[name]), ref, rtol=1e-5, atol=1e-6)


def test_onnx_export_passes_the_checker():
    onnx = pytest.importorskip("onnx")
    from convc.bench.onnx_export import IR_VERSION, to_onnx

    model = to_onnx(mixed_graph())
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION <= 13  # what onnxruntime 1.31 reads
    assert [o.name for o in model.graph.output] == ["prob", "res"]


def test_table_is_well_formed_markdown():
    peers = select_peers(None)
    results = run_cases([tiny_case()], peers, threads=1, repeat=1, block_s=0.0)
    text = format_results(results, peers)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert len(tables) == 3 * 3  # header, rule, one row in each of three tables
    for header, rule, row in zip(tables[0::3], tables[1::3], tables[2::3]):
        assert header.count("|") == rule.count("|") == row.count("|")
        assert row.startswith("| tiny mixed | 2 | 1 |")


def test_a_given_peak_sets_the_percentages():
    peers = ["convc", "numpy"]
    [result] = run_cases([tiny_case()], peers, threads=1, repeat=1, block_s=0.0)
    seconds = result.peers["convc"].median_s
    gflops = 2 * result.macs / seconds / 1e9
    text = format_results([result], peers, peak=gflops / 0.5)
    assert "(% of " in text and f"{gflops:.3g} (50%)" in text


def test_cases_whose_median_some_blocks_slowed_are_listed():
    steady = PeerResult(median_s=1.1e-3, min_s=1.0e-3)
    slowed = PeerResult(median_s=1.5e-3, min_s=1.0e-3)
    result = CaseResult("tiny mixed", 2, 2, 1000, {"convc": slowed, "numpy": steady})
    text = format_results([result], ["convc", "numpy"], peak=100.0)
    assert "Noisy: a median more than 25% above its minimum" in text
    assert "- tiny mixed (N=2, 2 threads): convc 1.50x" in text
    assert "numpy interp 1.10x" not in text
    result.peers["convc"] = steady
    assert "Noisy" not in format_results([result], ["convc", "numpy"], peak=100.0)


def test_runs_on_several_threads_time_convc_on_one_thread_beside_them(monkeypatch):
    """The speed-up from more threads is a ratio of two runners timed in the same rounds,
    like every other ratio, not of two processes run minutes apart."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CONVC_NUM_THREADS"):
        monkeypatch.setenv(name, "1")  # run_cases pins them to 2; restored afterwards
    peers = ["convc", "numpy"]
    [one] = run_cases([tiny_case()], peers, threads=1, repeat=2, block_s=0.0)
    [two] = run_cases([tiny_case()], peers, threads=2, repeat=2, block_s=0.0)
    assert one.one_thread is None
    assert two.one_thread.note == "" and two.one_thread.max_err < 1e-4
    assert 0 < two.one_thread.min_s <= two.one_thread.median_s
    assert _result(dataclasses.asdict(two)) == two
    text = format_results([one, two], peers, peak=100.0)
    header = next(line for line in text.splitlines() if "speed-up" in line)
    column = header.split(" | ").index("convc speed-up over one thread")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| tiny mixed")]
    assert rows[2][column] == "-"  # the speed table's one-thread row
    expected = two.one_thread.median_s / two.peers["convc"].median_s
    assert rows[3][column].startswith(f"{expected:.3g}x (")


def test_the_speed_up_column_divides_the_one_thread_time_by_the_row_time():
    convc_two = PeerResult(median_s=1.0e-3, min_s=0.8e-3)
    alone = PeerResult(median_s=1.9e-3, min_s=1.6e-3)
    result = CaseResult("tiny mixed", 2, 2, 1000, {"convc": convc_two}, one_thread=alone)
    text = format_results([result], ["convc"], peak=100.0)
    assert "| tiny mixed | 2 | 2 | 1.9x (2x) |" in text
    assert "convc speed-up over one thread" not in format_results(
        [dataclasses.replace(result, one_thread=None)], ["convc"], peak=100.0
    )


def test_the_peak_kernel_steps_its_fma_chains():
    # the measured kernel does the work it is credited with: STEPS of acc = acc * y + z
    program, (chains, lanes) = fma_program(), fma_shape()
    text = format_program(program)
    assert text.count("fma(") == 1 and f"alloc acc: f32[{chains}]" in text
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, (chains, lanes)).astype(np.float32)
    y = np.full(lanes, 0.999, np.float32)
    z = rng.uniform(0, 0.01, lanes).astype(np.float32)
    out = np.empty_like(x)
    runtime.load(program, threads=1).run({"x": x, "y": y, "z": z}, {"out": out}, {"steps": 50})
    expected = x.astype(np.float64)
    for _ in range(50):
        expected = expected * y + z
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert measured_peak() > 0


def test_unavailable_peer_gets_a_note_not_a_time(monkeypatch):
    monkeypatch.setitem(PEERS, "torch", dataclasses.replace(PEERS["torch"], module="no_such_lib"))
    [result] = run_cases([tiny_case()], ["numpy", "torch"], threads=1, repeat=1, block_s=0.0)
    assert result.peers["torch"].note == "not installed"
    assert result.peers["torch"].median_s is None
    assert "not installed" in format_results([result], ["numpy", "torch"])


def test_wrong_output_is_detected():
    ref = {"y": np.ones((2, 3), np.float32)}
    assert max_error({"y": ref["y"] + 1e-6}, ref) == (pytest.approx(1e-6, rel=0.1), True)
    assert max_error({"y": ref["y"] + 1e-3}, ref)[1] is False
    assert max_error({"y": np.ones((3, 2), np.float32)}, ref)[1] is False
    small = {"y": np.full((2, 3), 1e-3, np.float32)}  # the tolerance follows the output's scale
    assert max_error({"y": small["y"] * (1 + 1e-3)}, small)[1] is False
    assert max_error({"y": small["y"] * (1 + 1e-5)}, small)[1] is True
    # a NaN matches a NaN (a batch norm of a negative variance); elsewhere it is wrong
    nan = {"y": np.array([[np.nan, 2.0, 3.0]], np.float32)}
    assert max_error({"y": nan["y"] + 1e-6}, nan) == (pytest.approx(1e-6, rel=0.2), True)
    assert max_error({"y": np.array([[1.0, 2.0, 3.0]], np.float32)}, nan)[1] is False
    assert max_error({"y": np.array([[np.nan, np.nan, 3.0]], np.float32)}, nan)[1] is False


def test_interleaved_timing_rejects_zero_repeats():
    runners = {"a": lambda: None, "b": lambda: None}
    timings = time_interleaved(runners, repeat=2, block_s=0.0, settle_s=0.001)
    assert all(len(t.samples) == 2 for t in timings.values())
    with pytest.raises(ConvcError, match="repeat=0"):
        time_interleaved({"a": lambda: None}, repeat=0)


def test_calls_per_block_counts_from_warm_calls(monkeypatch):
    """A slow first call (a thread pool waking up) must not shrink the block: counted from it,
    a block of 20 ms would hold two calls of a runner whose warm calls take 0.1 ms. The clock
    is simulated, so the count is exact on a loaded machine too (a real 0.1 ms sleep can
    overshoot)."""
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])

    def runner():
        clock[0] += 0.01 if clock[0] == 0.0 else 0.0001

    assert 199 <= calls_per_block(runner, block_s=0.02) <= 201  # 20 ms of 0.1 ms calls


def test_unknown_peer_is_rejected():
    with pytest.raises(UnsupportedError, match="unknown peer 'tensorflow'"):
        select_peers(["tensorflow"])


SAMPLE = """
import numpy as np
from ir import Graph

def build(batch="N"):
    g = Graph("one_conv")
    g.add_input("x", (batch, 1, 6, 6))
    g.add_param("w", np.full((2, 1, 3, 3), 0.1, np.float32))
    g.add_node("conv", ["x", "w"], name="y")
    g.set_outputs("y")
    return g

def example_inputs(batch=1, seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((batch, 1, 6, 6)).astype(np.float32)}
"""


def test_cli_bench_runs_a_sample_file(tmp_path, monkeypatch, capsys):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")  # pinned already: runs in this process
    sample = tmp_path / "one_conv.py"
    sample.write_text(SAMPLE)
    argv = [
        "bench",
        str(sample),
        "--batch",
        "1,3",
        "--repeat",
        "1",
        "--block-ms",
        "0",
        "--peers",
        "numpy",
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| one_conv | 1 | 1 |" in out and "| one_conv | 3 | 1 |" in out
    assert f"FP32 FMA peak {measured_peak():.3g} GFLOP/s a core (measured)" in out
    assert (tmp_path / "r.json").read_text().count('"case": "one_conv"') == 2
    assert main([*argv, "--peak", "100"]) == 0
    out = capsys.readouterr().out
    assert "FP32 FMA peak 100 GFLOP/s a core (given)" in out and "(% of 100 per core)" in out
    argv[-1] = str(tmp_path / "missing" / "r.json")
    assert main(argv) == 1
    assert "cannot write --json" in capsys.readouterr().err


def test_cli_bench_needs_exactly_one_of_file_and_suite(tmp_path, capsys):
    assert main(["bench"]) == 1
    assert "either a model FILE or --suite" in capsys.readouterr().err
    assert main(["bench", "--peers", "tf", "--suite", "layers"]) == 1
    assert "unknown peer 'tf'" in capsys.readouterr().err
    assert main(["bench", "--suite", "layers", "--only", "winograd"]) == 1
    assert "--only 'winograd' matches no case" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("case", layer_cases(), ids=lambda c: f"{c.name}-N{c.batch}")
def test_every_benchmark_layer_runs_correctly_on_every_peer(case):
    peers = select_peers(None)
    [result] = run_cases([case], peers, threads=1, repeat=1, block_s=0.0)
    assert {name: r.note for name, r in result.peers.items() if r.note} == {}


@pytest.mark.parametrize(
    "given, threads, settle", [(None, 1, 20.0), (None, 2, 300.0), (5.0, 2, 5.0)]
)
def test_settle_pause_defaults_by_thread_count(given, threads, settle):
    """Multi-thread runs pause longer before each block: a peer's pool spins for tens of
    ms after its run. An explicit --settle-ms wins."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--suite", "models"] + ([] if given is None else ["--settle-ms", str(given)])
    assert _settle_ms(parser.parse_args(argv), threads) == settle
