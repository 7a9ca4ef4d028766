"""One tensor expression + its schedule -> a loop nest (the heart of lowering).

Stage: (TensorExpr, Schedule, fused epilogue) -> `convc.loops` statement.

Two shapes, chosen by the schedule. Width vectors (`vector_axis` an output
index, e.g. "j"; elementwise, pooling, depthwise and 1x1 convs):

    parallel for n*o_o:                     # schedule.parallel_axis "n*o"
      for i:
        vector(16) for j in border:         # every bound checked, lane by lane (masked)
        vector(16) for j in interior:       # checks on j dropped
          alloc acc[B] = 0                  # B = schedule.tiles["o"], "o.i" unrolled
          for c: for a: [if row bound] for b:
            unrolled for o_i: acc[o_i] += x[...] * w[o_o*B + o_i, ...]
          unrolled for o_i: y[...] = epilogue(acc[o_i])

The outer loops follow `schedule.order` (1x1 convs put the rows outside the channel
blocks: order n,i,o,j, parallel over "n*i"; unpadded ones run packed panels instead,
`_packed_nest`).

Channel vectors (`vector_axis` a tile's inner part, "o.i"; windowed convs and
dense layers): 16 output channels (features) a vector and a register block of
output columns (rows), see `_channel_vector_nest`.

Invariants: an access runs only where its expression's condition holds (bounds
are either checked by an `if` placed right after the loop that binds their last
index or inside the unrolled copy of a register block, or proven by the interior
split); the epilogue (the op's own, then the fused chain as `let`s) is applied
to the accumulator in registers, so only the group's final value is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from convc import loops
from convc.texpr import ACC, TensorExpr

from .convert import Scope, condition, convert
from .regions import conjuncts, interior
from .schedule import at_batch_one, blocks, fixed_row_blocks, merge_rows, whole_groups

UPDATE = {"sum": "add", "max": "max"}
#: Weights from which a channel-vector conv prefetches those it reads next
#: (`_streamed_weights`), and the float32 values in a cache line.
PREFETCH_MIN_TOTAL, LINE_FLOATS = 1 << 17, 16
#: ... unless each weight serves this many outputs (at batch 1) or more: a block's weights
#: then stay in L2 while hundreds of rows reuse them, and the hints only take load slots
#: (3x3 64->64 @56, 3136 outputs per weight: 1.328-1.331 -> 1.300-1.306 ms, A/B; ResNet-18's
#: four such convs 1.30-1.34 -> 1.29-1.31 ms). MobileNetV2's 1x1 convs at 14x14 (196
#: outputs per weight) keep them (without: 0.146 -> 0.161 ms).
PREFETCH_MAX_USES = 1024
#: The loop of a window's outer taps inside the channels (a 3x3 conv's rows) runs unrolled
#: when it has at most this many: no loop counter or exit branch between the taps. A 3x3
#: conv reading an NCHW input (A/B in one process, ms): 64 @56 1.294 -> 1.263, 128 @28
#: 1.249 -> 1.221, 512 @7 1.113 -> 1.094. Not on channel-blocked inputs, whose lanes loop
#: sits between the taps (`_lanes_inside`): there it measured within 0.4% and tripled the
#: code LLVM compiles (ResNet-18 cold 3.5 -> 5.8 s). Five
#: taps (LeNet-5's 5x5 conv) measured slower unrolled (2.2 -> 3.7 us), seven (the stem)
#: no different, and a depthwise conv's taps (one input channel) slower too (3x3 on 32
#: planes of 112x112: 0.134 -> 0.188 ms), so they stay loops. With AVX2's blocks the
#: innermost taps unroll too (`RegisterBlocks.taps_unrolled`): over an NCHW input on a Zen 3
#: guest (80 rounds, fastest / median / slowest, ms) 3x3 128 @28 2.23 / 2.43 / 3.03 against
#: 2.27 / 2.62 / 3.95, 64 @56 2.31 / 2.51 / 2.95 against 2.33 / 2.54 / 3.61.
UNROLLED_TAPS = 3
#: FMAs in flight that keep the FMA units busy: two units, each with a latency of 4 cycles
#: (AVX2 and AVX-512 alike). A register block of fewer accumulator registers keeps two
#: sets of them (`_accumulator_sets`).
FMA_CHAINS = 8
#: NCHW inputs of at least this many channels, and bytes an image, get a hint for each
#: plane's next row (`_planes_read`): 3x3 64 @56 (800 KB an image) reading an NCHW input
#: at batch 8 10.68 -> 10.38 ms, at batch 1 (input in L2) unchanged (A/B in one process).
#: Smaller images measured no faster or slower with them (at batch 8: 128 @28 10.46 ->
#: 10.50 ms, 256 @14 9.56 -> 9.78, 512 @7 8.79 -> 9.01). A hint for the output's next row
#: (written NCHW too) gained nothing more and cost 2% at batch 1. Not the stem (3 planes).
HINTED_PLANES_MIN, HINTED_INPUT_MIN_BYTES = 32, 1 << 19


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
    spread: tuple = ()  # hints issued around the innermost tap loop (`_next_pass_hints`)
    planes: sympy.Indexed | None = None  # an NCHW input whose next rows to hint: _planes_read
    chunk: tuple | None = None  # (reduce symbol, size, outer var, inner var): see _chunked
    lanes: tuple | None = None  # (the same) input channels as blocks x lanes: _input_lanes
    partials: str | None = None  # where a chunked reduction's partial sums wait, if not store
    reduced: sympy.Symbol | None = None  # a max's reduction index vectorised (`reduced_vector`)


def lower_nest(te, schedule, store, epilogue, scope, names, partials=None) -> loops.Stmt:
    """The loop nest computing `te` (then `epilogue`) into buffer `store`; `partials`: the
    channel-blocked buffer a cache-blocked reduction keeps its partial sums in (default:
    `store` itself)."""
    if schedule.merge_rows > 1:
        te, epilogue = merge_rows(te, epilogue, schedule.merge_rows)
    width = schedule.vector_width
    nest = Nest(te, store, tuple(epilogue), scope, names, width=width, partials=partials)
    atoms = conjuncts(te.condition)
    if schedule.vector_axis and schedule.vector_axis.endswith(".i"):
        return _channel_vector_nest(nest, schedule, atoms)
    if schedule.pack_columns:
        return _packed_nest(nest, schedule)
    nest.vector = _symbol(te, schedule.vector_axis)
    nest.reduced = next((r for r in te.reduce_indices if str(r) == schedule.vector_axis), None)
    nest.block = _block(te, schedule)
    outer = _ordered([v for v in te.indices if v != nest.vector], schedule)
    loops_, subs = _outer_loops(nest.te, outer, schedule, nest.block)
    nest.scope = replace(scope, subs={**scope.subs, **subs}, rewrites=_tile_rewrites(nest.block))
    return _wrap(loops_, _innermost(nest, atoms))


def _packed_nest(nest: Nest, schedule) -> loops.Stmt:
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
        nest.scope, subs={**nest.scope.subs, **subs}, rewrites=_tile_rewrites((o, block, o_o, o_i))
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
            loops.For(o_i, 0, block, _store(nest, loops.Ref(acc, (o_i,)), stream), kind="unrolled"),
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


def _ordered(axes, schedule) -> list:
    """`axes` in the schedule's loop order (axes it does not name keep their place after)."""
    rank = {name: k for k, name in enumerate(schedule.order)}
    return sorted(axes, key=lambda v: rank.get(str(v), len(rank)))


