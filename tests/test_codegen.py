"""Codegen: hand-built loop-IR kernels compiled and compared with NumPy written independently.

Every program compiled here also passes LLVM's verifier (`runtime.llvm.parse_verified`
runs on each compile); vector math is checked against float64 references over the float32
range with the error bounds stated in `convc.codegen.vmath`.
"""

from __future__ import annotations

import math
import os
import textwrap

import numpy as np
import pytest
import sympy
from child_process import run_python

from convc import CodegenError, runtime
from convc.codegen import generate, vmath
from convc.loops import (
    Alloc,
    Assign,
    Binary,
    Buffer,
    Cast,
    Cmp,
    Const,
    Fma,
    For,
    If,
    Index,
    Kernel,
    Let,
    Load,
    Program,
    Ref,
    Select,
    Store,
    Unary,
    format_expr,
    loop_var,
)
from convc.runtime import llvm as rllvm
from ir.types import symbol

N = symbol("N")
i, j, k, n, oc, ic, oh, ow, kh, kw, t = map(
    loop_var, ["i", "j", "k", "n", "oc", "ic", "oh", "ow", "kh", "kw", "t"]
)


@pytest.fixture(autouse=True)
def no_disk_cache(monkeypatch):
    monkeypatch.setenv("CONVC_CACHE", "0")


def run(program: Program, inputs: dict, outputs: dict, symbols: dict, threads: int = 2) -> dict:
    """Compile and run `program`; `outputs` maps names to shapes (dtype from the buffer)."""
    exe = runtime.load(program, threads=threads)
    arrays = {
        name: np.full(shape, -7, dtype=program.buffer(name).dtype)
        for name, shape in outputs.items()
    }
    exe.run(inputs, arrays, symbols)
    return arrays


def unary_program(op: str, width: int, tail: str = "masked", dtype: str = "float32") -> Program:
    kind = "vectorized" if width > 1 else "serial"
    body = For(i, 0, N, [Store("y", (i,), Unary(op, Load("x", (i,))))], kind, width, tail)
    buffers = [Buffer("x", dtype, (N,), "input"), Buffer("y", dtype, (N,), "output")]
    return Program(f"{op}_{width}_{tail}", buffers, [Kernel("apply", [body])], ("N",))


# ---------------------------------------------------------------------------- elementwise


@pytest.mark.parametrize("tail", ["masked", "scalar"])
@pytest.mark.parametrize("size", [1, 15, 16, 17, 40])
def test_vectorized_axpy_with_tails(tail, size):
    body = For(
        i, 0, N, [Store("y", (i,), Load("a", (i,)) * Load("x", (i,)) + 1.0)], "vectorized", 16, tail
    )
    bufs = [
        Buffer(b, "float32", (N,), r) for b, r in (("a", "input"), ("x", "input"), ("y", "output"))
    ]
    prog = Program("axpy", bufs, [Kernel("axpy", [body])], ("N",))
    rng = np.random.default_rng(size)
    a, x = rng.standard_normal((2, size), dtype=np.float32)
    y = run(prog, {"a": a, "x": x}, {"y": (size,)}, {"N": size})["y"]
    np.testing.assert_allclose(y, a.astype(np.float64) * x + 1.0, rtol=1e-6)


def test_select_compare_cast_and_index_values():
    # y[i] = x[i] * 2 if x[i] > 0 else float(i) - x[i]
    value = Select(Cmp("gt", Load("x", (i,)), Const(0.0)), Load("x", (i,)) * 2.0,
                   Cast(Index(i), "float32") - Load("x", (i,)))  # fmt: skip
    body = For(i, 0, N, [Store("y", (i,), value)], "vectorized", 8, "masked")
    bufs = [Buffer("x", "float32", (N,), "input"), Buffer("y", "float32", (N,), "output")]
    x = np.random.default_rng(1).standard_normal(21).astype(np.float32)
    y = run(
        Program("sel", bufs, [Kernel("sel", [body])], ("N",)), {"x": x}, {"y": (21,)}, {"N": 21}
    )
    expected = np.where(x > 0, x * 2, np.arange(21, dtype=np.float32) - x)
    np.testing.assert_array_equal(y["y"], expected)


def test_integer_and_bool_ops():
    # q[i] = floor-mod(a[i], b[i]); m[i] = max(a, b) // 3 (truncating); z[i] = a[i] < b[i]
    a_, b_ = Load("a", (i,)), Load("b", (i,))
    body = For(i, 0, N, [
        Store("q", (i,), Binary("mod", a_, b_)),
        Store("m", (i,), Binary("div", Binary("max", a_, b_), Const(3, "int64"))),
        Store("z", (i,), Cmp("lt", a_, b_)),
    ], "vectorized", 8, "masked")  # fmt: skip
    bufs = [Buffer("a", "int64", (N,), "input"), Buffer("b", "int64", (N,), "input"),
            Buffer("q", "int64", (N,), "output"), Buffer("m", "int64", (N,), "output"),
            Buffer("z", "bool", (N,), "output")]  # fmt: skip
    rng = np.random.default_rng(2)
    a = rng.integers(-50, 50, 19)
    b = rng.integers(1, 9, 19) * rng.choice([-1, 1], 19)
    out = run(Program("ints", bufs, [Kernel("ints", [body])], ("N",)), {"a": a, "b": b},
              {"q": (19,), "m": (19,), "z": (19,)}, {"N": 19})  # fmt: skip
    np.testing.assert_array_equal(out["q"], np.mod(a, b))
    np.testing.assert_array_equal(out["m"], np.trunc(np.maximum(a, b) / 3).astype(np.int64))
    np.testing.assert_array_equal(out["z"], a < b)


