"""Loop IR: construction helpers, buffers, the printer (golden text) and the program hash."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import sympy

from convc import CodegenError
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
    Prefetch,
    Program,
    Ref,
    Schedule,
    Select,
    Store,
    Unary,
    format_expr,
    format_program,
    format_stmt,
    loop_var,
    program_hash,
    verify_program,
)
from ir.types import symbol

N = symbol("N")
n, oc, oh, ow, ic = map(loop_var, ["n", "oc", "oh", "ow", "ic"])


def conv_like(bias: float = 0.0) -> Program:
    acc = Assign("acc", (), Fma(Load("x", (n, ic, oh, ow)), Load("w", (oc, ic)), Ref("acc")))
    inner = For(ow, 0, 28, [Alloc("acc", "float32", (), Const(bias)), For(ic, 0, 3, [acc]),
                            Store("y", (n, oc, oh, ow), Binary("max", Ref("acc"), Const(0.0)))],
                "vectorized", 16, "masked")  # fmt: skip
    body = For(n, 0, N, [For(oc, 0, 6, [For(oh, 0, 28, [inner])])], "parallel")
    bufs = [Buffer("x", "float32", (N, 3, 28, 28), "input"), Buffer("w", "float32", (6, 3), "param"),
            Buffer("t", "float32", (N, 6), "temp", 0), Buffer("y", "float32", (N, 6, 28, 28), "output")]  # fmt: skip
    return Program("net", bufs, [Kernel("conv1", [body], comment="conv1 + relu1")], ("N",),
                   arena_size=64 * sympy.ceiling(24 * N / 64), params={"w": np.zeros((6, 3), np.float32)})  # fmt: skip


GOLDEN = """\
program net(N)
  buffer x: f32[N,3,28,28] input
  buffer w: f32[6,3] param
  buffer t: f32[N,6] temp @0
  buffer y: f32[N,6,28,28] output
  arena 64*ceiling(3*N/8) bytes
  call conv1

kernel conv1:  # conv1 + relu1
  parallel for n in 0..N:
    for oc in 0..6:
      for oh in 0..28:
        vector(16, tail=masked) for ow in 0..28:
          alloc acc: f32 = 0.0
          for ic in 0..3:
            acc = fma(x[n, ic, oh, ow], w[oc, ic], acc)
          y[n, oc, oh, ow] = max(acc, 0.0)
