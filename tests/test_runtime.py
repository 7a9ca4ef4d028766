"""Runtime: caches (memory, disk across processes), threads, alignment, sources, input checks."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
import sympy
from child_process import run_python

from convc import CodegenError, InputError, runtime
from convc.loops import Buffer, For, Kernel, Load, Program, Store, Unary, loop_var
from convc.runtime import llvm as runtime_llvm
from convc.runtime import objects
from ir.types import symbol

N = symbol("N")
i, j = loop_var("i"), loop_var("j")


def tanh_rows(name: str = "rows", scale: float = 2.0) -> Program:
    """y[j, i] = tanh(x[j, i]) * scale, parallel over rows, vectorized over columns."""
    inner = For(
        i, 0, 45, [Store("y", (j, i), Unary("tanh", Load("x", (j, i))) * scale)], "vectorized", 16
    )
    bufs = [Buffer("x", "float32", (N, 45), "input"), Buffer("y", "float32", (N, 45), "output")]
    return Program(name, bufs, [Kernel("rows", [For(j, 0, N, [inner], "parallel")])], ("N",))


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CONVC_CACHE", raising=False)


def test_memory_cache_skips_llvm():
    prog = tanh_rows("memory_once")
    runtime.load(prog)
    before = dict(runtime.STATS)
    exe = runtime.load(tanh_rows("memory_once"))  # an equal program built again
    assert exe.origin == "memory"
    assert runtime.STATS["llvm_compiles"] == before["llvm_compiles"]
    assert runtime.STATS["memory_hits"] == before["memory_hits"] + 1


CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_runtime import tanh_rows
    from convc import runtime
    exe = runtime.load(tanh_rows("disk", {scale}))
    x = np.linspace(-3, 3, 90, dtype=np.float32).reshape(2, 45)
    y = np.empty_like(x)
    exe.run({{"x": x}}, {{"y": y}}, {{"N": 2}})
    err = float(np.abs(y - np.tanh(x.astype(np.float64)) * {scale}).max())
    print(json.dumps({{"origin": exe.origin, "stats": runtime.STATS, "err": err}}))
    """
)


def _child(env: dict, scale: float = 3.0) -> dict:
    code = CHILD.format(tests=os.path.dirname(__file__), scale=scale)
    proc = run_python(code, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_disk_cache_lets_a_second_process_skip_llvm(tmp_path):
    env = {**os.environ, "CONVC_CACHE_DIR": str(tmp_path / "disk")}
    first = _child(env)
    assert first["origin"] == "compiled" and first["stats"]["llvm_compiles"] == 1
    assert first["stats"]["disk_writes"] == 1
    second = _child(env)
    assert second["origin"] == "disk"
    assert second["stats"]["llvm_compiles"] == 0 and second["stats"]["disk_hits"] == 1
    assert first["err"] < 1e-6 and second["err"] < 1e-6
    different = _child(env, scale=4.0)  # another program: a miss, not a wrong hit
    assert different["origin"] == "compiled"


def test_disk_cache_disabled_and_corrupted(tmp_path):
    directory = tmp_path / "off"
    off = _child({**os.environ, "CONVC_CACHE_DIR": str(directory), "CONVC_CACHE": "0"})
    assert off["origin"] == "compiled" and not directory.exists()
    env = {**os.environ, "CONVC_CACHE_DIR": str(directory)}
    _child(env)
    (entry,) = directory.glob("*.o")
    entry.write_bytes(entry.read_bytes()[:-100])  # a torn write
    again = _child(env)
    assert again["origin"] == "compiled" and again["err"] < 1e-6


def test_one_and_two_threads_agree():
    exe = runtime.load(tanh_rows("threads"))
    x = np.random.default_rng(0).standard_normal((7, 45)).astype(np.float32)
    outs = []
    for threads in (1, 2):
        y = np.empty_like(x)
        exe.run({"x": x}, {"y": y}, {"N": 7}, threads=threads)
        outs.append(y)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], np.tanh(x.astype(np.float64)) * 2, rtol=3e-7)


