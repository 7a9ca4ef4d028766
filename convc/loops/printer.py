"""Text form of the loop IR (`convc show --stage loops`).

Input: a `Program` or `Kernel`; output: deterministic text (names from the program, sympy's
printer for indices). The text is complete (every field that affects code appears), so
`program_hash` of the text keys the code caches. Example::

    kernel conv1:  # conv1 + relu1
      parallel for n in 0..N:
        for oc in 0..6:
          for oh in 0..28:
            vector(16, tail=masked) for ow in 0..28:
              alloc acc: f32 = 0.0
              for ic in 0..1: ...
                acc = fma(x[n, ic, oh + kh, ow + kw], w[oc, ic, kh, kw], acc)
              y[n, oc, oh, ow] = max(acc + b[oc], 0.0)
"""

from __future__ import annotations

import functools
import hashlib

import sympy

from . import ir

SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}
INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%", "and": "&", "or": "|"}
CMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


@functools.lru_cache(maxsize=1 << 14)
def _idx(e: sympy.Expr) -> str:
    """sympy's text of an index expression, remembered: a program repeats the same few
    (its loop variables' combinations) thousands of times, and printing is sympy's slowest
    path (ResNet-18's program: 7,600 prints, 0.33 s of a 0.9 s compile from the caches)."""
    return sympy.sstr(e)


def _indices(index) -> str:
    return "[" + ", ".join(_idx(i) for i in index) + "]" if index else ""


def format_expr(e: ir.Expr) -> str:
    """One value expression, fully parenthesised where it nests."""
    if isinstance(e, ir.Const):
        return _const(e)
    if isinstance(e, ir.Index):
        return f"idx({_idx(e.expr)})"
    if isinstance(e, (ir.Load, ir.Ref)):
        name = e.buffer if isinstance(e, ir.Load) else e.name
        return name + _indices(e.index)
    if isinstance(e, ir.Unary):
        return f"-{_paren(e.x)}" if e.op == "neg" else f"{e.op}({format_expr(e.x)})"
    if isinstance(e, ir.Binary):
        if e.op in INFIX:
            return f"{_paren(e.a)} {INFIX[e.op]} {_paren(e.b)}"
        return f"{e.op}({format_expr(e.a)}, {format_expr(e.b)})"
    if isinstance(e, ir.Fma):
        return f"fma({format_expr(e.a)}, {format_expr(e.b)}, {format_expr(e.c)})"
    if isinstance(e, ir.Cmp):
        return f"{_paren(e.a)} {CMP[e.op]} {_paren(e.b)}"
    if isinstance(e, ir.Select):
        return f"select({format_expr(e.cond)}, {format_expr(e.a)}, {format_expr(e.b)})"
    if isinstance(e, ir.Cast):
        return f"{SHORT[e.dtype]}({format_expr(e.x)})"
    raise TypeError(f"not a loop-IR value: {e!r}")


def _const(e: ir.Const) -> str:
    """The value in its dtype's own form (1.0 for floats, 1 for ints, True for bools), so
    that constants of different dtypes never print alike; float32, int64 and bool (what
    bare Python numbers become) carry no suffix."""
    convert = {"bool": bool}.get(e.dtype, float if e.dtype.startswith("float") else int)
    text = repr(convert(e.value))
    return text if e.dtype in ("float32", "int64", "bool") else f"{text}:{SHORT[e.dtype]}"


def _paren(e: ir.Expr) -> str:
    text = format_expr(e)
    return f"({text})" if isinstance(e, (ir.Binary, ir.Cmp)) and e.op in INFIX | CMP else text


def _loop_head(s: ir.For) -> str:
    rng = f"{s.var} in {_idx(s.start)}..{_idx(s.stop)}"
    if s.kind == "vectorized":
        return f"vector({s.width}, tail={s.tail}) for {rng}:"
    prefix = {"serial": "", "parallel": "parallel ", "unrolled": "unrolled "}[s.kind]
    return f"{prefix}for {rng}:"


def format_stmt(s: ir.Stmt, indent: int = 0) -> list[str]:
    """Lines of one statement at `indent` levels (two spaces each)."""
    pad = "  " * indent
    if isinstance(s, ir.Block):
        return [line for st in s.stmts for line in format_stmt(st, indent)] or [pad + "pass"]
    if isinstance(s, ir.For):
        return [pad + _loop_head(s)] + format_stmt(s.body, indent + 1)
    if isinstance(s, ir.Store):
        streaming = "  # streaming" if s.streaming else ""
        return [f"{pad}{s.buffer}{_indices(s.index)} = {format_expr(s.value)}{streaming}"]
    if isinstance(s, ir.Prefetch):
        return [f"{pad}prefetch {s.buffer}{_indices(s.index)}"]
    if isinstance(s, ir.Barrier):
        return [f"{pad}barrier"]
    if isinstance(s, ir.Let):
        return [f"{pad}let {s.name} = {format_expr(s.value)}"]
    if isinstance(s, ir.Alloc):
        shape = "[" + ", ".join(map(str, s.shape)) + "]" if s.shape else ""
        init = "" if s.init is None else f" = {format_expr(s.init)}"
        lanes = f" x{s.lanes} lanes" if s.lanes > 1 else ""
        return [f"{pad}alloc {s.name}: {SHORT[s.dtype]}{shape}{lanes}{init}"]
    if isinstance(s, ir.Assign):
        return [f"{pad}{s.name}{_indices(s.index)} = {format_expr(s.value)}"]
    if isinstance(s, ir.If):
        lines = [f"{pad}if {format_expr(s.cond)}:"] + format_stmt(s.then, indent + 1)
        if s.orelse is not None:
            lines += [f"{pad}else:"] + format_stmt(s.orelse, indent + 1)
        return lines
    raise TypeError(f"not a loop-IR statement: {s!r}")


def format_kernel(k: ir.Kernel) -> str:
    when = k.parallel_when
    gate = f"  parallel when {format_expr(when)}" if when is not None else ""
    head = f"kernel {k.name}:{gate}" + (f"  # {k.comment}" if k.comment else "")
    return "\n".join([head] + format_stmt(k.body, 1))


def _format_buffer(b: ir.Buffer) -> str:
    shape = ",".join(_idx(d) for d in b.shape)
    where = f" @{_idx(b.offset)}" if b.offset is not None else ""
    align = "" if b.align == 64 else f" align={b.align}"
    return f"  buffer {b.name}: {SHORT[b.dtype]}[{shape}] {b.role}{where}{align}"


def format_program(p: ir.Program) -> str:
    """The program header (buffers, arena, call order) followed by every kernel."""
    lines = [f"program {p.name}({', '.join(p.symbols)})"]
    lines += [_format_buffer(b) for b in p.buffers]
    lines.append(f"  arena {_idx(p.arena_size)} bytes")
    lines += [f"  call {name}" for name in p.calls]
    return "\n\n".join(["\n".join(lines)] + [format_kernel(k) for k in p.kernels]) + "\n"


def program_hash(p: ir.Program) -> str:
    """sha256 of the program's text: equal text, equal code."""
    return hashlib.sha256(format_program(p).encode()).hexdigest()
