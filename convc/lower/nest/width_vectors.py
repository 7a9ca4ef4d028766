"""Width-vector nests: the vector runs along an output index (a row's columns), the
shape of elementwise kernels, pooling, depthwise and 1x1 convs; packed panels for
unpadded 1x1 convs.

Stage: lowering (loop IR). Input: a `Nest` and a width-vector schedule. Output: the
outer loops, the vector loops over each row's borders (masked, checked) and interior
(unchecked), and in each the point body of `reduction`.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc import loops
from convc.texpr import TensorExpr

from ..convert import convert
from ..regions import conjuncts, interior
from .base import Nest, empty, ordered, outer_loops, symbol, tile_rewrites, wrap
from .reduction import point, store


def width_vector_nest(nest: Nest, schedule, atoms) -> loops.Stmt:
    """The vector along `schedule.vector_axis` (a row's columns), a register block over a
    tiled axis (`_block`), the other axes as outer loops in the schedule's order."""
    te = nest.te
    nest.vector = symbol(te, schedule.vector_axis)
    nest.reduced = next((r for r in te.reduce_indices if str(r) == schedule.vector_axis), None)
    nest.block = _block(te, schedule)
    outer = ordered([v for v in te.indices if v != nest.vector], schedule)
    loops_, subs = outer_loops(nest.te, outer, schedule, nest.block)
    scope = nest.scope
    nest.scope = replace(scope, subs={**scope.subs, **subs}, rewrites=tile_rewrites(nest.block))
    return wrap(loops_, _innermost(nest, atoms))


def packed_nest(nest: Nest, schedule) -> loops.Stmt:
    """A width-vector 1x1 conv whose rows are merged into one (`merge_rows`), panel by
    panel of P columns (`pack_columns`, a packed GEMM):

        parallel for n*p:
          alloc panel[C, P/V] x V lanes
          for c:  for q_o:  vector(V) for q_i:  panel[c, q_o] = x[n, c, p*P + q_o*V + q_i]
          for o_o:  for q_o:  vector(V) for q_i:
            alloc acc[B];  for c:  unrolled for o_i:  acc[o_i] += panel[c, q_o] * w[o_o, c, o_i]
            unrolled for o_i:  y[n, o_o*B + o_i, p*P + q_o*V + q_i] = acc[o_i]

    The panel is copied from the input once and read by every output-channel block: its
    vectors are aligned and C x P floats stay in L1 (see PACK_COLUMNS). The stores stream
    (`Schedule.streaming_stores`) when the schedule says so."""
    te, width, stream = nest.te, nest.width, schedule.streaming_stores
    n, o, i, j = te.indices
    c, *taps = te.reduce_indices
    source = next(a for a in te.body.atoms(sympy.Indexed) if j in a.free_symbols)
    size, channels = schedule.pack_columns, sympy.sympify(te.reduce_shape[0])
    columns = sympy.sympify(te.shape[-1])
    panels = sympy.ceiling(columns / size)
    block, o_o, o_i = schedule.tiles[str(o)], loops.loop_var(f"{o}_o"), loops.loop_var(f"{o}_i")
    image_panel, var_c = loops.loop_var(f"{n}_{j}_o"), loops.loop_var(str(c))
    q_o, q_i = loops.loop_var(f"{j}_o"), loops.loop_var(f"{j}_i")
    start = sympy.Mod(image_panel, panels) * size
    in_panel = sympy.Min(size, columns - start) if columns % size else sympy.Integer(size)
    subs = {
        n: sympy.floor(image_panel / panels),
        i: sympy.Integer(0),
        j: start + q_o * width + q_i,
        c: var_c,
        o: o_o * block + o_i,
        **{t: sympy.Integer(0) for t in taps},
    }
    scope = replace(
        nest.scope, subs={**nest.scope.subs, **subs}, rewrites=tile_rewrites((o, block, o_o, o_i))
    )

    def vectors(body) -> loops.Stmt:
        """`body` over the panel's columns, V at a time."""
        whole = in_panel.is_Integer and int(in_panel) % width == 0
        lanes = width if whole else sympy.Min(width, in_panel - q_o * width)
        inner = loops.For(q_i, 0, lanes, body, kind="vectorized", width=width, tail="masked")
        return loops.For(q_o, 0, sympy.ceiling(in_panel / width), inner)

    panel = nest.names.fresh("panel")
    ref = loops.Ref(panel, (var_c, q_o))
    copy = loops.For(
        var_c, 0, channels, vectors(loops.Assign(panel, (var_c, q_o), convert(source, scope)))
    )
    nest.scope = replace(scope, inline={**scope.inline, str(source.base): ref})
    acc = nest.names.fresh("acc")
    update = loops.Assign(
        acc, (o_i,), loops.Binary("add", loops.Ref(acc, (o_i,)), convert(te.body, nest.scope))
    )
    registers = loops.Block(
        (
            loops.Alloc(acc, te.dtype, (block,), convert(te.identity, scope)),
            loops.For(var_c, 0, channels, loops.For(o_i, 0, block, update, kind="unrolled")),
            loops.For(o_i, 0, block, store(nest, loops.Ref(acc, (o_i,)), stream), kind="unrolled"),
        )
    )
    blocks = loops.For(
        o_o, 0, sympy.ceiling(sympy.sympify(te.shape[1]) / block), vectors(registers)
    )
    body = loops.Block(
        (
            loops.Alloc(panel, te.dtype, (int(channels), -(-size // width)), lanes=width),
            copy,
            blocks,
        )
    )
    kind = "parallel" if schedule.parallel_axis else "serial"
    return loops.For(image_panel, 0, sympy.sympify(te.shape[0]) * panels, body, kind=kind)


def _block(te: TensorExpr, schedule):
    for name, size in schedule.tiles.items():
        var = symbol(te, name)
        extent = te.shape[te.indices.index(var)] if var is not None else None
        atoms_use = any(var in a.free_symbols for a in conjuncts(te.condition))
        if var is None or f"{name}.i" not in schedule.unroll or atoms_use:
            continue
        if extent.is_number and int(extent) % size == 0:
            return var, size, loops.loop_var(f"{name}_o"), loops.loop_var(f"{name}_i")
    return None


def _innermost(nest: Nest, atoms) -> loops.Stmt:
    """The vector axis' region loops around the point body (or the body alone): the
    interior without the checks on that axis, and the borders as masked vectors that keep
    them. Borders taken one column and one output channel at a time made an 8 -> 24 5x5
    conv on 17-wide rows (two border columns a side) take 0.188 ms; masked, 0.062."""
    te, v = nest.te, nest.vector
    if v is None:
        return _scalar_point(nest, atoms)
    extent = te.shape[te.indices.index(v)]
    reduce_ranges = dict(zip(te.reduce_indices, te.reduce_shape))
    split = interior(atoms, v, extent, reduce_ranges, te.indices)
    var = loops.loop_var(str(v))
    if split is None:
        return loops.For(var, 0, extent, _scalar_point(nest, atoms))
    lo, hi = split
    inside = [a for a in atoms if v not in a.free_symbols]
    parts = [(0, lo, atoms), (lo, hi, inside), (hi, extent, atoms)]
    stmts = []
    for start, stop, kept in parts:
        if empty(start, stop):
            continue
        body = point(nest, kept)
        stmts.append(
            loops.For(var, start, stop, body, kind="vectorized", width=nest.width, tail="masked")
        )
    return loops.Block(tuple(stmts))


def _scalar_point(nest: Nest, atoms) -> loops.Stmt:
    """The point body one output at a time: for a row with no interior to split off
    (bounds tying the vector axis to another index), and for expressions with no vector
    axis. A register block pays only in a vector loop; here its channels run in a plain
    loop, which keeps this code B times smaller."""
    if nest.block is None:
        return point(nest, atoms)
    var_i = nest.block[3]
    return loops.For(var_i, 0, nest.block[1], point(replace(nest, block=None), atoms))