def test_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("CONVC_NUM_THREADS", "1")
    assert runtime.default_threads() == 1
    monkeypatch.setenv("CONVC_NUM_THREADS", "two")
    with pytest.raises(InputError, match="CONVC_NUM_THREADS='two'"):
        runtime.default_threads()
    monkeypatch.setenv("CONVC_COMPILE_JOBS", "0")
    with pytest.raises(InputError, match="CONVC_COMPILE_JOBS='0'"):
        objects.compile_jobs()
    monkeypatch.delenv("CONVC_NUM_THREADS")
    assert runtime.default_threads() == len(os.sched_getaffinity(0))
    assert runtime.parallel_runtime() in ("libgomp", "serial")


def test_misaligned_and_strided_arrays_are_copied_through_aligned_scratch():
    exe = runtime.load(tanh_rows("align"))
    raw_x = np.random.default_rng(1).standard_normal(3 * 45 + 1).astype(np.float32)
    x = raw_x[1:].reshape(3, 45)  # 4 bytes off any 64-byte boundary the base had
    raw_y = np.zeros(3 * 45 + 1, np.float32)
    y = raw_y[1:].reshape(3, 45)
    assert not (runtime.is_aligned(x) and runtime.is_aligned(y))
    exe.run({"x": x}, {"y": y}, {"N": 3})
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)) * 2, rtol=3e-7)
    wide = np.random.default_rng(2).standard_normal((3, 90)).astype(np.float32)[:, ::2]
    out = np.empty((3, 45), np.float32)
    exe.run({"x": wide}, {"y": out}, {"N": 3})
    np.testing.assert_allclose(out, np.tanh(wide.astype(np.float64)) * 2, rtol=3e-7)


def test_aligned_empty():
    for shape in [(1,), (3, 5), (0,), (17, 3, 2)]:
        a = runtime.aligned_empty(shape, np.float32)
        assert a.shape == shape and a.flags.c_contiguous and a.ctypes.data % 64 == 0


def test_sources_for_inspection():
    exe = runtime.load(tanh_rows("sources"))
    llvm_text = exe.source("llvm")
    assert 'define void @"convc_main"' in llvm_text and "GOMP_parallel" in llvm_text
    assert "convc.tanh.v16f32" in llvm_text and "noalias" in llvm_text
    assert "<16 x float>" in exe.source("llvm-opt")
    asm = exe.source("asm")
    register = "zmm" if runtime_llvm.has_scalef() else "ymm"  # AVX-512 or AVX2 vector registers
    assert register in asm and "vfmadd" in asm
    with pytest.raises(ValueError, match="unknown source stage"):
        exe.source("bitcode")


def test_run_checks_its_arguments():
    exe = runtime.load(tanh_rows("checks"))
    x = np.zeros((2, 45), np.float32)
    y = np.zeros((2, 45), np.float32)
    with pytest.raises(InputError, match="missing input 'x'"):
        exe.run({}, {"y": y}, {"N": 2})
    with pytest.raises(InputError, match="'x' must be a float32 array, got float64"):
        exe.run({"x": x.astype(np.float64)}, {"y": y}, {"N": 2})
    with pytest.raises(InputError, match=r"'y' has shape \(2, 45\), expected \(3, 45\)"):
        exe.run({"x": np.zeros((3, 45), np.float32)}, {"y": y}, {"N": 3})
    with pytest.raises(InputError, match="no value for symbol 'N'"):
        exe.run({"x": x}, {"y": y}, {})


def test_params_are_checked_and_packed_aligned():
    body = For(i, 0, 20, [Store("y", (i,), Load("w", (i,)) + Load("x", (i,)))], "vectorized", 16)
    bufs = [Buffer("x", "float32", (20,), "input"), Buffer("w", "float32", (20,), "param"),
            Buffer("y", "float32", (20,), "output")]  # fmt: skip
    w = np.arange(20, dtype=np.float32)
    prog = Program("params", bufs, [Kernel("k", [body])], params={"w": w})
    y = np.empty(20, np.float32)
    runtime.load(prog).run({"x": np.ones(20, np.float32)}, {"y": y}, {})
    np.testing.assert_array_equal(y, w + 1)
    packed = runtime.aligned_empty((20,), np.float32)
    packed[...] = w
    shared = runtime.load(Program("params", bufs, [Kernel("k", [body])], params={"w": packed}))
    assert np.shares_memory(shared._params["w"], packed)  # aligned params are not copied
    bad = Program("params", bufs, [Kernel("k", [body])], params={"w": w[:10]})
    with pytest.raises(CodegenError, match="param 'w'"):
        runtime.load(bad)