@pytest.mark.parametrize("width", [1, 16])
def test_simple_float_functions(width):
    x = np.array(
        [-2.5, -1.0, -0.0, 0.0, 0.3, 1.5, 2.5, 1e30, np.inf, -np.inf, np.nan] * 2, np.float32
    )
    for op, ref in (
        ("sqrt", np.sqrt),
        ("abs", np.abs),
        ("floor", np.floor),
        ("ceil", np.ceil),
        ("neg", np.negative),
    ):
        with np.errstate(invalid="ignore"):
            expected = ref(x)
        y = run(unary_program(op, width), {"x": x}, {"y": x.shape}, {"N": x.size})["y"]
        np.testing.assert_array_equal(y, expected, err_msg=op)


def test_pow_max_min_propagate_nan():
    a_, b_ = Load("a", (i,)), Load("b", (i,))
    body = For(i, 0, N, [Store("p", (i,), Binary("pow", a_, b_)), Store("hi", (i,), Binary("max", a_, b_)),
                         Store("lo", (i,), Binary("min", a_, b_))], "vectorized", 16, "masked")  # fmt: skip
    names = (("a", "input"), ("b", "input"), ("p", "output"), ("hi", "output"), ("lo", "output"))
    prog = Program(
        "pmm", [Buffer(nm, "float32", (N,), r) for nm, r in names], [Kernel("pmm", [body])], ("N",)
    )
    a = np.array([2.0, 0.5, np.nan, 3.0, 1.0], np.float32)
    b = np.array([3.0, -1.0, 1.0, np.nan, 0.0], np.float32)
    out = run(prog, {"a": a, "b": b}, {"p": (5,), "hi": (5,), "lo": (5,)}, {"N": 5})
    np.testing.assert_allclose(out["p"], np.power(a, b), rtol=1e-6)
    np.testing.assert_array_equal(out["hi"], np.maximum(a, b))
    np.testing.assert_array_equal(out["lo"], np.minimum(a, b))


# ---------------------------------------------------------------------------- vector math

BOUNDS = {"exp": 1.5e-7, "log": 1.2e-7, "tanh": 3.3e-7, "sigmoid": 2.5e-7, "erf": 3.3e-7}
TINY = 1.1754943508222875e-38


def _math_inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, TINY, 88.72283, 88.7229, -87.33654,
             -88.72, -103.97, -103.98, -104.0, 9.01, 0.625, -0.625, 1.0, -1.0, 3.92, 4.0, -4.0, 1e-8]  # fmt: skip
    grids = [np.linspace(-110, 110, 100_001), np.linspace(-5, 5, 50_001)]
    grids.append(np.linspace(-9.5, 9.5, 200_001))  # tanh's widest errors, towards +-1
    rest = np.concatenate([np.array(edges), *grids]).astype(np.float32)
    return np.concatenate([bits, rest])


def _reference(op: str, x: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):  # random bit patterns include signalling NaNs
        x64 = x.astype(np.float64)
        if op == "sigmoid":
            return 1.0 / (1.0 + np.exp(-x64))
        if op == "erf":
            return np.frompyfunc(math.erf, 1, 1)(x64).astype(np.float64)
        return {"exp": np.exp, "log": np.log, "tanh": np.tanh}[op](x64)


@pytest.fixture(params=["host", "without AVX-512"])
def math_target(request, monkeypatch):
    """This machine, and this machine compiling as if it had no AVX-512 (exp then builds
    its power of two in the exponent bits instead of ``vscalefps``): both paths of
    `vmath._exp` run wherever the tests do. The feature string is part of the cache key,
    so the two never share code."""
    if request.param == "host":
        return rllvm.has_scalef()
    triple, cpu, features = rllvm.host()
    narrowed = features.replace("+avx512", "-avx512")
    monkeypatch.setattr(rllvm, "host", lambda: (triple, cpu, narrowed))
    assert not rllvm.has_scalef()
    return False


@pytest.mark.parametrize("width", [32, 16, 1])
@pytest.mark.parametrize("op", sorted(BOUNDS))
def test_vector_math_error_bounds(op, width, math_target):
    x = _math_inputs()
    y = run(unary_program(op, width), {"x": x}, {"y": x.shape}, {"N": x.size})["y"]
    ref = _reference(op, x)
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref32), err_msg="NaN pattern")
    special = np.isinf(ref32)
    np.testing.assert_array_equal(y[special], ref32[special], err_msg="infinities")
    normal = np.isfinite(ref32) & (np.abs(ref) >= TINY)
    rel = np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])
    worst = np.argmax(rel)
    assert rel[worst] <= BOUNDS[op], f"{op}({x[normal][worst]!r}) rel error {rel[worst]:.3g}"
    tiny = np.isfinite(ref) & (np.abs(ref) < TINY)
    limit = 2e-45 if op != "sigmoid" else TINY  # sigmoid flushes below -88.72 (documented)
    assert np.all(np.abs(y[tiny] - ref[tiny]) <= limit)


