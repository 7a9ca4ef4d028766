"""The point body of a loop nest: a register block's accumulators, the reduction loops
around their updates (window taps unrolled, input lanes, chunks of a cache-blocked
reduction), and the stores that apply the epilogue.

Stage: lowering (loop IR). Input: a `Nest` whose scope places the output tiles.
Output: the statement computing and storing one register block (or one output).
Invariant: a bound check sits right after the loop binding its last index, or inside
the unrolled copy of the register block whose column it checks.
"""

from __future__ import annotations

from dataclasses import replace

import sympy

from convc import loops
from convc.texpr import ACC, TensorExpr

from ..convert import Scope, condition, convert
from ..registers import blocks
from .base import Nest, block_loop, guard
from .hints import next_row_hint

UPDATE = {"sum": "add", "max": "max"}
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


def point(nest: Nest, atoms) -> loops.Stmt:
    te = nest.te
    if te.reduction == "none":
        return block_loop(nest, lambda k: _pointwise(nest, atoms))
    acc = nest.names.fresh("acc")
    sets = _accumulator_sets(nest)
    shape = (sets * nest.block[1],) if nest.block else ()
    start = _added_first(nest) if sets == 1 else None
    if start is not None:
        nest = replace(nest, te=replace(te, epilogue=None))
    identity = convert(te.identity if start is None else start, nest.scope)
    body = _reduce_loops(nest, atoms, acc, sets)
    if sets > 1:
        body = loops.Block((body, block_loop(nest, lambda k: _folded(nest, acc, k))))
    stores = block_loop(nest, lambda k: store(nest, loops.Ref(acc, k)))
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
    resume = block_loop(nest, lambda k: loops.Assign(acc, k, loops.Load(buffer, index)))
    partial = block_loop(nest, lambda k: loops.Store(buffer, index, loops.Ref(acc, k)))
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
            return guard(_max_update(nest, acc, k, term), per_copy, scope)
        value = loops.Binary(UPDATE[te.reduction], loops.Ref(acc, k), term)
        return guard(loops.Assign(acc, k, value), per_copy, scope)

    stmt = block_loop(nest, update)
    if nest.prefetch:
        stmt = loops.Block((*nest.prefetch, stmt))
    inner = _lanes_inside(nest, atoms)  # channel lanes inside the outer taps
    for level in range(len(te.reduce_indices) - 1, -1, -1):
        if level == len(te.reduce_indices) - 2:
            stmt = _around_innermost(nest, stmt, inner)
        stmt = guard(stmt, [a for a in atoms if depth[a] == level], scope)
        var, extent = loops.loop_var(str(te.reduce_indices[level])), te.reduce_shape[level]
        if nest.lanes and nest.lanes[0] == te.reduce_indices[level]:  # blocks x lanes
            _, size, var, lane = nest.lanes
            if not inner:
                stmt = loops.For(lane, 0, size, stmt)
            extent = sympy.sympify(nest.chunk[1] if nest.chunk else extent) / size  # of a chunk
        elif nest.chunk and nest.chunk[0] == te.reduce_indices[level]:
            if inner:  # its loop runs inside the taps
                continue
            var, extent = nest.chunk[3], nest.chunk[1]
        lanes = te.reduce_indices[level] == nest.reduced  # a partial accumulator a lane
        kind = {"kind": "vectorized", "width": nest.width, "tail": "masked"} if lanes else {}
        if not kind and _unrolled_taps(nest, level, extent, inner is not None):
            kind = {"kind": "unrolled"}
        stmt = loops.For(var, 0, extent, stmt, **kind)
    return guard(stmt, [a for a in atoms if depth[a] == -1], scope)


def _around_innermost(nest: Nest, stmt: loops.Stmt, inner: tuple | None) -> loops.Stmt:
    """The body of the loop around the innermost tap's (`stmt`, that loop): the next
    pass's weight hints (`nest.spread`), the hint for an NCHW input's next row
    (`nest.planes`), and around them the lanes loop of a blocked input (`inner`)."""
    hints = (*nest.spread, *((next_row_hint(nest),) if nest.planes else ()))
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
    `input_lanes`, or a reduction chunk over such an input) run inside the outer window
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
    if nest.chunk and input_lanes(te, nest.scope):
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


def _pointwise(nest: Nest, atoms) -> loops.Stmt:
    te = nest.te
    value = store(nest, convert(te.body, nest.scope))
    if not atoms:
        return value
    other = store(nest, convert(te.identity, nest.scope))
    return loops.If(condition(sympy.And(*atoms), nest.scope), value, other)


def store(nest: Nest, acc: loops.Expr, streaming: bool = False) -> loops.Stmt:
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


def input_lanes(te: TensorExpr, scope: Scope):
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


def reduce_chunk(te: TensorExpr, schedule):
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