def test_params_past_the_block_size_share_one_block_on_a_huge_page(monkeypatch):
    """From PARAM_BLOCK_MIN bytes the params are copied into one block starting on a huge
    page boundary (each still aligned), the program's params become views of it (one copy
    of each weight), the results are unchanged and the memory report counts the block."""
    from convc.runtime import executable

    monkeypatch.setattr(executable, "PARAM_BLOCK_MIN", 64)
    body = For(i, 0, 20, [Store("y", (i,), Load("w", (i,)) * Load("v", (i,)))], "vectorized", 16)
    bufs = [Buffer("w", "float32", (20,), "param"), Buffer("v", "float32", (20,), "param"),
            Buffer("y", "float32", (20,), "output")]  # fmt: skip
    w, v = np.arange(20, dtype=np.float32), np.full(20, 3, np.float32)
    prog = Program("block", bufs, [Kernel("k", [body])], params={"w": w, "v": v})
    exe = runtime.load(prog)
    y = np.empty(20, np.float32)
    exe.run({}, {"y": y}, {})
    np.testing.assert_array_equal(y, w * v)
    block = exe._param_block
    assert runtime.address(block) % executable.HUGE_PAGE == 0
    for array in prog.params.values():
        assert np.shares_memory(array, block) and runtime.address(array) % 64 == 0
    assert not np.shares_memory(prog.params["w"], prog.params["v"])
    assert exe.memory({})["params"] == block.nbytes >= 64 + 80


def chain_program(name: str, broken: bool = False) -> Program:
    """Three kernels through two arena temps: a = x + 1; b = a * 3; y = b - x."""
    k = loop_var("k")
    steps = [("plus", "a", Load("x", (k,)) + 1.0), ("times", "b", Load("a", (k,)) * 3.0),
             ("minus", "y", Load("b", (k,)) - Load("x", (k,)))]  # fmt: skip
    if broken:
        steps[2] = ("minus", "y", Load("ghost", (k,)))
    kernels = [
        Kernel(kn, [For(k, 0, N, [Store(out, (k,), v)], "vectorized", 16)]) for kn, out, v in steps
    ]
    slot = 64 * sympy.ceiling(4 * N / 64)
    bufs = [Buffer("x", "float32", (N,), "input"), Buffer("y", "float32", (N,), "output"),
            Buffer("a", "float32", (N,), "temp", 0), Buffer("b", "float32", (N,), "temp", slot)]  # fmt: skip
    return Program(name, bufs, kernels, ("N",), arena_size=2 * slot)


def test_parallel_compile_links_parts(monkeypatch):
    monkeypatch.setattr(objects, "MIN_PARALLEL_WEIGHT", 0)
    prog = chain_program("parts")
    assert len(objects.partition(prog, 2)) == 2
    assert len(objects.compile_objects(prog, jobs=2)) == 2
    monkeypatch.setenv("CONVC_COMPILE_JOBS", "2")
    monkeypatch.setenv("CONVC_CACHE", "0")
    exe = runtime.load(prog)
    x, y = runtime.aligned_empty((37,), np.float32), runtime.aligned_empty((37,), np.float32)
    x[...] = np.arange(37)
    exe.run({"x": x}, {"y": y}, {"N": 37})
    np.testing.assert_array_equal(y, (x + 1) * 3 - x)
    assert exe.memory({"N": 37}) == {"params": 0, "arena": 2 * 64 * 3, "scratch": 0}


def test_parallel_compile_reports_a_failing_part(monkeypatch):
    monkeypatch.setattr(objects, "MIN_PARALLEL_WEIGHT", 0)
    with pytest.raises(CodegenError, match="kernel 'minus'.*ghost"):
        objects.compile_objects(chain_program("broken_parts", broken=True), jobs=3)


def test_unresolved_external_symbol_is_an_error_not_a_crash():
    from llvmlite import ir as llir

    module = llir.Module("needs_missing")
    missing = llir.Function(module, llir.FunctionType(llir.VoidType(), []), "convc_missing_fn")
    fn = llir.Function(module, llir.FunctionType(llir.VoidType(), []), "caller")
    builder = llir.IRBuilder(fn.append_basic_block())
    builder.call(missing, [])
    builder.ret_void()
    mod = runtime_llvm.llvm.parse_assembly(str(module))
    obj = runtime_llvm.emit_object(mod)
    assert "convc_missing_fn" in runtime_llvm.object_symbols(obj)[1]
    with pytest.raises(CodegenError, match="convc_missing_fn"):
        runtime_llvm.LoadedCode([obj])