@pytest.mark.parametrize("op", ["exp", "sigmoid"])
def test_vector_math_short_path_matches_the_whole_bit_for_bit(op, math_target):
    """Without ``vscalefps``, exp and sigmoid run a vector whose lanes all give normal
    results by a short path (`vmath._when_normal`), any other vector by the whole
    computation. The same in-range values, alone and beside an out-of-range lane (200.0 in
    each vector's first lane, which sends it down the whole computation), agree bitwise."""
    low, high = vmath.NORMAL_EXP
    values = np.linspace(low, high, 16 * 20_000).astype(np.float32)
    if op == "sigmoid":
        values = -values  # sigmoid takes the short path on -x
    mixed = values.copy()
    mixed[::16] = 200.0
    program = unary_program(op, 16)
    short = run(program, {"x": values}, {"y": values.shape}, {"N": values.size})["y"]
    whole = run(program, {"x": mixed}, {"y": mixed.shape}, {"N": mixed.size})["y"]
    kept = np.arange(values.size) % 16 != 0
    np.testing.assert_array_equal(short[kept].view(np.uint32), whole[kept].view(np.uint32))


@pytest.mark.slow
@pytest.mark.parametrize("op, limit", [("tanh", 9.5), ("erf", 4.0)])
def test_rational_math_bound_holds_at_every_float32(op, limit):
    """tanh and erf are odd rational functions (exactly odd: P and Q see x^2), so every
    positive normal float32 below the saturation point covers them all; past it both
    return +-1 (the default test checks those, and the tiny values)."""
    sample = np.geomspace(1e-30, limit, 20_000)
    exact = np.frompyfunc(math.erf, 1, 1)(sample).astype(np.float64)
    np.testing.assert_allclose(_erf(sample), exact, rtol=1e-14)  # the reference itself
    low, high = np.array([TINY, limit], np.float32).view(np.uint32)
    program, step, worst = unary_program(op, 16), 1 << 26, 0.0
    for start in range(int(low), int(high), step):
        x = np.arange(start, min(start + step, int(high)), dtype=np.uint32).view(np.float32)
        y = run(program, {"x": x}, {"y": x.shape}, {"N": x.size})["y"]
        ref = _reference(op, x) if op == "tanh" else _erf(x.astype(np.float64))
        worst = max(worst, float(np.max(np.abs(y - ref) / np.abs(ref))))
    assert worst <= BOUNDS[op]


def _erf(x64: np.ndarray) -> np.ndarray:
    """erf of positive float64 values, many at once: its Maclaurin series below 0.5, two
    terms below 2**-12 (the third is below 1e-15 of the sum there) and 18 from there (the
    last below 1e-17), and ``math.erf`` one by one above (25M float32 values there,
    against a billion below)."""
    out = np.empty_like(x64)
    tiny, small = x64 < 2.0**-12, (x64 >= 2.0**-12) & (x64 < 0.5)
    out[tiny] = x64[tiny] * (1 - x64[tiny] ** 2 / 3)
    x, t = x64[small], x64[small] ** 2
    term, total = x.copy(), x.copy()
    for n in range(1, 18):
        term *= -t / n
        total += term / (2 * n + 1)
    out[small] = total
    out[tiny | small] *= 2 / math.sqrt(math.pi)
    large = ~(tiny | small)
    out[large] = np.frompyfunc(math.erf, 1, 1)(x64[large]).astype(np.float64)
    return out


def test_float64_math_uses_libm():
    x = np.array([-3.0, -0.5, 0.0, 0.7, 2.0], np.float64)
    for op in ("exp", "tanh", "erf", "sigmoid"):
        y = run(unary_program(op, 4, dtype="float64"), {"x": x}, {"y": (5,)}, {"N": 5})["y"]
        expected = _reference(op, x)
        np.testing.assert_allclose(y, expected, rtol=1e-14, err_msg=op)


# ---------------------------------------------------------------------------- loop nests


