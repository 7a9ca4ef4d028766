"""Per-kernel profiles: `CompiledModel.profile`, the timed entry point and `convc run --profile`.

Checked: one entry per kernel call in program order, named and described as the kernels
are; positive times whose sum is close to a timed run; the same input checks as `run`;
a model loaded from the disk cache profiles too (its object holds the timed entry point);
the plain entry point calls no clock. No assertion on speed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import convc
from convc import cli, nn, runtime
from convc.profile import kernel_parts
from convc.runtime import executable

LENET = Path(__file__).resolve().parent.parent / "samples" / "lenet5.py"


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.conv2(self.relu(self.conv1(x)))


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVC_CACHE", raising=False)


@pytest.fixture(scope="module")
def graph():
    return nn.trace(TwoConvs(), convc.Input("x", ("N", 3, 12, 12)))


def _inputs(batch: int = 2) -> dict:
    rng = np.random.default_rng(3)
    return {"x": rng.standard_normal((batch, 3, 12, 12)).astype(np.float32)}


def test_profile_lists_every_kernel_call_in_order(graph):
    model = convc.compile(graph, threads=1)
    profile = model.profile(_inputs(), repeat=3)
    program = model.program
    assert [k.name for k in profile.kernels] == list(program.calls)
    for entry, call in zip(profile.kernels, program.calls):
        comment = program.kernel(call).comment
        assert " + ".join(entry.nodes) + " | " + entry.schedule == comment
        assert entry.ms > 0
    nodes = [n for k in profile.kernels for n in k.nodes]
    assert {"conv1", "relu", "conv2"} <= set(nodes)
    assert profile.total_ms == pytest.approx(sum(k.ms for k in profile.kernels))
    assert profile.repeat == 3 and profile.threads == 1


def test_profile_total_is_close_to_a_timed_run(graph):
    model = convc.compile(graph, threads=1)
    inputs = _inputs(batch=8)
    profile = model.profile(inputs, repeat=15)
    runs = []
    for _ in range(15):
        start = time.perf_counter()
        model.run(inputs)
        runs.append(time.perf_counter() - start)
    whole_ms = 1e3 * float(np.median(runs))
    # A timed run adds Python's per-call path; each kernel's median drops outliers.
    assert whole_ms / 20 < profile.total_ms < whole_ms * 5


def test_profile_table_has_a_row_per_kernel_and_the_total(graph):
    profile = convc.compile(graph, threads=1).profile(_inputs(), repeat=2)
    text = profile.format()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["kernel", "ms", "%"]
    assert len(lines) == 2 + len(profile.kernels) + 1
    assert lines[-1].startswith("total ") and "median of 2 runs" in lines[-1]
    by_time = profile.format(by_time=True).splitlines()[2:-1]
    times = [float(line.split()[1]) for line in by_time]
    assert times == sorted(times, reverse=True)
    percents = [float(line.split()[2]) for line in lines[2:-1]]
    assert sum(percents) == pytest.approx(100, abs=0.1 * len(percents))


def test_profile_checks_inputs_like_run(graph):
    model = convc.compile(graph, threads=1)
    with pytest.raises(convc.InputError, match="x"):
        model.profile({"x": np.zeros((2, 4, 12, 12), np.float32)})
    with pytest.raises(convc.InputError):
        model.profile({})
    with pytest.raises(convc.InputError, match="repeat"):
        model.profile(_inputs(), repeat=0)


def _forget_compiled_models():
    executable._MEMORY.clear()
    convc.compiler._CACHE.clear()


def test_a_model_from_the_disk_cache_profiles(graph):
    _forget_compiled_models()  # compiled by another test, into another cache directory
    first = convc.compile(graph, threads=1)
    _forget_compiled_models()
    before = runtime.STATS["llvm_compiles"]
    again = convc.compile(graph, threads=1)
    assert again is not first and again._executable.origin == "disk"
    assert runtime.STATS["llvm_compiles"] == before
    assert len(again.profile(_inputs(), repeat=1).kernels) == len(first.program.calls)


def test_only_the_timed_entry_point_reads_the_clock(graph):
    llvm_text = convc.compile(graph, threads=1).source("llvm")
    main = llvm_text[llvm_text.index('@"convc_main"') :]
    main = main[: main.index("\n}")]
    timed = llvm_text[llvm_text.index('@"convc_profile"') :]
    timed = timed[: timed.index("\n}")]
    assert "clock_gettime" not in main
    calls = timed.count("@clock_gettime") + timed.count('@"clock_gettime"')
    assert calls == len(convc.compile(graph, threads=1).program.calls) + 1


def test_kernel_parts_splits_nodes_and_schedule():
    assert kernel_parts("a + b.c | tiles o=6 order n,o") == (("a", "b.c"), "tiles o=6 order n,o")
    assert kernel_parts("") == ((), "")


def test_cli_run_profile_prints_the_table(capsys):
    status = cli.main(["run", str(LENET), "--profile", "time", "--repeat", "2"])
    out, err = capsys.readouterr()
    assert status == 0, err
    table = out[out.index("profile:") :].splitlines()
    assert table[1].split()[:3] == ["kernel", "ms", "%"]
    # conv2 (16 channels, stored channel-blocked) shares its kernel with the pool after it
    assert {"conv1", "conv2__pool2__relu2", "fc3"} <= {line.split()[0] for line in table[3:-1]}
    assert table[-1].startswith("total ")


def test_cli_profile_with_the_interpreter_is_an_error(capsys):
    status = cli.main(["run", str(LENET), "--profile", "--interpret"])
    _, err = capsys.readouterr()
    assert status == 1
    assert err.startswith("convc: error: --profile applies to native code")