"""


def test_printer_golden_text():
    assert format_program(conv_like()) == GOLDEN


def test_expression_printing_and_operators():
    x = Load("x", (n + 1,))
    e = Select(Cmp("gt", x, Const(0.0)), x * 2.0 + 1.0, -Unary("exp", x) / Ref("s"))
    assert format_expr(e) == "select(x[n + 1] > 0.0, (x[n + 1] * 2.0) + 1.0, -exp(x[n + 1]) / s)"
    assert format_expr(Cast(Index(oh * 2 - 1), "float32")) == "f32(idx(2*oh - 1))"
    assert format_expr(Const(3, "int32")) == "3:i32" and format_expr(Const(3, "int64")) == "3"
    assert format_expr(Const(3, "float32")) == "3.0" and format_expr(Const(1, "bool")) == "True"
    assert isinstance(2.0 * x, Binary) and (2.0 * x).a == Const(2.0)


def test_statement_printing():
    body = [Let("v", Load("x", (n,))), If(Cmp("lt", Index(n), Const(3, "int64")), Store("y", (n,), Ref("v")),
            Store("y", (n,), 0.0)), For(oc, 0, 4, [Assign("acc", (oc,), Ref("v"))], "unrolled")]  # fmt: skip
    prog = Program("p", [Buffer("x", "float32", (8,), "input"), Buffer("y", "float32", (8,), "output")],
                   [Kernel("k", [Alloc("acc", "float32", (4,)), For(n, 0, 8, body)])])  # fmt: skip
    text = format_program(prog)
    assert "alloc acc: f32[4]\n" in text
    assert "if idx(n) < 3:\n      y[n] = v\n    else:\n      y[n] = 0.0" in text
    assert "unrolled for oc in 0..4:\n      acc[oc] = v" in text
    assert format_stmt(Prefetch("x", (n + 1,))) == ["prefetch x[n + 1]"]


def test_hash_covers_code_but_not_parameter_values():
    base = program_hash(conv_like())
    assert program_hash(conv_like()) == base
    other_values = conv_like()
    other_values.params["w"] = np.ones((6, 3), np.float32)
    assert program_hash(other_values) == base
    assert program_hash(conv_like(bias=1.0)) != base


def test_buffers_and_program_accessors():
    prog = conv_like()
    assert prog.buffer("y").strides() == (6 * 28 * 28, 28 * 28, 28, 1)
    assert prog.buffer("x").nbytes == 4 * 3 * 28 * 28 * N
    assert [b.name for b in prog.external_buffers()] == ["x", "y", "w"]
    assert prog.calls == ("conv1",) and prog.kernel("conv1").comment == "conv1 + relu1"
    assert Load("x", 3).index == (sympy.Integer(3),)


def test_schedule_describe():
    s = Schedule(tiles={"ow": 16}, order=("n", "oc", "ow.o", "ow.i"), vector_axis="ow.i",
                 unroll=("oc.i",), parallel_axis="n", layout={"x": "NCHW16c"})  # fmt: skip
    assert s.describe() == (
        "tiles ow=16 order n,oc,ow.o,ow.i vector ow.i/16 tail=masked unroll oc.i parallel n layout x:NCHW16c"
    )
    assert Schedule().describe() == "default"


def _kernel(*body) -> tuple[Kernel, ...]:
    return (Kernel("conv1", list(body)),)


MISALIGNED_TEMP = Buffer("t", "float32", (N, 6), "temp", 8)
BROKEN = {
    "duplicate buffer": lambda p: replace(p, buffers=(*p.buffers, p.buffers[0])),
    "unknown kernel 'nope'": lambda p: replace(p, calls=("nope",)),
    "not provably 64-aligned": lambda p: replace(
        p, buffers=(*p.buffers[:2], MISALIGNED_TEMP, p.buffers[3])
    ),
    "unknown symbol": lambda p: replace(p, symbols=()),
    "unknown name": lambda p: replace(p, kernels=_kernel(Store("y", (n, 0, 0, 0), 1.0))),
    "rank 2": lambda p: replace(p, kernels=_kernel(For(n, 0, 2, [Store("w", (n,), 1.0)]))),
    "shadows": lambda p: replace(p, kernels=_kernel(For(n, 0, 2, [For(n, 0, 2, [])]))),
    "kind 'wavy'": lambda p: replace(p, kernels=_kernel(For(n, 0, 2, [], "wavy"))),
    "op 'cosh'": lambda p: replace(p, kernels=_kernel(Let("v", Unary("cosh", Const(1.0))))),
    "unknown buffer 'q'": lambda p: replace(p, kernels=_kernel(Prefetch("q", (0,)))),
}


@pytest.mark.parametrize("message", sorted(BROKEN))
def test_verifier_names_the_broken_invariant(message):
    verify_program(conv_like())
    with pytest.raises(CodegenError, match=message):
        verify_program(BROKEN[message](conv_like()))


def test_arena_offsets_must_be_64_aligned_for_every_binding():
    def with_offset(offset):
        return replace(conv_like(), buffers=(*conv_like().buffers[:2],
                       Buffer("t", "float32", (N, 6), "temp", offset), conv_like().buffers[3]))  # fmt: skip

    verify_program(with_offset(sympy.Max(64 * sympy.ceiling(N / 16), 128 * N) + 64))
    with pytest.raises(CodegenError, match="not provably 64-aligned"):
        verify_program(with_offset(64 * N + 32 * sympy.floor(N / 2)))  # 64 at N=1, 96 at N=2