def conv_program(channels_in: int, channels_out: int, size: int, tail: str) -> Program:
    """3x3 convolution, stride 1, zero padding 1: rows padded with If (invariant in the
    vector variable ow), columns with a clamped gather index and a Select."""
    ih, iw = oh + kh - 1, ow + kw - 1
    x_clamped = Load("x", (n, ic, ih, sympy.Min(sympy.Max(iw, 0), size - 1)))
    inside = Binary(
        "and", Cmp("ge", Index(iw), Const(0, "int64")), Cmp("lt", Index(iw), Const(size, "int64"))
    )
    tap = Assign(
        "acc",
        (),
        Fma(Select(inside, x_clamped, Const(0.0)), Load("w", (oc, ic, kh, kw)), Ref("acc")),
    )
    row_ok = Binary(
        "and", Cmp("ge", Index(ih), Const(0, "int64")), Cmp("lt", Index(ih), Const(size, "int64"))
    )
    taps = For(ic, 0, channels_in, [For(kh, 0, 3, [If(row_ok, For(kw, 0, 3, [tap], "unrolled"))])])
    inner = For(ow, 0, size, [Alloc("acc", "float32", (), Load("b", (oc,))), taps,
                              Store("y", (n, oc, oh, ow), Binary("max", Ref("acc"), Const(0.0)))],
                "vectorized", 16, tail)  # fmt: skip
    body = For(n, 0, N, [For(oc, 0, channels_out, [For(oh, 0, size, [inner])])], "parallel")
    bufs = [Buffer("x", "float32", (N, channels_in, size, size), "input"),
            Buffer("w", "float32", (channels_out, channels_in, 3, 3), "param"),
            Buffer("b", "float32", (channels_out,), "param"),
            Buffer("y", "float32", (N, channels_out, size, size), "output")]  # fmt: skip
    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal((channels_out, channels_in, 3, 3), dtype=np.float32),
              "b": rng.standard_normal(channels_out, dtype=np.float32)}  # fmt: skip
    return Program(
        "conv", bufs, [Kernel("conv3x3", [body], comment="conv + relu")], ("N",), params=params
    )


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    size = x.shape[2]
    out = np.zeros((x.shape[0], w.shape[0], size, size))
    for dy in range(3):
        for dx in range(3):
            patch = padded[:, :, dy : dy + size, dx : dx + size]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, dy, dx])
    return np.maximum(out + b[None, :, None, None], 0)


