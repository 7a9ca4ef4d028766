"""Lowered programs kept on disk by graph (`convc.lowered`): a compile in a new process
reads its program and its code and lowers nothing; new weights, a corrupted entry, the
cache turned off and tuned compiles each take the full path, and the results always equal
the interpreter's."""

from __future__ import annotations

import json
import os
import textwrap

from child_process import run_python

import convc
from convc import lowered, runtime

CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    import convc
    from convc import nn, runtime
    from convc.lower import program as lowering

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(16 * 4 * 4, 5)

        def forward(self, x):
            return self.fc(self.pool(self.conv(x).relu()).flatten())

    nn.manual_seed({seed})
    graph = nn.trace(Small(), convc.Input("x", ("N", 3, 8, 8)))
    calls = []
    original = lowering.assemble
    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    convc.compiler.assemble = counted
    model = convc.compile(graph, threads=1, tune={tune})
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    (name,) = graph.outputs
    expected = convc.interpret(graph, {{"x": x}})[name]
    got = model.run({{"x": x}})[name]
    err = float(np.abs(got - expected).max() / np.abs(expected).max())
    stages = [model.source(s) for s in ("graph", "fused", "loops")]
    print(json.dumps({{"stats": runtime.STATS, "lowered": len(calls), "err": err,
                      "stages": all(stages)}}))
    """
)


def _child(directory, seed: int = 0, tune: bool = False, **env) -> dict:
    code = CHILD.format(seed=seed, tune=tune)
    proc = run_python(code, {**os.environ, "CONVC_CACHE_DIR": str(directory), **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_second_process_lowers_nothing(tmp_path):
    first = _child(tmp_path)
    assert first["lowered"] == 1 and first["stats"]["program_writes"] == 1
    second = _child(tmp_path)
    assert second["lowered"] == 0 and second["stats"]["program_hits"] == 1
    assert second["stats"]["llvm_compiles"] == 0
    assert second["stages"]  # the graph stages, run again when asked for
    assert first["err"] < 1e-5 and second["err"] < 1e-5


def test_new_weights_are_a_new_entry(tmp_path):
    _child(tmp_path, seed=0)
    other = _child(tmp_path, seed=1)
    assert other["lowered"] == 1 and other["stats"]["program_hits"] == 0
    assert other["err"] < 1e-5
    assert len(list(tmp_path.glob("*.program"))) == 2


def test_a_corrupted_entry_is_a_miss(tmp_path):
    _child(tmp_path)
    (entry,) = tmp_path.glob("*.program")
    data = bytearray(entry.read_bytes())
    data[-10] ^= 0xFF  # a flipped byte: the checksum no longer matches
    entry.write_bytes(bytes(data))
    again = _child(tmp_path)
    assert again["lowered"] == 1 and again["stats"]["program_hits"] == 0
    assert again["err"] < 1e-5


def test_cache_off_and_tuned_compiles_keep_no_program(tmp_path):
    off = _child(tmp_path / "off", CONVC_CACHE="0")
    assert off["lowered"] == 1 and not (tmp_path / "off").exists()
    tuned = _child(tmp_path / "tuned", tune=True)
    assert tuned["err"] < 1e-5
    assert not list((tmp_path / "tuned").glob("*.program"))


def test_an_entry_that_does_not_unpickle_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path))
    key = "0" * 64
    assert runtime.cache.entry_put(key, runtime.cache.PROGRAM, b"not a pickle")
    assert lowered.load_lowered(key) is None


def test_the_key_names_the_register_file(monkeypatch):
    fingerprint = convc.nn.trace(convc.nn.ReLU(), convc.Input("x", (1, 4))).fingerprint()
    monkeypatch.setenv("CONVC_REGISTER_BLOCKS", "avx2")
    avx2 = lowered.program_key(fingerprint)
    monkeypatch.setenv("CONVC_REGISTER_BLOCKS", "avx512")
    assert lowered.program_key(fingerprint) != avx2


PASSTHROUGH = textwrap.dedent(
    """
    import json
    import numpy as np
    import convc, ir
    from convc import runtime
    g = ir.Graph("passthrough")
    g.add_input("x", ("N", 4))
    g.add_param("c", np.arange(4, dtype=np.float32).reshape(1, 4))
    g.add_node("relu", ["x"], name="r")
    g.set_outputs("r", "x", "c")
    out = convc.compile(g, threads=1).run({"x": -np.ones((2, 4), np.float32)})
    print(json.dumps({"hits": runtime.STATS["program_hits"],
                      "out": {k: v.tolist() for k, v in out.items()}}))
    """
)


def test_outputs_copied_from_inputs_and_constants_after_a_hit(tmp_path):
    env = {**os.environ, "CONVC_CACHE_DIR": str(tmp_path)}
    runs = []
    for _ in range(2):
        proc = run_python(PASSTHROUGH, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert [r["hits"] for r in runs] == [0, 1]
    expected = {"r": [[0.0] * 4] * 2, "x": [[-1.0] * 4] * 2, "c": [[0.0, 1.0, 2.0, 3.0]]}
    assert runs[0]["out"] == runs[1]["out"] == expected