def _wrap(loops_, inner) -> loops.Stmt:
    for var, start, stop, kind in reversed(loops_):
        inner = loops.For(var, start, stop, inner, kind=kind)
    return inner


def _tile_rewrites(tile) -> dict:
    """For a tile `o = o_o*B + o_i` (0 <= o_i < B): floor(o_i/B) is 0 and o_i mod B is o_i."""
    if tile is None:
        return {}
    _, size, _, var_i = tile
    return {sympy.floor(var_i / size): sympy.Integer(0), sympy.Mod(var_i, size): var_i}


def _symbol(te: TensorExpr, name: str | None):
    return next((v for v in te.indices if str(v) == name), None)


def _block(te: TensorExpr, schedule):
    for name, size in schedule.tiles.items():
        var = _symbol(te, name)
        extent = te.shape[te.indices.index(var)] if var is not None else None
        atoms_use = any(var in a.free_symbols for a in conjuncts(te.condition))
        if var is None or f"{name}.i" not in schedule.unroll or atoms_use:
            continue
        if extent.is_number and int(extent) % size == 0:
            return var, size, loops.loop_var(f"{name}_o"), loops.loop_var(f"{name}_i")
    return None


def _outer_loops(te: TensorExpr, outer, schedule, tile):
    """(var, start, stop, kind) for the axes `outer`, and the index substitution.

    `tile` (axis, size, outer var, inner var) splits one axis; its outer part loops here.
    The leading axes named by `parallel_axis` ("n*o") are collapsed into one parallel loop
    whose variable is split back with floor/Mod.
    """
    subs, extents = {}, []
    for v in outer:
        extent = te.shape[te.indices.index(v)]
        if tile is not None and v == tile[0]:
            _, size, var_o, var_i = tile
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
        if _empty(start, stop):
            continue
        body = _point(nest, kept)
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
        return _point(nest, atoms)
    var_i = nest.block[3]
    return loops.For(var_i, 0, nest.block[1], _point(replace(nest, block=None), atoms))


def _block_loop(nest: Nest, body_fn) -> loops.Stmt:
    """`body_fn(index)` once, or unrolled over the register block."""
    if nest.block is None:
        return body_fn(())
    var_i = nest.block[3]
    return loops.For(var_i, 0, nest.block[1], body_fn((var_i,)), kind="unrolled")


def _point(nest: Nest, atoms) -> loops.Stmt:
    te = nest.te
    if te.reduction == "none":
        return _block_loop(nest, lambda k: _pointwise(nest, atoms))
    acc = nest.names.fresh("acc")
    sets = _accumulator_sets(nest)
    shape = (sets * nest.block[1],) if nest.block else ()
    start = _added_first(nest) if sets == 1 else None
    if start is not None:
        nest = replace(nest, te=replace(te, epilogue=None))
    identity = convert(te.identity if start is None else start, nest.scope)
    body = _reduce_loops(nest, atoms, acc, sets)
    if sets > 1:
        body = loops.Block((body, _block_loop(nest, lambda k: _folded(nest, acc, k))))
    stores = _block_loop(nest, lambda k: _store(nest, loops.Ref(acc, k)))
    alloc = loops.Alloc(acc, te.dtype, shape, identity)
    if nest.chunk is None:
        return loops.Block((alloc, body, stores))
    return _chunked(nest, acc, alloc, body, stores)


def _added_first(nest: Nest):
    """The term `t` of a sum's epilogue ``acc + t`` when the accumulators may start from it
    instead of zero (`t` the same for every element of the register block and free of the
    reduction indices, e.g. a conv's bias), else None: one addition an output fewer, which
    shows where the reduction is short (MobileNetV2's 1x1 convs over 16-32 channels)."""
    te = nest.te
    if te.reduction != "sum" or nest.chunk is not None or not isinstance(te.epilogue, sympy.Add):
        return None
    if ACC not in te.epilogue.args:
        return None
    term = te.epilogue - ACC
    varying = set(te.reduce_indices) | ({nest.block[0]} if nest.block else set())
    if ACC in term.free_symbols or term.free_symbols & varying:
        return None
    return term


def _chunked(nest: Nest, acc: str, alloc, body, stores) -> loops.Stmt:
    """One chunk of a cache-blocked reduction: the accumulators start from the partial sums
    the previous chunks left in the output (from the identity in the first chunk), and
    only the last chunk applies the epilogue; the others store the partial sums. A
    barrier follows the stores: every chunk then finds its partial sums in memory, and
    LLVM cannot carry a whole row of them in (spilled) registers across the chunk loop."""
    te, scope = nest.te, nest.scope
    _, size, outer, _ = nest.chunk
    last = sympy.sympify(te.reduce_shape[0]) / size - 1
    if nest.partials is None:
        buffer, index = nest.store, scope.place(nest.store, te.attrs.get("store_index", te.indices))
    else:
        buffer, index = nest.partials, scope.place(nest.partials, te.indices)
    resume = _block_loop(nest, lambda k: loops.Assign(acc, k, loops.Load(buffer, index)))
    partial = _block_loop(nest, lambda k: loops.Store(buffer, index, loops.Ref(acc, k)))
    later = loops.Cmp("gt", loops.Index(outer), loops.Index(0))
    final = loops.Cmp("eq", loops.Index(outer), loops.Index(last))
    stored = loops.If(final, stores, partial)
    return loops.Block((alloc, loops.If(later, resume), body, stored, loops.Barrier()))


