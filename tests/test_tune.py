"""Tile tuning: `convc.compile(..., tune=True)`, its search space, search and disk cache.

Checked: every candidate the tuner may try compiles and computes what the interpreter
computes; a tuned model equals the interpreter and the untuned model; the schedules found
are the ones the lowering looks up; the search keeps the fastest candidate and the default
unless a candidate clearly wins (timings faked, so the choice is known); the table is
cached on disk, read back without a search, honoured when it names other tiles, ignored
when malformed, and not written with CONVC_CACHE=0. No assertion on speed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import convc
from convc import cli, nn, tune
from convc.lower import assemble
from convc.lower.registers import ROW_BLOCK
from convc.passes import PIPELINE, plan_fusion, run_passes
from convc.profile import KernelTime, Profile
from convc.runtime import executable
from convc.tune import Tunable, spread, tunables
from convc.tune.store import read_table, table_path, write_table

RTOL, ATOL = 1e-4, 1e-5
TINY = Path(__file__).resolve().parent / "cli_sample.py"


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))))


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVC_CACHE", raising=False)
    _forget_compiled_models()


def _forget_compiled_models():
    executable._MEMORY.clear()
    convc.compiler._CACHE.clear()


@pytest.fixture(scope="module")
def graph():
    return nn.trace(TwoConvs(), convc.Input("x", ("N", 16, 12, 12)))


@pytest.fixture(scope="module")
def planned(graph):
    optimized = run_passes(graph, PIPELINE)
    groups = plan_fusion(optimized)
    return optimized, groups, tunables(optimized, groups)


def _inputs(batch: int = 2) -> dict:
    rng = np.random.default_rng(5)
    return {"x": rng.standard_normal((batch, 16, 12, 12)).astype(np.float32)}


def _assert_matches(outputs: dict, expected: dict) -> None:
    assert list(outputs) == list(expected)
    for name, want in expected.items():
        np.testing.assert_allclose(outputs[name], want, rtol=RTOL, atol=ATOL, err_msg=name)


def test_both_convs_have_candidates_with_the_default_first(planned):
    _, groups, found = planned
    assert len(found) == len(groups)
    keyed = [t for per_group in found.values() for t in per_group]
    assert len(keyed) == 2
    for tunable in keyed:
        assert 1 < len(tunable.candidates) <= tune.MAX_CANDIDATES
        assert len({tuple(sorted(c.items())) for c in tunable.candidates}) == len(
            tunable.candidates
        )


def test_batch_row_blocks_are_tuned_only_for_a_fixed_batch():
    def dense_tunables(batch):
        graph = nn.trace(nn.Linear(64, 32), convc.Input("x", (batch, 64)))
        optimized = run_passes(graph, PIPELINE)
        found = tunables(optimized, plan_fusion(optimized))
        return [t for per_group in found.values() for t in per_group]

    assert dense_tunables("N") == []  # measured at N=1, every row block does one row
    (rows,) = dense_tunables(8)
    assert {axis for c in rows.candidates for axis in c} == {"i"}
    assert rows.candidates[0] == {"i": ROW_BLOCK}


def test_the_keys_found_are_the_ones_the_lowering_looks_up(planned):
    optimized, groups, found = planned

    asked = set()

    class Recorder(dict):
        """An empty table (non-empty to `or`) that notes every key looked up."""

        def __bool__(self):
            return True

        def get(self, key, default=None):
            asked.add(key)
            return default

    assemble(optimized, groups, Recorder())
    assert {t.key for per_group in found.values() for t in per_group} <= asked


def test_every_candidate_compiles_and_matches_the_interpreter(graph, planned):
    optimized, groups, found = planned
    keyed = {t.key: t for per_group in found.values() for t in per_group}
    inputs = _inputs()
    expected = convc.interpret(graph, inputs)
    rounds = max(len(t.candidates) for t in keyed.values())
    for r in range(rounds):
        table = {k: t.candidates[min(r, len(t.candidates) - 1)] for k, t in keyed.items()}
        program, _ = assemble(optimized, groups, table)
        for tunable in keyed.values():
            tiles = table[tunable.key]
            assert any(
                all(f"{axis}={size}" in k.comment for axis, size in tiles.items())
                for k in program.kernels
            ), (tiles, [k.comment for k in program.kernels])
        model = convc.CompiledModel(
            graph, optimized, groups, program, convc.runtime.load(program, 1), 1, table
        )
        _assert_matches(model.run(inputs), expected)


def test_tuned_model_equals_the_interpreter_and_the_untuned_model(graph):
    inputs = _inputs(batch=3)
    tuned = convc.compile(graph, threads=1, tune=True)
    plain = convc.compile(graph, threads=1)
    assert tuned is not plain and plain.tuning == {}
    assert len(tuned.tuning) == 2
    outputs = tuned.run(inputs)
    _assert_matches(outputs, convc.interpret(graph, inputs))
    _assert_matches(outputs, plain.run(inputs))
    loops = tuned.source("loops")
    for tiles in tuned.tuning.values():
        assert any(f"{axis}={size}" in loops for axis, size in tiles.items())


def test_a_second_tune_reads_the_cache_and_measures_nothing(graph):
    first = convc.compile(graph, threads=1, tune=True)
    path = table_path(1)
    assert path.is_file()
    assert read_table(path) == first.tuning
    _forget_compiled_models()
    searches, rounds = tune.STATS["searches"], tune.STATS["rounds"]
    again = convc.compile(graph, threads=1, tune=True)
    assert again is not first and again.tuning == first.tuning
    assert (tune.STATS["searches"], tune.STATS["rounds"]) == (searches, rounds)


def test_cached_tiles_are_used_as_written(graph, planned):
    _, _, found = planned
    chosen = {t.key: t.candidates[-1] for per_group in found.values() for t in per_group}
    write_table(table_path(1), chosen)
    searches = tune.STATS["searches"]
    model = convc.compile(graph, threads=1, tune=True)
    assert tune.STATS["searches"] == searches
    assert model.tuning == chosen
    comments = " ".join(k.comment for k in model.program.kernels)
    for tiles in chosen.values():
        assert all(f"{axis}={size}" in comments for axis, size in tiles.items())


def test_a_malformed_cache_file_is_searched_again(graph):
    path = table_path(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    searches = tune.STATS["searches"]
    model = convc.compile(graph, threads=1, tune=True)
    assert tune.STATS["searches"] == searches + 1
    assert read_table(path) == model.tuning


def test_cache_off_writes_nothing(graph, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVC_CACHE", "0")
    model = convc.compile(graph, threads=1, tune=True)
    assert len(model.tuning) == 2 and table_path(1) is None
    assert not (tmp_path / "cache").exists()


def test_tune_must_be_a_bool(graph):
    with pytest.raises(convc.InputError, match="tune"):
        convc.compile(graph, tune="yes")


class _FakeModel:
    """A model whose profile gives each kernel a time looked up from its tiles."""

    def __init__(self, table: dict, costs: dict):
        self.kernels = [
            KernelTime(name, (name,), "", costs[name][table[key][axis]])
            for name, (key, axis) in (("a", ("ka", "j")), ("b", ("kb", "o")), ("c", ("ka", "j")))
        ]

    def profile(self, inputs, repeat=1):
        return Profile("fake", tuple(self.kernels), repeat, 1)


def test_search_keeps_the_fastest_candidate_and_the_default_unless_clearly_beaten():
    per_group = {
        ("a",): [Tunable("ka", ({"j": 4}, {"j": 2}, {"j": 8}))],
        ("b",): [Tunable("kb", ({"o": 2}, {"o": 4}))],
        ("c",): [Tunable("ka", ({"j": 4}, {"j": 2}, {"j": 8}))],
    }
    # "a" and "c" share key ka: j=2 wins on their sum (1.0 + 1.0 > 0.5 + 1.2 > 0.9 + 0.9).
    costs = {"a": {4: 1.0, 2: 0.5, 8: 0.9}, "c": {4: 1.0, 2: 1.2, 8: 0.9}, "b": {2: 1.0, 4: 0.99}}
    built = []

    def build(table):
        built.append(table)
        return _FakeModel(table, costs)

    chosen = tune.search(per_group, {}, build, {})
    assert chosen == {"ka": {"j": 2}, "kb": {"o": 2}}  # kb: 1% faster is noise
    assert built[0] == {"ka": {"j": 4}, "kb": {"o": 2}}  # round 0: the defaults
    assert built[2] == {"ka": {"j": 8}, "kb": {"o": 2}}  # kb has no third candidate
    assert tune.search(per_group, {"ka": {"j": 8}, "kb": {"o": 4}}, build, {}) == {}


def test_spread_takes_the_neighbours_then_evenly_spaced_sizes():
    assert spread(list(range(1, 15)), 9, 5) == [3, 6, 8, 10, 12]
    assert spread([2, 3, 4, 6, 8], 8, 1) == [6]
    assert spread([1, 8], 8, 5) == [1]
    assert spread([4], 4, 5) == []
    assert spread(list(range(1, 8)), 7, 5) == [1, 2, 4, 5, 6]


def test_cli_run_tune(capsys):
    status = cli.main(["run", str(TINY), "--tune", "--batch", "2"])
    out, err = capsys.readouterr()
    assert status == 0, err
    difference = float(out.rsplit("max |difference| = ", 1)[1])
    assert difference < 1e-4


def test_cli_tune_with_the_interpreter_is_an_error(capsys):
    status = cli.main(["run", str(TINY), "--tune", "--interpret"])
    _, err = capsys.readouterr()
    assert status == 1 and "--tune applies to native code" in err
