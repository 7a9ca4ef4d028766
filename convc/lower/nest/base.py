"""What every loop nest shares: its state (`Nest`), fresh names, and the outer loops.

Stage: lowering (loop IR). Used by both nest shapes (`width_vectors`,
`channel_vectors`) and by the reduction and hint builders they call; imports no other
part of the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from convc import loops
from convc.texpr import TensorExpr

from ..convert import Scope, condition


@dataclass
class Names:
    """Fresh local names within one kernel (locals must not repeat)."""

    taken: dict

    def fresh(self, stem: str) -> str:
        count = self.taken.get(stem, 0)
        self.taken[stem] = count + 1
        return stem if count == 0 else f"{stem}{count}"


@dataclass
class Nest:
    """Everything one nest needs: the expression, schedule decisions and conversion scope."""

    te: TensorExpr
    store: str
    epilogue: tuple  # ((value name, sympy expr over te.indices), ...) applied after te's own
    scope: Scope
    names: Names
    vector: sympy.Symbol | None = None
    block: tuple | None = None  # (axis symbol, size, outer var, inner var)
    width: int = 16  # lanes of the width vector (schedule.vector_width)
    prefetch: tuple = ()  # loops.Prefetch hints issued at each step of the innermost reduction
    spread: tuple = ()  # hints issued around the innermost tap loop (`hints._next_pass_hints`)
    planes: sympy.Indexed | None = None  # an NCHW input to hint: `hints._planes_read`
    chunk: tuple | None = None  # (reduce symbol, size, outer, inner): `reduction._chunked`
    lanes: tuple | None = None  # channels (or a chunk's) as blocks x lanes: `reduction.input_lanes`
    partials: str | None = None  # where a chunked reduction's partial sums wait, if not store
    reduced: sympy.Symbol | None = None  # a max's reduction index vectorised (`reduced_vector`)
    group: tuple | None = None  # (channels a tile, a vector's first within it): `outer_loops`


def ordered(axes, schedule) -> list:
    """`axes` in the schedule's loop order (axes it does not name keep their place after)."""
    rank = {name: k for k, name in enumerate(schedule.order)}
    return sorted(axes, key=lambda v: rank.get(str(v), len(rank)))


def wrap(loops_, inner) -> loops.Stmt:
    for var, start, stop, kind in reversed(loops_):
        inner = loops.For(var, start, stop, inner, kind=kind)
    return inner


def tile_rewrites(tile) -> dict:
    """For a tile `o = o_o*B + o_i` (0 <= o_i < B): floor(o_i/B) is 0 and o_i mod B is o_i."""
    if tile is None:
        return {}
    _, size, _, var_i = tile
    return {sympy.floor(var_i / size): sympy.Integer(0), sympy.Mod(var_i, size): var_i}


def symbol(te: TensorExpr, name: str | None):
    return next((v for v in te.indices if str(v) == name), None)


def within_tile(index, step: int) -> sympy.Expr:
    """The channel within its tile of `step` channels held in several vectors, from the
    channel `index` = step*g + within that `outer_loops` substitutes: the terms of `index`
    that are not multiples of `step`."""
    terms = sympy.Add.make_args(index)
    return sympy.Add(*(t for t in terms if not (t / step).is_integer))


def group_rewrites(within, step: int) -> dict:
    """For a channel `within` its tile of `step` channels (`within_tile`, < step):
    floor(within/step) is 0 and within mod step is within."""
    return {sympy.floor(within / step): sympy.Integer(0), sympy.Mod(within, step): within}


def outer_loops(te: TensorExpr, outer, schedule, tile, step: int = 0):
    """(var, start, stop, kind) for the axes `outer`, and the index substitution.

    `tile` (axis, size, outer var, inner var) splits one axis; its outer part loops here.
    With a `step` past `size` (one group's channels, `schedule.group_tile`) each tile of
    `step` is B = ceil(step/size) vectors of `size`: `o = step*(o_o // B) + size*(o_o % B)
    + o_i`, the last vector of each tile partly past it. The leading axes named by
    `parallel_axis` ("n*o") are collapsed into one parallel loop whose variable is split
    back with floor/Mod.
    """
    subs, extents = {}, []
    for v in outer:
        extent = te.shape[te.indices.index(v)]
        if tile is not None and v == tile[0]:
            _, size, var_o, var_i = tile
            if step > size:
                per = -(-step // size)
                subs[v] = step * sympy.floor(var_o / per) + size * sympy.Mod(var_o, per) + var_i
                extents.append((var_o, sympy.sympify(extent) / step * per))
            else:
                subs[v] = var_o * size + var_i
                extents.append((var_o, sympy.ceiling(sympy.sympify(extent) / size)))
        else:
            subs[v] = loops.loop_var(str(v))
            extents.append((subs[v], extent))
    wanted = schedule.parallel_axis.split("*") if schedule.parallel_axis else []
    count = len(wanted) if [str(v) for v in outer[: len(wanted)]] == wanted else 0
    if not count:
        return [(var, 0, extent, "serial") for var, extent in extents], subs
    fused = loops.loop_var("_".join(str(var) for var, _ in extents[:count]))
    collapse, stride = {}, sympy.Integer(1)
    for k in range(count - 1, -1, -1):
        var, extent = extents[k]
        part = sympy.floor(fused / stride) if stride != 1 else fused
        collapse[var] = part if k == 0 else sympy.Mod(part, extent)
        stride = stride * extent
    subs = {v: e.xreplace(collapse) for v, e in subs.items()}
    head = [(fused, 0, sympy.Mul(*(e for _, e in extents[:count])), "parallel")]
    return head + [(var, 0, extent, "serial") for var, extent in extents[count:]], subs


def block_loop(nest: Nest, body_fn) -> loops.Stmt:
    """`body_fn(index)` once, or unrolled over the register block."""
    if nest.block is None:
        return body_fn(())
    var_i = nest.block[3]
    return loops.For(var_i, 0, nest.block[1], body_fn((var_i,)), kind="unrolled")


def guard(stmt, atoms, scope=None):
    if not atoms:
        return stmt
    return loops.If(condition(sympy.And(*atoms), scope), stmt)


def empty(start, stop) -> bool:
    return (sympy.sympify(stop) - start).is_zero is True