def _accumulator_sets(nest: Nest) -> int:
    """How many sets of accumulators a register block's sum keeps: 2 where its block fills
    fewer registers than FMA_CHAINS and its innermost taps run unrolled; its taps then
    alternate between the sets (`_reduce_loops`), which are added before the stores
    (`_folded`). One set of 6 registers (a row of 7 over a channel-blocked input splits
    4 + 3 columns, `RegisterBlocks.blocked_max_row`) keeps 6 FMAs in flight where the
    FMA units take 8, so that block ran at 3/4 of the rate. Measured on a Zen 3 guest
    (AVX2, one thread): 3x3 512 @7 over its blocked copy 2.461 -> 2.153 ms (median of the
    fast rounds, 60 rounds), 2.820 -> 2.732 in the slow; ResNet-18 at batch 1 (40 rounds
    in rotated order) 36.6 / 42.0 -> 35.6 / 39.7 ms (fastest / median), its layer4 3x3
    kernels 2.33 -> 2.00 ms at their fastest."""
    te = nest.te
    if nest.block is None or te.reduction != "sum" or not te.reduce_indices:
        return 1
    last = len(te.reduce_indices) - 1  # the innermost level (no lanes loop inside it)
    taps = sympy.sympify(te.reduce_shape[last])
    if taps.is_number and taps < 2:  # a 1x1 conv: no second tap to alternate with
        return 1
    if not _unrolled_taps(nest, last, taps, lanes_inside=False):
        return 1
    used = _block_registers(nest)
    return 2 if used < FMA_CHAINS and 2 * used <= blocks().accumulators else 1


