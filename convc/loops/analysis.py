"""Index analysis shared by the loop-IR verifier and codegen, and index substitution.

Stage: loop IR (sympy only). `known_multiple` proves divisibility of an index expression:
the verifier uses it to check that arena offsets are multiples of 64 for every binding of the
symbols, codegen to give vector loads and stores the alignment they provably have.
`walk` visits a statement tree, `unwrapped` looks inside blocks of one statement,
`loaded_buffers` names the buffers it loads from,
`loads_of` finds a buffer's loads, `substitute` rewrites its index symbols, `to_local` moves
a buffer's accesses to a local array and `rewritten` applies any rule top down.
"""

from __future__ import annotations

import dataclasses
import math
from functools import lru_cache

import sympy

from . import ir as L


@lru_cache(maxsize=65536)
def known_multiple(e: sympy.Expr, var: str = "", var_multiple: int = 1) -> int:
    """A positive integer that divides `e` for all values of its symbols, given that the
    symbol named `var` is always a multiple of `var_multiple` (0 means e == 0: divisible by
    anything). Conservative: 1 when nothing is known."""
    e = sympy.expand(e)
    if e.is_Integer:
        return abs(int(e))
    if e.is_Symbol:
        return var_multiple if e.name == var else 1
    if isinstance(e, (sympy.Add, sympy.Max, sympy.Min)):  # Max/Min: one of the arguments
        return math.gcd(*(known_multiple(t, var, var_multiple) for t in e.args))
    if isinstance(e, sympy.Mul):
        out = 1
        for f in e.args:
            out *= known_multiple(f, var, var_multiple)
        return out
    return 1


def substitute(node, mapping: dict):
    """`node` (a loop-IR statement or value, or a tuple of them) with the index symbols in
    `mapping` replaced by their expressions everywhere: indices, bounds, `Index` values.
    Local and buffer names are kept. Used to place one nest's body inside another's loops
    (`convc.lower.row_fusion`)."""
    return rewritten(node, lambda n: n.xreplace(mapping) if isinstance(n, sympy.Basic) else None)


def to_local(node, buffer: str, local: str, index):
    """`node` (as for `substitute`) with every load of `buffer` read from the `Alloc` array
    `local` instead and every store to it assigned there; `index` maps a buffer index
    (tuple) to the local's. Used to keep a value that one kernel both writes and reads in
    a few rows of a local array (`convc.lower.row_fusion`)."""

    def rule(n):
        if isinstance(n, L.Load) and n.buffer == buffer:
            return L.Ref(local, index(n.index))
        if isinstance(n, L.Store) and n.buffer == buffer:
            return L.Assign(local, index(n.index), rewritten(n.value, rule))
        return None

    return rewritten(node, rule)


def rewritten(node, rule):
    """`node` (a loop-IR dataclass, a tuple of them, or a leaf) with `rule` applied top
    down: where `rule` returns something, that replaces the node, else the node is rebuilt
    from its rewritten fields (leaves `rule` does not replace stay)."""
    done = rule(node)
    if done is not None:
        return done
    if isinstance(node, tuple):
        return tuple(rewritten(item, rule) for item in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: rewritten(getattr(node, f.name), rule) for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    return node


def walk(s: L.Stmt):
    """Every statement in `s`, pre-order."""
    yield s
    if isinstance(s, L.Block):
        for st in s.stmts:
            yield from walk(st)
    elif isinstance(s, L.For):
        yield from walk(s.body)
    elif isinstance(s, L.If):
        yield from walk(s.then)
        if s.orelse is not None:
            yield from walk(s.orelse)


def unwrapped(s: L.Stmt) -> L.Stmt:
    """The statement inside blocks of one statement each, else `s`."""
    while isinstance(s, L.Block) and len(s.stmts) == 1:
        s = s.stmts[0]
    return s


def loads_of(s: L.Stmt, buffer: str) -> list[L.Load]:
    """Every load of `buffer` in the values of `s`, in order."""
    found = []
    for st in walk(s):
        for value in _stmt_values(st):
            found += _expr_loads(value, buffer)
    return found


def _expr_loads(e: L.Expr, buffer: str) -> list[L.Load]:
    if isinstance(e, L.Load):
        return [e] if e.buffer == buffer else []
    return [
        n
        for child in vars(e).values()
        if isinstance(child, L.Expr)
        for n in _expr_loads(child, buffer)
    ]


def loaded_buffers(s: L.Stmt) -> set[str]:
    """The buffers the values in `s` load from."""
    names = set()
    for st in walk(s):
        for value in _stmt_values(st):
            names |= _expr_buffers(value)
    return names


def _stmt_values(st: L.Stmt) -> list[L.Expr]:
    if isinstance(st, (L.Store, L.Let, L.Assign)):
        return [st.value]
    if isinstance(st, L.Alloc) and st.init is not None:
        return [st.init]
    if isinstance(st, L.If):
        return [st.cond]
    return []


def _expr_buffers(e: L.Expr) -> set[str]:
    if isinstance(e, L.Load):
        return {e.buffer}
    out = set()
    for child in vars(e).values():
        if isinstance(child, L.Expr):
            out |= _expr_buffers(child)
    return out