SERIAL_CHILD = textwrap.dedent(
    """
    import ctypes.util, sys
    import numpy as np
    ctypes.util.find_library = lambda name: None  # as on a machine without libgomp
    sys.path.insert(0, {tests!r})
    from test_runtime import tanh_rows
    from convc import runtime
    assert runtime.parallel_runtime() == "serial"
    exe = runtime.load(tanh_rows("serial"))
    x = np.linspace(-3, 3, 5 * 45, dtype=np.float32).reshape(5, 45)
    y = np.empty_like(x)
    exe.run({{"x": x}}, {{"y": y}}, {{"N": 5}}, threads=2)
    print(float(np.abs(y - np.tanh(x.astype(np.float64)) * 2).max()))
    """
)


def test_parallel_loops_run_serially_without_libgomp():
    code = SERIAL_CHILD.format(tests=os.path.dirname(__file__))
    env = {**os.environ, "CONVC_CACHE": "0"}
    proc = run_python(code, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip()) < 1e-6


def test_concurrent_runs_from_python_threads_are_correct():
    from concurrent.futures import ThreadPoolExecutor

    exe = runtime.load(tanh_rows("concurrent"))
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((6, 45)).astype(np.float32) for _ in range(8)]

    def one(x):
        y = np.empty_like(x)
        exe.run({"x": x}, {"y": y}, {"N": 6})
        return y

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, xs))
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)) * 2, rtol=3e-7)


def test_disk_cache_keeps_the_most_recently_used_entries(monkeypatch, tmp_path):
    from convc.runtime import cache

    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "lru"))
    for k, key in enumerate(["a", "b", "c"]):
        cache.disk_put(key, [bytes([k]) * 10])
        os.utime(tmp_path / "lru" / f"{key}.o", (k, k))  # distinct, increasing times
    assert sorted(p.stem for p in (tmp_path / "lru").glob("*.o")) == ["b", "c"]
    assert cache.disk_get("b") == [bytes([1]) * 10]
    cache.disk_put("d", [b"d"])
    assert sorted(p.stem for p in (tmp_path / "lru").glob("*.o")) == ["b", "d"]


def test_disk_cache_keeps_the_most_recent_entries_within_its_bytes(monkeypatch, tmp_path):
    from convc.runtime import cache

    monkeypatch.setattr(cache, "MAX_BYTES", 2 * (32 + 1000))
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "bytes"))
    for k, key in enumerate(["a", "b", "c"]):
        cache.entry_put(key, cache.PROGRAM, bytes([k]) * 1000)
        os.utime(tmp_path / "bytes" / f"{key}.program", (k, k))
    assert sorted(p.stem for p in (tmp_path / "bytes").glob("*.program")) == ["b", "c"]
    assert cache.entry_get("c", cache.PROGRAM) == bytes([2]) * 1000


def test_shape_expressions_evaluate_exactly_as_sympy_does():
    from convc.runtime.executable import _evaluate

    n, m = symbol("N"), symbol("M")
    exprs = [
        sympy.Max(18816 * n, 64 * sympy.ceiling(21 * n / 4))
        + sympy.Max(64 * sympy.ceiling(15 * n / 2), 64 * sympy.ceiling(147 * n / 2)),
        sympy.Mod(7 * n + 3, 4) * m,
        sympy.floor((n * m - 1) / 3) + sympy.Min(n, m, 5),
        (n + 1) ** 2 - sympy.ceiling(sympy.Rational(5, 3) * m),
        sympy.factorial(n),  # not one of the exact forms: through sympy
    ]
    with sympy.evaluate(False):  # as a program read from disk holds them
        unevaluated = [sympy.Add(e, 0) for e in exprs]
    for e in exprs + unevaluated:
        for values in ({"N": 1, "M": 1}, {"N": 7, "M": 3}, {"N": 64, "M": 13}):
            expected = int(e.subs({n: values["N"], m: values["M"]}))
            assert _evaluate(e, values) == expected, (e, values)