def _block_registers(nest: Nest) -> int:
    """The vector registers a register block's accumulators fill on this machine."""
    return -(-nest.block[1] * nest.width // blocks().lanes)


def _folded(nest: Nest, acc: str, k) -> loops.Stmt:
    """``acc[k] += acc[k + B]``: the second set of accumulators added into the first."""
    other = (k[0] + nest.block[1],)
    return loops.Assign(acc, k, loops.Binary("add", loops.Ref(acc, k), loops.Ref(acc, other)))


def _reduce_loops(nest: Nest, atoms, acc: str, sets: int) -> loops.Stmt:
    """The reduction loops, each bound check placed after the loop binding its last index;
    with `sets` sets of accumulators, consecutive innermost taps update different sets.

    Checks on the register-blocked axis sit inside each unrolled copy, where that axis is
    a constant: LLVM folds them away for every copy but the ones at the borders. The loop
    around the innermost tap's holds the hints and the lanes loop of `_around_innermost`.
    """
    te, scope = nest.te, nest.scope
    blocked = nest.block[0] if nest.block else None
    per_copy = [a for a in atoms if blocked in a.free_symbols]
    atoms = [a for a in atoms if a not in per_copy]
    depth = {a: _depth(a, te.reduce_indices) for a in atoms}

    def update(k):
        if sets > 1:  # the innermost tap's copy picks the set
            tap = loops.loop_var(str(te.reduce_indices[-1]))
            k = (k[0] + nest.block[1] * sympy.Mod(tap, sets),)
        term = convert(te.body, scope)
        if te.reduction == "max" and nest.reduced is None:
            return _guard(_max_update(nest, acc, k, term), per_copy, scope)
        value = loops.Binary(UPDATE[te.reduction], loops.Ref(acc, k), term)
        return _guard(loops.Assign(acc, k, value), per_copy, scope)

    stmt = _block_loop(nest, update)
    if nest.prefetch:
        stmt = loops.Block((*nest.prefetch, stmt))
    inner = _lanes_inside(nest, atoms)  # channel lanes inside the outer taps
    for level in range(len(te.reduce_indices) - 1, -1, -1):
        if level == len(te.reduce_indices) - 2:
            stmt = _around_innermost(nest, stmt, inner)
        stmt = _guard(stmt, [a for a in atoms if depth[a] == level], scope)
        var, extent = loops.loop_var(str(te.reduce_indices[level])), te.reduce_shape[level]
        if nest.chunk and nest.chunk[0] == te.reduce_indices[level]:
            if inner:  # its loop runs inside the taps
                continue
            var, extent = nest.chunk[3], nest.chunk[1]
        elif nest.lanes and nest.lanes[0] == te.reduce_indices[level]:
            _, size, var, lane = nest.lanes
            if not inner:
                stmt = loops.For(lane, 0, size, stmt)
            extent = sympy.sympify(extent) / size
        lanes = te.reduce_indices[level] == nest.reduced  # a partial accumulator a lane
        kind = {"kind": "vectorized", "width": nest.width, "tail": "masked"} if lanes else {}
        if not kind and _unrolled_taps(nest, level, extent, inner is not None):
            kind = {"kind": "unrolled"}
        stmt = loops.For(var, 0, extent, stmt, **kind)
    return _guard(stmt, [a for a in atoms if depth[a] == -1], scope)


def _around_innermost(nest: Nest, stmt: loops.Stmt, inner: tuple | None) -> loops.Stmt:
    """The body of the loop around the innermost tap's (`stmt`, that loop): the next
    pass's weight hints (`nest.spread`), the hint for an NCHW input's next row
    (`nest.planes`), and around them the lanes loop of a blocked input (`inner`)."""
    hints = (*nest.spread, *((_next_row_hint(nest),) if nest.planes else ()))
    stmt = loops.Block((*hints, stmt)) if hints else stmt
    return loops.For(inner[0], 0, inner[1], stmt) if inner else stmt


def _unrolled_taps(nest: Nest, level: int, extent, lanes_inside: bool) -> bool:
    """Whether the reduction loop at `level` is a window's taps inside the channels with at
    most UNROLLED_TAPS of them, over more than one input channel (not a depthwise conv's),
    to run unrolled: the outer taps where no lanes loop sits inside them (`lanes_inside`),
    and with `RegisterBlocks.taps_unrolled` the innermost taps of a register block that
    leaves registers for them (at most `accumulators`). A whole row of 7 over an NCHW
    input (14 registers) spilled with them: 3x3 512 @7 3.04 -> 3.81 ms."""
    te = nest.te
    few = sympy.sympify(extent).is_number and int(extent) <= UNROLLED_TAPS
    channels = sympy.sympify(te.reduce_shape[0]) != 1
    last = len(te.reduce_indices) - 1
    outer = level == last - 1 and not lanes_inside
    regs = blocks()
    fits = nest.block is not None and _block_registers(nest) <= regs.accumulators
    innermost = level == last and regs.taps_unrolled and fits
    return few and channels and level > 0 and (outer or innermost)


def _lanes_inside(nest: Nest, atoms) -> tuple | None:
    """(lane variable, lanes) when the input-channel lanes of a channel-blocked input (its
    `_input_lanes`, or a reduction chunk over such an input) run inside the outer window
    taps, just outside the innermost tap: `c_b, a, c_l, b` rather than `c_b, c_l, a, b`.
    Consecutive steps then broadcast from the same lines (lanes 4 bytes apart) instead of
    from a row one blocked row further on (7 KB at 56 columns of 32 lanes). A C model of
    the kernel ran at 84% of peak even when every step read the same 10 lines, so the
    order, not the data's size, is the cost (NCHW inputs, whose rows of one channel are
    adjacent, keep `c, a, b`: 90% there). Measured (conv kernel between relus, one thread,
    A/B in one process, ms): 3x3 64 @56 1.291 -> 1.246, at batch 8 10.42 -> 10.11; 128 @28
    1.279 -> 1.211; 256 @14 1.304 -> 1.283; 512 @7 1.314 -> 1.326 (noise); 3x3/2 64->128
    @56 0.722 -> 0.672, 128->256 @28 0.728 -> 0.681, 256->512 @14 0.765 -> 0.731; 5x5
    32->64 @28 0.412 -> 0.394; ResNet-18 at batch 1 22.66 -> 22.31. Storing the weights
    in the same order ([o_b][c_b][a][c_l][b][o_i]) measured no faster. Not when a bound
    check involves the channel (it would sit outside the loop binding it).

    With AVX2's blocks (`RegisterBlocks.taps_unrolled`) the innermost taps inside the
    lanes loop run unrolled: a step of 3 taps of 12 FMAs, its broadcasts loaded apart
    (`codegen.generate`'s `rolled_blocks`). Before, the lanes ran inside every tap (`c_b,
    a, b, c_l`, 12 FMAs a step), which ran as fast at the best of times but lost more when
    the machine was shared: ResNet-18 at batch 1 on a Zen 3 guest (variants in one
    process, 100 rounds in rotated order, ms) 36.9 / 42.6 / 50.0 (fastest / median /
    slowest) against 37.1 / 47.2 / 60.6, its 3x3 kernels' medians 2.6-2.9 against 3.0-3.5
    and their fastest level or faster. The outer taps stay rolled around the lanes loop:
    unrolled, they ran no faster and took ResNet-18's cold compile from 5.2 to 9.4 s."""
    te = nest.te
    if len(te.reduce_indices) < 3 or any(te.reduce_indices[0] in a.free_symbols for a in atoms):
        return None
    if nest.lanes:
        return nest.lanes[3], nest.lanes[1]
    if nest.chunk and _input_lanes(te, nest.scope):
        return nest.chunk[3], nest.chunk[1]
    return None


def _max_update(nest: Nest, acc: str, k, term) -> loops.Stmt:
    """``acc = max(acc, term)`` propagating NaN like NumPy, as compares and selects:
    ``term if isnan(term) or term > acc else acc`` (a NaN acc stays: NaN > x is false).
    Half the dependent latency of ``llvm.maximum``, which also orders -0 below +0:
    a 3x3/2 max pool ran 1.4x faster with a select-based max."""
    name = nest.names.fresh("t")
    ref, old = loops.Ref(name), loops.Ref(acc, k)
    take = loops.Binary("or", loops.Cmp("ne", ref, ref), loops.Cmp("gt", ref, old))
    return loops.Block((loops.Let(name, term), loops.Assign(acc, k, loops.Select(take, ref, old))))


def _depth(atom, reduce_indices) -> int:
    used = [k for k, r in enumerate(reduce_indices) if r in atom.free_symbols]
    return max(used) if used else -1


def _guard(stmt, atoms, scope=None):
    if not atoms:
        return stmt
    return loops.If(condition(sympy.And(*atoms), scope), stmt)


def _pointwise(nest: Nest, atoms) -> loops.Stmt:
    te = nest.te
    value = _store(nest, convert(te.body, nest.scope))
    if not atoms:
        return value
    other = _store(nest, convert(te.identity, nest.scope))
    return loops.If(condition(sympy.And(*atoms), nest.scope), value, other)


def _store(nest: Nest, acc: loops.Expr, streaming: bool = False) -> loops.Stmt:
    """Apply the op's epilogue and the fused chain to `acc` (as lets), then store
    (`streaming`: with a non-temporal store, `loops.Store.streaming`)."""
    te, scope = nest.te, nest.scope
    stmts = []
    value = convert(te.value(), replace(scope, acc=acc)) if te.epilogue is not None else acc
    previous = te.name
    for name, expr in nest.epilogue:
        local = nest.names.fresh("v")
        stmts.append(loops.Let(local, value))
        value = convert(expr, replace(scope, inline={previous: loops.Ref(local)}))
        previous = name
    index = scope.place(nest.store, te.attrs.get("store_index", te.indices)) or (0,)
    stmts.append(loops.Store(nest.store, index, value, streaming))
    return loops.Block(tuple(stmts)) if len(stmts) > 1 else stmts[0]


def _channel_vector_nest(nest: Nest, schedule, atoms) -> loops.Stmt:
    """The vector runs over a tiled output axis "o.i" (conv: output channels; dense: output
    features) and a register block over another axis (conv: output columns; dense: rows):

        parallel for n*i*o_o:                (rows before channel blocks, `channel_schedule`)
          for j in interior blocks of R:  vector(16) for o_i:
            alloc acc[R];  for c, a, b:  unrolled for j_i:  acc[j_i] += x[.., j] * w[o_o, .., o_i]

    A row of known width is covered by blocks at fixed places (at most MAX_ROW_COPIES of
    them, else only its borders and leftover columns are, around the loop over interior
    blocks): each unrolled copy checks its own column's bounds, folded by LLVM where the
    column is inside. A row with no column bounds (an unpadded 1x1 conv) has nothing to
    fold: past FEW_ROW_BLOCKS blocks it loops over them (each fixed copy is one more copy
    of the reduction to compile: MobileNetV2 with merged rows compiled in 7.7 s, 6.3 with
    the loop, and ran as fast). A one-column pass streams the whole weight slab for 1/R of the
    work, so borders taken one at a time cost up to 40% on 14-wide rows. Rows of run-time
    width fall back to one column at a time outside the interior, and the interior's
    columns past its whole blocks (a dense layer's last rows) run in smaller blocks
    (`_leftover`).

    Each weight vector load feeds R FMAs and each input element is a broadcast: this suits
    narrow outputs (7, 14, 28 wide), strided convs (no gathers), the stem and dense layers
    (weights streamed once from [P/16][K][16] panels). A tile that does not divide its axis
    ends with a masked vector.

    A schedule with `reduce_tiles` (cache blocking) runs the input channels in chunks in a
    loop placed by its order (`c.o`: outside the rows, or inside each row; `_chunked`):

        parallel for n*o_o:  for c_o:  for i:  for j blocks:  vector(16) for o_i:
          acc[R] = c_o ? y[..] : 0;  for c_i, a, b: ...;  y[..] = last c_o ? epilogue(acc) : acc
    """
    o = _symbol(nest.te, schedule.vector_axis[:-2])
    j = _symbol(nest.te, schedule.unroll[0][:-2])
    width, block = schedule.tiles[str(o)], schedule.tiles[str(j)]
    te = nest.te = _group_by_vector(nest.te, o, width)
    tile = (o, width, loops.loop_var(f"{o}_o"), loops.loop_var(f"{o}_i"))
    outer = _ordered([v for v in te.indices if v != j], schedule)
    loops_, subs = _outer_loops(te, outer, schedule, tile)
    nest.chunk = _reduce_chunk(te, schedule)
    if nest.chunk:
        c, size, c_o, c_i = nest.chunk
        subs[c] = c_o * size + c_i
        at = _chunk_position(outer, loops_, schedule, c)
        loops_.insert(at, (c_o, 0, sympy.sympify(te.reduce_shape[0]) / size, "serial"))
    else:
        nest.lanes = _input_lanes(te, nest.scope)
        if nest.lanes:
            c, size, c_b, c_l = nest.lanes
            subs[c] = c_b * size + c_l
    rewrites = {**_tile_rewrites(tile), **_tile_rewrites(nest.chunk or nest.lanes)}
    nest.scope = replace(nest.scope, subs={**nest.scope.subs, **subs}, rewrites=rewrites)
    # converted once: weight indices do not involve the columns that row blocks place
    weights = _streamed_weights(te, o, width)
    if weights is not None and nest.chunk and _chunks_outside_rows(te, schedule):
        nest.spread = _next_pass_hints(nest, weights, width)
    if weights is not None and nest.chunk and len(te.indices) == 2:  # a dense layer's
        nest.prefetch = _next_chunk_hints(nest, weights, width)
    elif weights is not None and not nest.spread:
        nest.prefetch = _hints(nest, _next_block_lines(te, weights, width))
    nest.planes = _planes_read(te, nest.scope)
    extent = te.shape[te.indices.index(j)]
    reduce_ranges = dict(zip(te.reduce_indices, te.reduce_shape))
    split = interior(atoms, j, extent, reduce_ranges, te.indices)
    var_j = loops.loop_var(str(j))
    var_o, var_i = loops.loop_var(f"{j}_o"), loops.loop_var(f"{j}_i")
    fixed = extent.is_number and not _mixed(atoms, j, te.indices)
    count = -(-int(extent) // block) if fixed else 0
    bounded = any(j in a.free_symbols for a in atoms)
    few = fixed_row_blocks(count, bounded)
    if fixed and (split is None or few):
        parts = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(0, extent, block)]
        return _wrap(loops_, loops.Block(tuple(parts)))
    if split is None:
        return _wrap(loops_, _columns(nest, tile, var_j, 0, extent, atoms))
    lo, hi = split
    if fixed and all(sympy.sympify(e).is_number for e in (lo, hi)):
        lo, hi = _wide_borders(int(lo), int(hi), int(extent), block)
    inside = [a for a in atoms if j not in a.free_symbols]
    blocks = sympy.floor((hi - lo) / block)
    blocked = replace(
        nest,
        block=(j, block, var_o, var_i),
        scope=replace(nest.scope, subs={**nest.scope.subs, j: lo + block * var_o + var_i}),
    )
    middle = loops.For(var_o, 0, blocks, _vector_channels(blocked, tile, inside))
    if fixed and all(sympy.sympify(e).is_number for e in (lo, hi)):
        end = int(lo + block * blocks)
        left = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(0, int(lo), block)]
        right = [_row_block(nest, tile, j, s, n, atoms) for s, n in _even(end, extent, block)]
        return _wrap(loops_, loops.Block((*left, middle, *right)))
    end = lo + block * blocks
    parts = [
        _columns(nest, tile, var_j, 0, lo, atoms),
        middle,
        *_leftover(nest, tile, j, end, sympy.Mod(hi - lo, block), block, inside),
        _columns(nest, tile, var_j, hi, extent, atoms),
    ]
    kept = [p for p in parts if not (isinstance(p, loops.For) and _empty(p.start, p.stop))]
    return _wrap(loops_, loops.Block(tuple(kept)))


