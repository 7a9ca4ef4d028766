"""Structural checks of a loop-IR `Program`, run by codegen before it emits anything.

Stage: loop IR. Input: a `Program`. Output: None, or `CodegenError` naming the kernel (or
buffer) and the offending value. These are the invariants listed in `convc.loops.ir`; the
checks that need types (dtypes of operands, vector-loop rules) happen during codegen, which
reports them the same way.
"""

from __future__ import annotations

import sympy

from ir.errors import CodegenError

from . import ir as L
from .analysis import known_multiple


def verify_program(p: L.Program) -> None:
    """Raise `CodegenError` on the first broken invariant of `p`."""
    buffers = _check_buffers(p)
    kernel_names = [k.name for k in p.kernels]
    _unique(kernel_names, f"program '{p.name}'", "kernel")
    for call in p.calls:
        if call not in kernel_names:
            raise CodegenError(f"program '{p.name}' calls unknown kernel '{call}'")
    for kernel in p.kernels:
        _Checker(kernel.name, buffers, set(p.symbols)).stmt(kernel.body, set())


def _unique(names: list[str], where: str, what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise CodegenError(f"{where}: duplicate {what} name '{name}'")
        seen.add(name)


def _check_buffers(p: L.Program) -> dict[str, L.Buffer]:
    _unique([b.name for b in p.buffers], f"program '{p.name}'", "buffer")
    for b in p.buffers:
        if b.dtype not in L.DTYPES or b.role not in L.ROLES:
            raise CodegenError(f"buffer '{b.name}': bad dtype '{b.dtype}' or role '{b.role}'")
        if b.align < 1 or b.align & (b.align - 1):
            raise CodegenError(f"buffer '{b.name}': alignment {b.align} is not a power of two")
        if b.role == "temp":
            if b.offset is None:
                raise CodegenError(f"temp buffer '{b.name}' has no arena offset")
            if known_multiple(b.offset) % 64:
                raise CodegenError(
                    f"temp buffer '{b.name}': offset {b.offset} is not provably 64-aligned"
                )
        unknown = {s.name for d in b.shape for s in d.free_symbols} - set(p.symbols)
        if unknown:
            raise CodegenError(f"buffer '{b.name}': shape uses unknown symbol(s) {sorted(unknown)}")
    return {b.name: b for b in p.buffers}


class _Checker:
    """Walks one kernel with the index names and locals in scope."""

    def __init__(self, kernel: str, buffers: dict, symbols: set[str]):
        self.kernel, self.buffers, self.symbols = kernel, buffers, symbols

    def fail(self, message: str) -> CodegenError:
        return CodegenError(f"kernel '{self.kernel}': {message}")

    def index(self, e: sympy.Expr, scope: set[str]) -> None:
        unknown = {s.name for s in sympy.sympify(e).free_symbols} - scope - self.symbols
        if unknown:
            raise self.fail(f"index {e} uses unknown name(s) {sorted(unknown)}")

    def access(self, name: str, index: tuple, scope: set[str]) -> None:
        if name not in self.buffers:
            raise self.fail(f"unknown buffer '{name}'")
        if len(index) != len(self.buffers[name].shape):
            rank = len(self.buffers[name].shape)
            raise self.fail(f"buffer '{name}' has rank {rank} but is indexed with {len(index)}")
        for i in index:
            self.index(i, scope)

    def expr(self, e: L.Expr, scope: set[str]) -> None:
        if isinstance(e, L.Load):
            self.access(e.buffer, e.index, scope)
        elif isinstance(e, L.Index):
            self.index(e.expr, scope)
        elif isinstance(e, (L.Unary, L.Binary, L.Cmp)) and e.op not in _OPS[type(e)]:
            raise self.fail(f"unknown {type(e).__name__} op '{e.op}'")
        elif isinstance(e, (L.Const, L.Cast)) and e.dtype not in L.DTYPES:
            raise self.fail(f"unknown dtype '{e.dtype}'")
        for child in vars(e).values():
            if isinstance(child, L.Expr):
                self.expr(child, scope)

    def stmt(self, s: L.Stmt, scope: set[str]) -> None:
        if isinstance(s, L.Block):
            inner = set(scope)
            for st in s.stmts:
                self.stmt(st, inner)
                if isinstance(st, (L.Let, L.Alloc)):
                    inner.add(st.name)
        elif isinstance(s, L.For):
            self._loop(s, scope)
        elif isinstance(s, L.Store):
            self.access(s.buffer, s.index, scope)
            self.expr(s.value, scope)
        elif isinstance(s, L.Prefetch):
            self.access(s.buffer, s.index, scope)
        elif isinstance(s, L.Barrier):
            pass
        elif isinstance(s, (L.Let, L.Assign, L.Alloc)):
            for value in (getattr(s, "value", None), getattr(s, "init", None)):
                if value is not None:
                    self.expr(value, scope)
        elif isinstance(s, L.If):
            self.expr(s.cond, scope)
            self.stmt(s.then, scope)
            if s.orelse is not None:
                self.stmt(s.orelse, scope)
        else:
            raise self.fail(f"not a loop-IR statement: {s!r}")

    def _loop(self, s: L.For, scope: set[str]) -> None:
        if s.kind not in L.LOOP_KINDS or s.tail not in L.TAILS:
            raise self.fail(f"loop '{s.var}': unknown kind '{s.kind}' or tail '{s.tail}'")
        if s.var.name in scope or s.var.name in self.symbols:
            raise self.fail(f"loop variable '{s.var}' shadows a name in scope")
        self.index(s.start, scope)
        self.index(s.stop, scope)
        self.stmt(s.body, scope | {s.var.name})


_OPS = {L.Unary: L.UNARY_OPS, L.Binary: L.BINARY_OPS, L.Cmp: L.CMP_OPS}