@pytest.mark.parametrize("tail", ["masked", "scalar"])
def test_small_conv_matches_numpy(tail):
    prog = conv_program(3, 5, 19, tail)
    x = np.random.default_rng(4).standard_normal((2, 3, 19, 19), dtype=np.float32)
    y = run(prog, {"x": x}, {"y": (2, 5, 19, 19)}, {"N": 2})["y"]
    expected = conv_reference(x, prog.params["w"], prog.params["b"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tail", ["masked", "scalar"])
def test_vectorized_reductions(tail):
    # s[r] = sum_c x[r, c];  m[r] = max_c x[r, c]  (vector partials, lanes combined at the end)
    row = [Alloc("s", "float32", (), 0.0), Alloc("m", "float32", (), float("-inf")),
           For(j, 0, 37, [Assign("s", (), Ref("s") + Load("x", (i, j))),
                          Assign("m", (), Binary("max", Ref("m"), Load("x", (i, j))))], "vectorized", 16, tail),
           Store("sum", (i,), Ref("s")), Store("max", (i,), Ref("m"))]  # fmt: skip
    bufs = [Buffer("x", "float32", (N, 37), "input"), Buffer("sum", "float32", (N,), "output"),
            Buffer("max", "float32", (N,), "output")]  # fmt: skip
    prog = Program("reduce", bufs, [Kernel("reduce", [For(i, 0, N, row)])], ("N",))
    x = np.random.default_rng(5).standard_normal((4, 37), dtype=np.float32)
    out = run(prog, {"x": x}, {"sum": (4,), "max": (4,)}, {"N": 4})
    np.testing.assert_allclose(out["sum"], x.astype(np.float64).sum(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["max"], x.max(1))


def test_register_blocked_micro_kernel():
    # c[m, 16*jb + jj] = sum_k a[m, k] * bp[jb, k, jj]: vector over jj, 4 rows unrolled in registers
    m_, jb, jj = loop_var("m"), loop_var("jb"), loop_var("jj")
    fma = Assign(
        "acc", (t,), Fma(Load("a", (4 * m_ + t, k)), Load("bp", (jb, k, jj)), Ref("acc", (t,)))
    )
    tile = For(jj, 0, 16, [Alloc("acc", "float32", (4,), 0.0), For(k, 0, 24, [For(t, 0, 4, [fma], "unrolled")]),
                           For(t, 0, 4, [Store("c", (4 * m_ + t, 16 * jb + jj), Ref("acc", (t,)))], "unrolled")],
               "vectorized", 16)  # fmt: skip
    body = For(m_, 0, 3, [For(jb, 0, 2, [tile])], "parallel")
    bufs = [Buffer("a", "float32", (12, 24), "input"), Buffer("bp", "float32", (2, 24, 16), "input"),
            Buffer("c", "float32", (12, 32), "output")]  # fmt: skip
    rng = np.random.default_rng(6)
    a = rng.standard_normal((12, 24), dtype=np.float32)
    b = rng.standard_normal((24, 32), dtype=np.float32)
    packed = np.ascontiguousarray(b.reshape(24, 2, 16).transpose(1, 0, 2))
    c = run(
        Program("gemm", bufs, [Kernel("gemm", [body])]), {"a": a, "bp": packed}, {"c": (12, 32)}, {}
    )["c"]
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_strided_and_nonaffine_gathers_and_scatters():
    # y[2*i] = x[3*i + 1] + x[floor(i/2)] + x[Mod(i, 3)];  y[2*i + 1] = let-bound i*0.5
    gather = (
        Load("x", (3 * i + 1,)) + Load("x", (sympy.floor(i / 2),)) + Load("x", (sympy.Mod(i, 3),))
    )
    body = For(i, 0, N, [Store("y", (2 * i,), gather), Let("half", Cast(Index(i), "float32") * 0.5),
                         Store("y", (2 * i + 1,), Ref("half"))], "vectorized", 16, "masked")  # fmt: skip
    bufs = [
        Buffer("x", "float32", (3 * N + 1,), "input"),
        Buffer("y", "float32", (2 * N,), "output"),
    ]
    size = 21
    x = np.random.default_rng(7).standard_normal(3 * size + 1).astype(np.float32)
    y = run(
        Program("gather", bufs, [Kernel("gather", [body])], ("N",)),
        {"x": x},
        {"y": (2 * size,)},
        {"N": size},
    )["y"]
    idx = np.arange(size)
    np.testing.assert_allclose(y[0::2], x[3 * idx + 1] + x[idx // 2] + x[idx % 3], rtol=1e-6)
    np.testing.assert_array_equal(y[1::2], idx * 0.5)


def test_temps_in_the_arena_and_call_order():
    # k1: t = x * 2 (temp at a symbolic offset); k2: y = t + x
    k1 = Kernel(
        "double", [For(i, 0, N, [Store("t", (i,), Load("x", (i,)) * 2.0)], "vectorized", 16)]
    )
    k2 = Kernel(
        "add",
        [For(i, 0, N, [Store("y", (i,), Load("t", (i,)) + Load("x", (i,)))], "vectorized", 16)],
    )
    bufs = [Buffer("x", "float32", (N,), "input"), Buffer("y", "float32", (N,), "output"),
            Buffer("pad", "float32", (N,), "temp", 0), Buffer("t", "float32", (N,), "temp", 64 * sympy.ceiling(4 * N / 64))]  # fmt: skip
    arena = 2 * 64 * sympy.ceiling(4 * N / 64)
    prog = Program("two", bufs, [k1, k2], ("N",), arena_size=arena)
    x = np.arange(23, dtype=np.float32)
    y = run(prog, {"x": x}, {"y": (23,)}, {"N": 23})["y"]
    np.testing.assert_array_equal(y, 3 * x)


# ---------------------------------------------------------------------------- verification and errors


def test_every_emitted_module_verifies():
    programs = [unary_program(op, w) for op in BOUNDS for w in (1, 16)] + [
        conv_program(2, 3, 7, "masked")
    ]
    for prog in programs:
        gen = generate(prog)
        mod = rllvm.parse_verified(gen, prog)  # raises CodegenError on any verifier failure
        assert mod.get_function("convc_main") is not None


def _bad(body, bufs=None) -> Program:
    bufs = bufs or [Buffer("x", "float32", (N,), "input"), Buffer("y", "float32", (N,), "output")]
    return Program("bad", bufs, [Kernel("fine", [For(i, 0, N, [Store("y", (i,), Load("x", (i,)))])]),
                                 Kernel("broken", body)], ("N",))  # fmt: skip


@pytest.mark.parametrize(
    "body, message",
    [
        ([For(i, 0, N, [Store("y", (i,), Load("nope", (i,)))])], "nope"),
        ([For(i, 0, N, [Store("y", (0,), Load("x", (i,)))], "vectorized", 16)], "does not depend"),
        ([For(i, 0, N, [Store("y", (i, 0), Load("x", (i,)))])], "rank"),
        ([For(i, 0, N, [Store("y", (i,), Load("x", (i,)))], "unrolled")], "constant extent"),
        ([For(i, 0, N, [Store("y", (i / 2,), Load("x", (i,)))])], "not an integer"),
        ([For(i, 0, N, [Store("y", (i,), Ref("ghost"))])], "unknown local"),
        ([For(i, 0, N, [Store("y", (i,), Cast(Load("x", (i,)), "int64"))])], "expected a float32"),
        ([For(i, 0, N, [Store("y", (i,), Load("x", (i,)))], "vectorized", 12)], "bad width"),
        (
            [For(i, 0, N, [For(j, 0, i, [Store("y", (i,), Load("x", (j,)))])], "vectorized", 16)],
            "depend on the vector variable",
        ),
    ],
)
def test_codegen_error_names_the_kernel(body, message):
    with pytest.raises(CodegenError, match=f"kernel 'broken'.*{message}"):
        runtime.load(_bad(body))


def test_verifier_failure_raises_codegen_error_in_a_live_process():
    """Invalid IR (a block without a terminator, injected after codegen) must raise a
    CodegenError naming the kernel instead of aborting: run it in a child process so an
    abort would show up as a failed exit code rather than killing the test runner."""
    script = textwrap.dedent(
        """
        import convc.runtime.llvm as rl, convc.codegen as cg
        from convc import CodegenError, runtime
        from convc.loops import Buffer, For, Kernel, Load, Program, Store, loop_var
        real = cg.generate
        def broken(program, kernels=None, entry=True, **options):
            gen = real(program, kernels, entry, **options)
            fn = gen.module.globals.get("kernel.broken")
            if fn is not None:
                fn.append_basic_block("dangling")
            return gen
        import convc.runtime.objects as ob
        rl.generate = ob.generate = broken
        i = loop_var("i")
        body = [For(i, 0, 8, [Store("y", (i,), Load("x", (i,)))])]
        bufs = [Buffer("x", "float32", (8,), "input"), Buffer("y", "float32", (8,), "output")]
        prog = Program("p", bufs, [Kernel("ok", body), Kernel("broken", body)])
        try:
            runtime.load(prog)
        except CodegenError as err:
            assert "'broken'" in str(err) and "'ok'" not in str(err), str(err)
            print("raised")
        """
    )
    env = {**os.environ, "CONVC_CACHE": "0"}
    proc = run_python(script, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "raised"


# ---------------------------------------------------------------------------- speed


def blocked_conv3x3(channels: int, size: int, row_block: int) -> Program:
    """3x3 convolution on NCHW16c activations (input pre-padded) and OIHW16i16o weights:
    a row of `row_block` output columns x 16 output channels held in registers."""
    ocb, owo, co, icb, ci, r = map(loop_var, ["ocb", "owo", "co", "icb", "ci", "r"])
    x = Load("x", (icb, oh + kh, owo * row_block + r + kw, ci))
    fma = Assign("acc", (r,), Fma(x, Load("w", (ocb, icb, kh, kw, ci, co)), Ref("acc", (r,))))
    taps = For(
        kh, 0, 3, [For(kw, 0, 3, [For(ci, 0, 16, [For(r, 0, row_block, [fma], "unrolled")])])]
    )
    store = Store("y", (ocb, oh, owo * row_block + r, co), Ref("acc", (r,)))
    tile = For(co, 0, 16, [Alloc("acc", "float32", (row_block,), 0.0), For(icb, 0, channels // 16, [taps]),
                           For(r, 0, row_block, [store], "unrolled")], "vectorized", 16)  # fmt: skip
    blocks = channels // 16
    body = For(
        oh, 0, size, [For(ocb, 0, blocks, [For(owo, 0, size // row_block, [tile])])], "parallel"
    )
    bufs = [Buffer("x", "float32", (blocks, size + 2, size + 2, 16), "input"),
            Buffer("w", "float32", (blocks, blocks, 3, 3, 16, 16), "input"),
            Buffer("y", "float32", (blocks, size, size, 16), "output")]  # fmt: skip
    return Program(f"blocked_conv{channels}_{size}", bufs, [Kernel("conv", [body])])


@pytest.mark.slow
def test_blocked_conv_speed_and_result():
    """ResNet-18's 3x3 64->64 @56 layer (batch 1) as a register-blocked loop nest of
    `<16 x float>` FMAs; prints GFLOP/s (2 * MACs / time, best and median of 30) for 1 and 2
    threads, for information only: speed is measured by benchmarks, never asserted."""
    import time

    channels, size = 64, 56
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, channels, size, size), dtype=np.float32)
    w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32)
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    xb = runtime.aligned_empty((4, size + 2, size + 2, 16), np.float32)
    xb[...] = padded.reshape(4, 16, size + 2, size + 2).transpose(0, 2, 3, 1)
    wb = runtime.aligned_empty((4, 4, 3, 3, 16, 16), np.float32)
    wb[...] = w.reshape(4, 16, 4, 16, 3, 3).transpose(0, 2, 4, 5, 3, 1)
    y = runtime.aligned_empty((4, size, size, 16), np.float32)
    program = blocked_conv3x3(channels, size, 14)
    assert "llvm.fma.v16f32" in str(generate(program).module), "the block is not vectorised"
    exe = runtime.load(program)
    exe.run({"x": xb, "w": wb}, {"y": y}, {})
    plain = sum(
        np.einsum(
            "chw,oc->ohw", padded[:, a : a + size, b : b + size].astype(np.float64), w[:, :, a, b]
        )
        for a in range(3)
        for b in range(3)
    )
    np.testing.assert_allclose(
        y.transpose(0, 3, 1, 2).reshape(channels, size, size), plain, rtol=1e-4, atol=1e-3
    )
    flop = 2 * channels * channels * 9 * size * size
    for threads in (1, 2):
        times = []
        for _ in range(30):
            start = time.perf_counter()
            exe.run({"x": xb, "w": wb}, {"y": y}, {}, threads=threads)
            times.append(time.perf_counter() - start)
        best, median = flop / min(times) / 1e9, flop / float(np.median(times)) / 1e9
        print(
            f"blocked conv 3x3 64->64 @56, {threads} thread(s): best {best:.0f}, median {median:.0f} GFLOP/s"
        )


def test_parallel_body_captures_lets_and_outer_loop_variables():
    # for r: let s = scale[0] * r;  parallel for c: y[r, c] = x[r, c] * s
    r, c = loop_var("r"), loop_var("c")
    inner = For(c, 0, N, [Store("y", (r, c), Load("x", (r, c)) * Ref("s"))], "parallel")
    body = For(r, 0, 3, [Let("s", Load("scale", (0,)) * Cast(Index(r), "float32")), inner])
    bufs = [Buffer("x", "float32", (3, N), "input"), Buffer("scale", "float32", (1,), "input"),
            Buffer("y", "float32", (3, N), "output")]  # fmt: skip
    x = np.random.default_rng(9).standard_normal((3, 7)).astype(np.float32)
    scale = np.array([1.5], np.float32)
    prog = Program("capture", bufs, [Kernel("capture", [body])], ("N",))
    y = run(prog, {"x": x, "scale": scale}, {"y": (3, 7)}, {"N": 7})["y"]
    np.testing.assert_allclose(y, x * (1.5 * np.arange(3, dtype=np.float32))[:, None], rtol=1e-6)


def test_lane_varying_if_guards_padding_and_splits_lanes():
    # 3x3 conv, padding 1, columns guarded by an If on the vector variable ow (no clamping):
    # the masked loads never touch x[..., -1] or x[..., size]; and an If/else storing per lane.
    size = 19
    ih, iw = oh + kh - 1, ow + kw - 1
    inside = Binary(
        "and", Cmp("ge", Index(iw), Const(0, "int64")), Cmp("lt", Index(iw), Const(size, "int64"))
    )
    tap = If(
        inside,
        Assign("acc", (), Fma(Load("x", (n, ic, ih, iw)), Load("w", (oc, ic, kh, kw)), Ref("acc"))),
    )
    row_ok = Binary(
        "and", Cmp("ge", Index(ih), Const(0, "int64")), Cmp("lt", Index(ih), Const(size, "int64"))
    )
    taps = For(ic, 0, 2, [For(kh, 0, 3, [If(row_ok, For(kw, 0, 3, [tap]))])])
    sign = If(Cmp("gt", Ref("acc"), Const(0.0)), Store("y", (n, oc, oh, ow), Ref("acc")),
              Store("y", (n, oc, oh, ow), Ref("acc") * -2.0))  # fmt: skip
    inner = For(
        ow, 0, size, [Alloc("acc", "float32", (), 0.0), taps, sign], "vectorized", 16, "masked"
    )
    body = For(n, 0, N, [For(oc, 0, 3, [For(oh, 0, size, [inner])])])
    bufs = [Buffer("x", "float32", (N, 2, size, size), "input"), Buffer("w", "float32", (3, 2, 3, 3), "input"),
            Buffer("y", "float32", (N, 3, size, size), "output")]  # fmt: skip
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 2, size, size), dtype=np.float32)
    w = rng.standard_normal((3, 2, 3, 3), dtype=np.float32)
    prog = Program("predicated", bufs, [Kernel("predicated", [body])], ("N",))
    y = run(prog, {"x": x, "w": w}, {"y": (2, 3, size, size)}, {"N": 2})["y"]
    # conv_reference applies relu; relu(z) - relu(-z) recovers the plain convolution z
    plain = conv_reference(x, w, np.zeros(3, np.float32)) - conv_reference(
        -x, w, np.zeros(3, np.float32)
    )
    np.testing.assert_allclose(y, np.where(plain > 0, plain, -2 * plain), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- random expressions

LEAVES = ("a", "b", "c")
BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}
UNARY = {
    "neg": np.negative,
    "abs": np.abs,
    "tanh": np.tanh,
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
}


def _tree(draw, depth: int):
    """A random expression: (loop-IR value, NumPy float64 evaluator, magnitude bound, op count)."""
    from hypothesis import strategies as st

    kind = draw(
        st.sampled_from(["leaf", "const"] + ["unary", "binary", "fma", "select"] * (depth > 0))
    )
    if kind == "leaf":
        name = draw(st.sampled_from(LEAVES))
        return Load(name, (i,)), lambda env: env[name], lambda env: np.abs(env[name]), 0
    if kind == "const":
        value = draw(st.sampled_from([-1.5, 0.0, 0.25, 2.0]))
        return Const(value), lambda env: value, lambda env: abs(value), 0
    parts = [
        _tree(draw, depth - 1)
        for _ in range({"unary": 1, "binary": 2, "fma": 3, "select": 4}[kind])
    ]
    (e0, f0, m0, n0), rest = parts[0], parts[1:]
    count = n0 + sum(p[3] for p in rest) + 1
    if kind == "unary":
        op = draw(st.sampled_from(sorted(UNARY)))
        mag = (lambda env: np.maximum(m0(env), 1.0)) if op in ("tanh", "sigmoid") else m0
        return Unary(op, e0), lambda env: UNARY[op](f0(env)), mag, count
    (e1, f1, m1, _) = rest[0]
    if kind == "binary":
        op = draw(st.sampled_from(sorted(BINARY)))
        mag = (lambda env: m0(env) * m1(env)) if op == "mul" else (lambda env: m0(env) + m1(env))
        return Binary(op, e0, e1), lambda env: BINARY[op](f0(env), f1(env)), mag, count
    (e2, f2, m2, _) = rest[1]
    if kind == "fma":
        return (Fma(e0, e1, e2), lambda env: f0(env) * f1(env) + f2(env),
                lambda env: m0(env) * m1(env) + m2(env), count)  # fmt: skip
    e3, f3, m3, _ = rest[2]
    return (Select(Cmp("lt", e0, e1), e2, e3), lambda env: np.where(f0(env) < f1(env), f2(env), f3(env)),
            lambda env: np.maximum(m2(env), m3(env)), count)  # fmt: skip


def test_random_expressions_match_numpy():
    """Random value trees, vectorized with a masked tail, against NumPy in float64: the error
    may reach one float32 rounding (plus the vmath bound) per op, relative to the magnitude
    of the operands (so cancellation is allowed its absolute error, no more)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rng = np.random.default_rng(11)
    env = {name: rng.uniform(-2, 2, 37).astype(np.float32) for name in LEAVES}
    env64 = {k: v.astype(np.float64) for k, v in env.items()}

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data):
        expr, reference, magnitude, ops = _tree(data.draw, 3)
        body = For(i, 0, N, [Store("y", (i,), expr)], "vectorized", 16, "masked")
        bufs = [Buffer(nm, "float32", (N,), "input") for nm in LEAVES] + [
            Buffer("y", "float32", (N,), "output")
        ]
        y = run(
            Program("random", bufs, [Kernel("random", [body])], ("N",)),
            env,
            {"y": (37,)},
            {"N": 37},
        )["y"]
        expected = np.broadcast_to(reference(env64), (37,))
        bound = (ops + 1) * 3e-7 * np.broadcast_to(magnitude(env64), (37,)) + 1e-30
        worst = np.argmax(np.abs(y - expected) - bound)
        assert abs(y[worst] - expected[worst]) <= bound[worst], (
            format_expr(expr),
            y[worst],
            expected[worst],
        )

    check()


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_nested_parallel_loops_are_collapsed(batch):
    # parallel for n: parallel for c: y[n, c, :] = x[n, c, :] + c  (one region over n*c)
    c = loop_var("c")
    inner = For(
        i,
        0,
        20,
        [Store("y", (n, c, i), Load("x", (n, c, i)) + Cast(Index(c), "float32"))],
        "vectorized",
        16,
    )
    body = For(n, 0, N, [For(c, 0, 5, [inner], "parallel")], "parallel")
    bufs = [
        Buffer("x", "float32", (N, 5, 20), "input"),
        Buffer("y", "float32", (N, 5, 20), "output"),
    ]
    prog = Program("collapse", bufs, [Kernel("collapse", [body])], ("N",))
    text = runtime.load(prog).source("llvm")
    assert text.count('call void @"GOMP_parallel"') == 1 and "kernel.collapse.par1" not in text
    x = np.random.default_rng(12).standard_normal((batch, 5, 20)).astype(np.float32)
    for threads in (1, 2):
        y = run(prog, {"x": x}, {"y": (batch, 5, 20)}, {"N": batch}, threads=threads)["y"]
        np.testing.assert_array_equal(y, x + np.arange(5, dtype=np.float32)[None, :, None])


@pytest.mark.parametrize("lanes_in_w", [16, 11])
def test_a_masked_tails_accumulators_and_whole_rows_need_no_masks(lanes_in_w):
    # 11 output channels in one masked 16-lane vector, as a channel tile's last block: the
    # accumulator allocated in the tail is updated without a blend (its dead lanes reach
    # only the masked store), and the weights' row of 16 (packed, one vector long) loads
    # unmasked; a row of 11 stays a masked load; both compute y = x @ w
    depth, size = 5, 11
    body = For(i, 0, N, [For(oc, 0, size, [
        Alloc("acc", "float32", (), 0.0),
        For(ic, 0, depth, [Assign("acc", (), Fma(Load("x", (i, ic)), Load("w", (ic, oc)), Ref("acc")))]),
        Store("y", (i, oc), Ref("acc")),
    ], "vectorized", 16, "masked")])  # fmt: skip
    bufs = [Buffer("x", "float32", (N, depth), "input"),
            Buffer("w", "float32", (depth, lanes_in_w), "input"),
            Buffer("y", "float32", (N, size), "output")]  # fmt: skip
    prog = Program("tail", bufs, [Kernel("tail", [body])], ("N",))
    text = str(generate(prog).module)
    assert "select <16 x i1>" not in text  # no blend of lanes
    assert ("llvm.masked.load" in text) == (lanes_in_w == size)
    assert "llvm.masked.store" in text
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, depth), dtype=np.float32)
    w = rng.standard_normal((depth, lanes_in_w), dtype=np.float32)
    y = run(prog, {"x": x, "w": w}, {"y": (3, size)}, {"N": 3})["y"]
    np.testing.assert_allclose(y, x @ w[:, :size], rtol=1e-5, atol=1e-6)