def _wide_borders(lo: int, hi: int, extent: int, block: int) -> tuple[int, int]:
    """The columns lo..hi of a row of `extent` that its loop over register blocks of
    `block` covers (the columns outside run as checked blocks at fixed places, `_even`):
    all of the interior, unless a border (0..lo or hi..extent, where not empty) would hold
    fewer than `blocks().border_columns` columns; then as many whole blocks fewer as it
    takes, the columns left over shared between the borders. A border block of one column
    keeps one FMA chain a register of its vector, latency bound: with AVX2's blocks of 6
    a row of 56 (3x3, pad 1) ran 1 + 9 x 6 + 1, now 4 + 8 x 6 + 4 (3x3 64->64 @56 at
    batch 8, kernel ms: 28.9-29.6 -> 27.3-27.6; the stem 4.66 -> 4.44 at batch 1, A/B).
    The same holds for the columns past the loop's last block in a row without a right
    border: one block fewer, and they share its columns (MobileNetV2's 1x1 convs over
    7x7 planes merged into rows of 49, 8 x 6 + 1 -> 7 x 6 + 4 + 3: 0.173 -> 0.167 ms in
    three of them, the rest level; the fastest of 25 profiles, two runs each)."""
    least = blocks().border_columns
    left, right = (least if border else 0 for border in (lo, extent - hi))
    if lo >= left and extent - hi >= right:
        count = (hi - lo) // block
        tail = extent - lo - count * block  # the columns past the loop's last block
        if 0 < tail < least and count > 1:  # one block fewer, its columns shared with them
            return lo, lo + (count - 1) * block
        return lo, hi
    count = min((hi - lo) // block, (extent - left - right) // block)
    spare = extent - count * block
    start = 0 if not left else spare if not right else spare // 2
    if count < 1 or start < lo or start + count * block > hi:
        return lo, hi
    return start, start + count * block


def _leftover(nest: Nest, tile, j, start, remainder, block: int, atoms) -> list:
    """The `remainder` (< `block`, known at run time) columns from `start` past the last
    whole register block, as at most one block of each power of two below `block`,
    largest first: the block of s runs when the remainder has bit s, after the larger
    ones. Taken one at a time, the leftover rows of a dense layer's run-time batch each
    streamed the whole weight matrix (with blocks of 12 rows, a batch of 8 ran 4096->1000
    in 2.79 ms against 0.62 in one block)."""
    remainder = sympy.sympify(remainder)
    if remainder.is_number:
        return [
            _row_block(nest, tile, j, start + s, n, atoms) for s, n in _even(0, remainder, block)
        ]
    stages, size = [], 1 << ((block - 1).bit_length() - 1) if block > 1 else 0
    while size:
        taken = remainder - sympy.Mod(remainder, 2 * size)  # the larger blocks' columns
        runs = loops.Cmp(
            "eq", loops.Index(sympy.Mod(sympy.floor(remainder / size), 2)), loops.Index(1)
        )
        stages.append(loops.If(runs, _row_block(nest, tile, j, start + taken, size, atoms)))
        size //= 2
    return stages


def _group_by_vector(te: TensorExpr, o, width: int) -> TensorExpr:
    """A grouped conv reads input channel `floor(o/G)*C + c` (G output channels a group);
    with G a multiple of the vector `width` (`schedule.whole_groups`) that is
    `floor(width*floor(o/width)/G)*C + c`, which the tile `o = width*o_o + o_i` reduces to
    one channel for all lanes (`floor(o_i/width)` is 0): a broadcast, not a gather."""
    group = te.attrs.get("group", 1)
    if te.attrs.get("family") != "conv" or group == 1 or not whole_groups(te, width):
        return te  # ungrouped, or depthwise: each lane its own channel
    per_group = sympy.sympify(te.shape[1]) / group
    by_vector = sympy.floor(width * sympy.floor(o / width) / per_group)
    return replace(te, body=te.body.xreplace({sympy.floor(o / per_group): by_vector}))


def _reduce_chunk(te: TensorExpr, schedule):
    """(input-channel symbol, chunk size, outer var, inner var) of a cache-blocked
    reduction (`schedule.reduce_tiles`), or None. Chunks divide the axis: a last partial
    chunk would need a bound on every read."""
    c = te.reduce_indices[0] if te.reduce_indices else None
    size = schedule.reduce_tiles.get(str(c))
    if size is None:
        return None
    if not (sympy.sympify(te.reduce_shape[0]) % size).is_zero:
        raise ValueError(f"{te.name}: reduction chunk {size} does not divide {te.reduce_shape[0]}")
    return c, size, loops.loop_var(f"{c}_o"), loops.loop_var(f"{c}_i")


def _chunk_position(outer: list, loops_: list, schedule, c) -> int:
    """Where among the outer loops the chunk loop goes: after the axes that precede
    `c.o` in `schedule.order` (a parallel loop collapsing axes on both sides of it is a
    scheduling error)."""
    order = list(schedule.order)
    before = set(order[: order.index(f"{c}.o")])
    collapsed = len(outer) - (len(loops_) - 1) if loops_ and loops_[0][3] == "parallel" else 0
    if collapsed and any(str(v) not in before for v in outer[:collapsed]):
        raise ValueError(f"chunk loop {c}.o inside the collapsed parallel loop {loops_[0][0]}")
    inside = [str(v) in before for v in outer[collapsed:]]
    return (1 if collapsed else 0) + sum(inside)


def _input_lanes(te: TensorExpr, scope: Scope):
    """(input-channel symbol, block B, block var, lane var) when the reduction's channels
    index a channel-blocked input whose block divides them: the channel loop then runs as
    blocks x lanes, and the input's `[c // B, .., c % B]` becomes `[c_b, .., c_l]`. With one
    loop over `c` every step recomputed the quotient and remainder and a base address
    per column (a 1x1 conv on 7x7: 7 address adds and a shift-and-multiply per 14 FMAs,
    issue-bound); split, the columns are constant offsets from one pointer (1x1 96->576
    @14: 0.147 -> 0.134 ms, 960->160 @7 0.104 -> 0.100, 3x3 64 @56 1.343 -> 1.316)."""
    c = te.reduce_indices[0] if te.reduce_indices else None
    if c is None or te.reduction != "sum":
        return None
    depth = sympy.sympify(te.reduce_shape[0])
    for a in te.body.atoms(sympy.Indexed):
        block = scope.layouts.get(str(a.base))
        if block and len(a.indices) > 2 and a.indices[1] == c and (depth % block).is_zero:
            return c, block, loops.loop_var(f"{c}_b"), loops.loop_var(f"{c}_l")
    return None


def _even(start: int, stop, block: int) -> list:
    """(first column, size) of the fewest register blocks of at most `block` columns that
    cover start..stop, their sizes differing by at most one."""
    total = int(stop) - start
    count = -(-total // block)
    sizes = [total // count + (k < total % count) for k in range(count)] if total > 0 else []
    return [(start + sum(sizes[:k]), size) for k, size in enumerate(sizes)]


def _row_block(nest: Nest, tile, j, start: int, size: int, atoms) -> loops.Stmt:
    """Output columns start..start+size as one register block at a fixed place: each
    unrolled copy checks its own column's bounds, which LLVM folds wherever the column
    is known to be inside (so borders cost no one-column passes over the weights)."""
    var_o, var_i = loops.loop_var(f"{j}_o"), loops.loop_var(f"{j}_i")
    row = replace(
        nest,
        block=(j, size, var_o, var_i),
        scope=replace(nest.scope, subs={**nest.scope.subs, j: start + var_i}),
    )
    return _vector_channels(row, tile, atoms)


def _streamed_weights(te: TensorExpr, o, width: int) -> sympy.Indexed | None:
    """The weights (read blocked, `[o // T, c, taps.., o % T]`) whose lines a kernel
    prefetches ahead of use, for weights of at least PREFETCH_MIN_TOTAL bytes: a model's
    run streams all its weights (ResNet-18: 44 MB), so a layer finds its own in the shared
    L3 or memory, and without the hints every block of them waits at its start (a
    512-channel 3x3 conv: 2.2 ms, against 1.65 with its weights in cache and 1.95-2.05
    with hints; 256->512 s2: 1.21 -> 1.01 ms, A/B in one process). From 128 KB rather than
    1 MB: MobileNetV2's 1x1 convs of 0.3-1.2 MB wait the same way (160->960 @7: 0.154 ->
    0.122 ms; the model 6.3-6.5 -> 6.1-6.2 ms on one thread, 3.60 -> 3.51 on two;
    ResNet-18 unchanged); below 32 KB measured no different. Not for a dense layer of one
    known row (a GEMV): it reads its weights once, in one sequential stream that the
    hardware prefetcher follows, and a second stream only competes with it (4096->1000 at
    batch 1: 0.600 ms without, 0.614-0.620 with, A/B; at batch 8 the hint pays: 0.65-0.74
    -> 0.62-0.65 ms)."""
    gemv = te.attrs.get("family") == "dense" and sympy.sympify(te.shape[0]) == 1
    if te.reduction != "sum" or gemv:
        return None
    total = sympy.Mul(te.shape[1], *te.reduce_shape) * 4
    if not total.is_number or int(total) < PREFETCH_MIN_TOTAL:
        return None
    if at_batch_one(sympy.Mul(*te.shape) / te.shape[1]) >= PREFETCH_MAX_USES:  # per weight
        return None
    block, lane = sympy.floor(o / width), sympy.Mod(o, width)
    others = set(te.indices) - {o}
    for a in sorted(te.body.atoms(sympy.Indexed), key=sympy.srepr):
        if a.indices[0] == block and a.indices[-1] == lane and not others & a.free_symbols:
            return a
    return None


def _next_chunk_hints(nest: Nest, weights, width: int) -> tuple:
    """Hints for the lines of a chunked dense layer's next chunk (`schedule.DENSE_CHUNK`),
    of the next panel after the last, matching the current step: a chunk's first row
    block pulls the next one in while it computes (16 KB ahead), where the next panel's
    lines at the same step (`_next_block_lines`) ran a whole panel ahead. 4096->1000 at
    batch 8 (30 rounds, medians of the fast / slow rounds, ms): one thread 0.953 / 1.344
    -> 0.809 / 1.296, two 0.590 / 0.697 -> 0.401 / 0.652 (ONNX Runtime 0.591 / 0.692)."""
    after, step = _next_chunk(nest, weights, width)
    lines = range(0, width, LINE_FLOATS)
    return tuple(loops.Prefetch(str(weights.base), (after, step, k)) for k in lines)


def _next_chunk(nest: Nest, weights, width: int) -> tuple:
    """(block, input index) of the weights the next chunk of a chunked reduction reads at
    the current lane or step: the next chunk of this block, or the next block's first."""
    te, (_, size, chunk, lane) = nest.te, nest.chunk
    chunks = sympy.sympify(te.reduce_shape[0]) / size
    blocks = sympy.ceiling(sympy.sympify(te.shape[1]) / width)
    block = nest.scope.index(weights.indices[0])
    after = sympy.Min(block + sympy.floor((chunk + 1) / chunks), blocks - 1)
    return after, size * sympy.Mod(chunk + 1, chunks) + lane


def _hints(nest: Nest, lines) -> tuple:
    return tuple(loops.Prefetch(name, tuple(map(nest.scope.index, i))) for name, i in lines)


def _next_block_lines(te: TensorExpr, weights, width: int) -> tuple:
    """(tensor, index) of the lines of the next channel block's weights that match the
    current reduction step, issued at every step: each pass over a block pulls the next
    block's weights toward the core while it computes."""
    block = weights.indices[0]
    following = sympy.Min(block + 1, sympy.ceiling(sympy.sympify(te.shape[1]) / width) - 1)
    lines = range(0, width, LINE_FLOATS)
    return tuple((str(weights.base), (following, *weights.indices[1:-1], k)) for k in lines)


def _chunks_outside_rows(te: TensorExpr, schedule) -> bool:
    """Whether a chunked reduction's chunk loop runs outside the rows (`reduce_chunks`);
    not a dense layer's (no rows: its chunks run outside its blocks of batch rows)."""
    order = list(schedule.order)
    chunk = f"{te.reduce_indices[0]}.o"
    if len(te.indices) < 3:
        return False
    return chunk in order and order.index(chunk) < order.index(str(te.indices[2]))


def _next_pass_hints(nest: Nest, weights, width: int) -> tuple:
    """Hints for the lines of the next pass's weights, issued at each step of the loop
    around the innermost tap (`_reduce_loops`), for a reduction whose chunk loop runs
    outside the rows: a pass is one chunk of input channels over all rows, and the next
    pass reads the next chunk (of the next channel block after the last chunk), the
    weights that follow in memory. Each row takes its own lines of each step's taps (row
    r: line r mod L of the L lines the innermost tap and the lanes span), so the rows of a
    pass fetch the next chunk once between them, evenly, a line every few steps. The
    hints they replace fetched the next block's lines at every step of every row (a
    pass's first row asked for its whole chunk, 37 KB, in under a microsecond, and the
    other rows again): 3x3 512 @7 with its weights evicted to memory 1.527 -> 1.144 ms,
    from L3 1.285 -> 1.088 (faster than without hints, 1.21); ResNet-18 22.20 -> 20.68 ms
    at batch 1 (its layer4 convs 1.63-1.78 -> 1.20-1.39), 11.48 -> 10.64 on two threads,
    167.2 -> 158.4 at batch 8; VGG-11 111.7 -> 109.5; MobileNetV2, AlexNet and Inception
    unchanged (A/B in one process). Only for 2-D convs whose reduction indices are plain
    indices of the weights (`[o // T, c, a, b, o % T]`), over known rows; else (). The chunk's
    channel is written in the chunk loop's variables, not converted from `c`: sympy took
    tens of milliseconds a kernel to simplify the converted form."""
    te, c = nest.te, nest.chunk[0]
    taps, rows = te.reduce_indices[1:], sympy.sympify(te.shape[2])
    if len(te.indices) != 4 or tuple(weights.indices[1:-1]) != (c, *taps):
        return ()  # a 2-D conv's: other ranks' axis 2 is no loop outside the register block
    if not rows.is_number:
        return ()
    halves = width // LINE_FLOATS
    lines = int(te.reduce_shape[-1]) * halves  # those of the innermost tap's lanes
    per_step = -(-lines // int(rows))
    row = nest.scope.index(te.indices[2])
    after, channel = _next_chunk(nest, weights, width)
    outer = [nest.scope.index(t) for t in weights.indices[2:-2]]  # taps but the innermost
    hints = []
    for k in range(per_step):
        pick = sympy.Mod(per_step * row + k, lines)
        line = (sympy.floor(pick / halves), LINE_FLOATS * sympy.Mod(pick, halves))
        hints.append(loops.Prefetch(str(weights.base), (after, channel, *outer, *line)))
    return tuple(hints)


def _planes_read(te: TensorExpr, scope: Scope) -> sympy.Indexed | None:
    """The input of a 2-D conv read as NCHW planes (not channel-blocked) when it has at
    least HINTED_PLANES_MIN channels and HINTED_INPUT_MIN_BYTES an image, else None. Each
    step reads a row of another plane, more streams than the hardware prefetchers follow,
    so every row of every plane arrives as a demand miss once the input is past L2 (batch
    8): the kernel hints the row its next output row will read (`_next_row_hint`)."""
    if te.op != "conv" or len(te.indices) != 4 or len(te.reduce_indices) != 3:
        return None
    c, depth = te.reduce_indices[0], sympy.sympify(te.reduce_shape[0])
    if not depth.is_number or int(depth) < HINTED_PLANES_MIN:
        return None
    for x in sorted(te.body.atoms(sympy.Indexed), key=sympy.srepr):
        rows = x.indices[2].free_symbols if len(x.indices) == 4 else set()
        if str(x.base) not in scope.layouts and x.indices[1] == c and te.indices[2] in rows:
            plane = _spanned(te, x.indices[2], 2) * _spanned(te, x.indices[3], 3)
            return x if plane.is_number and plane * depth * 4 >= HINTED_INPUT_MIN_BYTES else None
    return None


def _spanned(te: TensorExpr, index, axis: int) -> sympy.Expr:
    """The input rows (axis 2) or columns (3) that the conv's windows span, padding
    included: `index` at the last output and the last tap, plus one."""
    out, tap = te.indices[axis], te.reduce_indices[axis - 1]
    last = {out: te.shape[axis] - 1, tap: te.reduce_shape[axis - 1] - 1}
    return sympy.sympify(index).xreplace(last) + 1


def _next_row_hint(nest: Nest) -> loops.Prefetch:
    """A hint for the line of the NCHW input (`nest.planes`) that the step's tap reads for
    the next output row, at the register block's first column: issued around the
    innermost tap, it runs a row ahead of the reads. The row is clamped to those the conv
    reads (padding rows excluded), so the hint stays in bounds."""
    te, x = nest.te, nest.planes
    i, (_, a, b) = te.indices[2], te.reduce_indices
    row, column = x.indices[2], x.indices[3]
    last = row.xreplace({i: te.shape[2] - 1, a: te.reduce_shape[1] - 1})
    for atom in conjuncts(te.condition):
        if isinstance(atom, sympy.StrictLessThan) and atom.lhs == row:
            last = sympy.Min(last, atom.rhs - 1)
    below = sympy.Min(sympy.Max(row.xreplace({i: i + 1}), 0), last)
    first = sympy.Max(column.xreplace({b: 0}), 0)
    index = [nest.scope.index(e) for e in (x.indices[0], x.indices[1], below, first)]
    if nest.block is not None:  # the block's first column
        index = [sympy.sympify(e).xreplace({nest.block[3]: 0}) for e in index]
    return loops.Prefetch(str(x.base), tuple(index))


def _mixed(atoms, j, out_vars) -> bool:
    """Whether a bound check ties `j` to another output index (it cannot sit per copy)."""
    return any(j in a.free_symbols and (a.free_symbols & set(out_vars)) - {j} for a in atoms)


def _empty(start, stop) -> bool:
    return (sympy.sympify(stop) - start).is_zero is True


def _columns(nest: Nest, tile, var_j, start, stop, atoms) -> loops.Stmt:
    """Output columns start..stop one at a time, channels vectorized."""
    return loops.For(var_j, start, stop, _vector_channels(nest, tile, atoms))


def _vector_channels(nest: Nest, tile, atoms) -> loops.Stmt:
    axis, width, _, var_i = tile
    extent = sympy.sympify(nest.te.shape[nest.te.indices.index(axis)])
    start = nest.scope.subs[axis] - var_i  # the tile's first index, in loop variables
    tail = _narrow_tail(extent, width)
    whole = (extent % width).is_zero or tail is not None  # the other tiles are full
    stop = width if whole else sympy.Min(width, extent - start)
    body = _point(nest, atoms)
    vector = loops.For(var_i, 0, stop, body, kind="vectorized", width=width, tail="masked")
    if tail is None:
        return vector
    short = replace(nest, width=tail)
    narrow = loops.For(var_i, 0, tail, _point(short, atoms), kind="vectorized", width=tail)
    last = loops.Cmp("eq", loops.Index(start), loops.Index(extent - tail))
    return loops.If(last, narrow, vector)


def _narrow_tail(extent, width: int) -> int | None:
    """The channels (features) of the last tile when they fill whole registers of this
    machine but not the tile, else None: that tile then runs as a vector of only them
    (`_vector_channels`) rather than a masked vector of `width`, whose dead half is
    computed all the same, and the other tiles, all whole, run unmasked. With AVX2's
    8-float registers, 24 channels are a tile of 16 and a tail of 8: MobileNetV2's 1x1
    projections to 24 channels at batch 8 (fastest of 10 profiles, ms) 96->24 @56 1.854
    -> 1.343, 144->24 @56 + add 2.942 -> 2.251 (ONNX Runtime's nodes 1.507 and 2.493)."""
    if not extent.is_number:
        return None
    tail = int(extent) % width
    return tail if tail and tail % blocks().lanes == 0 else None
