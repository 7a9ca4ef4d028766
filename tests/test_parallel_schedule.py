"""Parallel decisions of the default schedules: channel-vector convs split output rows as well
as channel blocks over threads, depthwise convs, pooling, elementwise kernels and dense layers
go parallel from less work, small kernels split their batch from the batch where it pays, and
libgomp loads with a bounded spin count. Compiled == interpreted; 1 and 2 threads
bit-identical."""

from __future__ import annotations

import os

import numpy as np
import pytest
from child_process import run_python
from compile_check import assert_compiled_matches, inputs_for

import convc
from convc import loops
from convc.compiler import lower_graph
from convc.runtime import parallel
from ir import Graph


def conv(cin, cout, size, kernel, stride=1, group=1):
    g = Graph("conv")
    g.add_input("x", ("N", cin, size, size))
    w = np.random.default_rng(0).standard_normal((cout, cin // group, kernel, kernel))
    g.add_param("w", (w * np.sqrt(2 / w[0].size)).astype(np.float32))  # He-scaled: O(1) sums
    attrs = {"strides": [stride] * 2, "pads": [(kernel - 1) // 2] * 4, "group": group}
    g.add_node("conv", ["x", "w"], attrs, name="conv")
    g.set_outputs("conv")
    return g


def dense(features_in, features_out):
    g = Graph("dense")
    g.add_input("x", ("N", features_in))
    w = np.random.default_rng(0).standard_normal((features_out, features_in)) / features_in
    g.add_param("w", w.astype(np.float32))
    g.add_node("gemm", ["x", "w"], {"transB": 1}, name="fc")
    g.set_outputs("fc")
    return g


def sigmoid(channels, size):
    g = Graph("sigmoid")
    g.add_input("x", ("N", channels, size, size))
    g.add_node("sigmoid", ["x"], {}, name="act")
    g.set_outputs("act")
    return g


def softmax(rows, columns, op="softmax"):
    g = Graph(op)
    g.add_input("x", (rows, columns))
    g.add_node(op, ["x"], {"axis": 1}, name="sm")
    g.set_outputs("sm")
    return g


def max_pool(channels, size):
    g = Graph("pool")
    g.add_input("x", ("N", channels, size, size))
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}
    g.add_node("max_pool", ["x"], attrs, name="pool")
    g.set_outputs("pool")
    return g


@pytest.mark.parametrize(
    "graph, axis",
    [
        (conv(3, 32, 80, 3, stride=2), "n*i*o"),  # a stem: one 32-wide channel block
        (conv(96, 96, 14, 3), "n*i*o"),  # 3 blocks of 32: rows balance them
        (conv(96, 96, 7, 3), "n*o*i"),  # under ROWS_FIRST_MIN rows: channel blocks first
        (conv(64, 64, 16, 1), "n*i*o"),  # 1x1 on narrow rows is a channel-vector conv too
        (conv(96, 96, 28, 3, group=96), "n*o"),  # depthwise, 0.68M multiply-adds
        (conv(96, 96, 14, 3, group=96), "n*o"),  # 0.17M: past PARALLEL_MIN_LIGHT too
        (max_pool(64, 76), "n*c"),  # 0.83M
        (dense(512, 1000), "j"),  # 0.5M weights, streamed once at batch 1
        (sigmoid(64, 56), "n*c"),  # 0.2M elements, a few dozen operations each
    ],
)
def test_parallel_axis_and_results(graph, axis):
    (kernel,) = lower_graph(graph)[2].kernels
    assert f"parallel {axis}" in kernel.comment
    for batch in (1, 3):
        inputs = inputs_for(graph, batch)
        two = assert_compiled_matches(graph, inputs, threads=2)
        one = convc.compile(graph, threads=1).run(inputs)
        np.testing.assert_array_equal(one[graph.outputs[0]], two[graph.outputs[0]])


@pytest.mark.parametrize(
    "graph, least",
    # 56K multiply-adds, 100K elements and a register-blocked conv of 0.46M at batch 1
    [(conv(32, 32, 14, 3, group=32), 3), (sigmoid(32, 56), 2), (conv(16, 16, 15, 3), 3)],
)
def test_small_kernels_split_their_batch_loop_from_the_batch_where_it_pays(graph, least):
    """Serial at batch 1 (under the thresholds), a kernel whose work grows with the batch
    gets a parallel loop over the batch alone, split on more than one thread only from
    `least` images on (`Kernel.parallel_when`, checked at each call); below, every thread
    count computes on one thread. Either way the threads' results are bit-identical."""
    (kernel,) = lower_graph(graph)[2].kernels
    assert f"parallel n when N >= {least}" in kernel.comment
    (batch_loop,) = kernel.body.stmts
    assert batch_loop.kind == "parallel" and str(batch_loop.var) == "n"
    assert f"parallel when idx(N) >= idx({least})" in loops.format_kernel(kernel)
    for batch in (1, least + 1):
        inputs = inputs_for(graph, batch)
        two = assert_compiled_matches(graph, inputs, threads=2)
        one = convc.compile(graph, threads=1).run(inputs)
        np.testing.assert_array_equal(one[graph.outputs[0]], two[graph.outputs[0]])


def test_dense_layers_of_little_work_stay_serial():
    """A dense layer (48K multiply-adds at batch 1) parallelises its output features, which
    do not grow with the batch: no condition, no parallel loop."""
    (kernel,) = lower_graph(dense(400, 120))[2].kernels
    assert "parallel" not in kernel.comment and kernel.parallel_when is None


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_steps_share_one_parallel_loop_over_rows(op):
    """64 rows of 1000: each step's 64K elements are under PARALLEL_MIN_LIGHT, the whole
    softmax is not; its row maximum and row sum (one output a row) go parallel too."""
    graph = softmax(64, 1000, op)
    (kernel,) = lower_graph(graph)[2].kernels
    parts = kernel.comment.split(" | ", 1)[1].split("; ")
    assert len(parts) >= 3 and all(part.endswith("parallel n") for part in parts)
    (loop,) = kernel.body.stmts
    assert loop.kind == "parallel"  # one loop over the rows holds every step
    inputs = {"x": np.random.default_rng(1).standard_normal((64, 1000)).astype(np.float32)}
    two = assert_compiled_matches(graph, inputs, threads=2)
    one = convc.compile(graph, threads=1).run(inputs)
    np.testing.assert_array_equal(one["sm"], two["sm"])
    small = softmax(8, 1000, op)  # 8 rows: serial
    assert "parallel" not in lower_graph(small)[2].kernels[0].comment


def test_spin_count_is_set_only_while_loading_and_only_by_default(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with parallel.spin_count_while_loading():
        assert os.environ["GOMP_SPINCOUNT"] == str(parallel.SPIN_COUNT)
    assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    with parallel.spin_count_while_loading():
        assert "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    with parallel.spin_count_while_loading():
        assert os.environ["GOMP_SPINCOUNT"] == "7"


def test_fresh_process_leaves_no_spin_setting_behind():
    code = (
        "import os; from convc.runtime import parallel_runtime; kind = parallel_runtime(); "
        "print(kind, os.environ.get('GOMP_SPINCOUNT'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "None" and done.stdout.split()[0] in ("libgomp", "serial")


#: A fresh process's preamble: `m`, a relu over 64^3 floats compiled for two threads (a
#: parallel kernel), and its input `x`.
TWO_THREAD_RELU = (
    "import os, warnings, numpy as np, convc; from ir import Graph; g = Graph('r'); "
    "g.add_input('x', (1, 64, 64, 64)); g.add_node('relu', ['x'], {}, name='y'); "
    "g.set_outputs('y'); m = convc.compile(g, threads=2); "
    "x = -np.arange(64**3, dtype=np.float32).reshape(1, 64, 64, 64) + 1000; "
)


def test_process_exits_cleanly_while_workers_spin():
    """At exit LLVM closes the libraries it loaded; libgomp must stay mapped under workers
    that still spin in it (here for good: OMP_WAIT_POLICY=active), or the process dies."""
    code = TWO_THREAD_RELU + (
        "assert 'parallel' in m.source('loops'); print(m.run({'x': x})['y'].sum())"
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "active", "CONVC_CACHE": "0"}
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == 1000 * 1001 / 2


@pytest.mark.parametrize("ran_before_fork, warnings_expected", [(True, 1), (False, 0)])
def test_forked_child_runs_correctly(ran_before_fork, warnings_expected):
    """libgomp's pool does not survive fork: a child of a process that ran a parallel region
    would wait for its workers forever, so it runs serial and says so once; a child forked
    before any parallel run starts its own pool and says nothing."""
    before = "assert (m.run({'x': x})['y'] == want).all(); " if ran_before_fork else ""
    code = TWO_THREAD_RELU + (
        f"want = np.maximum(x, 0); {before}pid = os.fork()\n"
        "if pid == 0:\n"
        "    with warnings.catch_warnings(record=True) as said:\n"
        "        warnings.simplefilter('always')\n"
        "        ok = all((m.run({'x': x})['y'] == want).all() for _ in range(2))\n"
        f"    fine = ok and len(said) == {warnings_expected}\n"
        "    os._exit(0 if fine and all('fork' in str(w.message) for w in said) else 3)\n"
        "print(os.waitpid(pid, 0)[1])"
    )
    done = run_python(code, {**os.environ, "CONVC_CACHE": "0"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]
