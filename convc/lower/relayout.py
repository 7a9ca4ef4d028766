"""Run-time re-layouts: temporaries that let a kernel read its operands the fast way.

Stage: part of lowering. Input: one tensor expression (and, for `transpose_for`, its
schedule). Output: temporaries (reduction-"none" `TensorExpr`s with role "temp",
computed first in the same kernel) and the expression rewritten to read them.
Each temporary costs one pass over its source (O(weights) or O(activations)),
against the O(MACs) kernel it speeds up.

- `pad_operand`: a reduction whose whole condition is the bounds of one operand's
  accesses (a gradient reading the upstream gradient or the input in a window, e.g.
  the input gradient `dy[n, o, u - a, v - b]` where `0 <= u - a < H`) reads a
  zero-padded copy instead: the condition disappears, so the kernel has no border
  columns and no checks at all (compile-time `regions` can only move checks to the
  borders; a copy removes them);
- `transpose_for`: a channel-vector schedule (vector axis "o.i", tiles of T = 16
  or 32) whose operand holds the vectorized index `o` as a plain index before its
  last axis (run-time conv or dense weights `w[o, c, a, b]`, the upstream
  gradient `dy[n, o, i, j]` of a weight gradient) reads a copy blocked as
  `[o/T][c][a][b][T]` (zero past the end): a vector is a contiguous load instead
  of a gather, and one tile's operand is one contiguous slice. Constant weights
  are packed the same way at compile time instead (`packing`); this is the
  run-time counterpart for training steps, where the weights are inputs.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import sympy

from convc.texpr import TensorExpr, access, index
from convc.texpr.rules import bound_condition

from .regions import _GE_ZERO, conjuncts
from .schedule import tile_block


def _ranges(te: TensorExpr) -> dict:
    return dict(zip(te.indices, te.shape)) | dict(zip(te.reduce_indices, te.reduce_shape))


#: The most value combinations `_extreme` tries for the indices inside floors.
MAX_FLOOR_CASES = 256


def _extreme(expr, ranges: dict, low: bool):
    """The minimum (`low`) or maximum of `expr` over `ranges`, or None: exact for affine
    `expr`, and for indices inside floors (a group's `floor(c/C_g)`, `c - C_g*floor(c/C_g)`)
    by trying each of their values when there are at most MAX_FLOOR_CASES."""
    expr = sympy.expand(expr)
    inside = sorted({s for f in expr.atoms(sympy.floor) for s in f.free_symbols}, key=str)
    if not inside:
        return _affine_extreme(expr, ranges, low)
    extents = [ranges.get(s) for s in inside]
    if not all(e is not None and sympy.sympify(e).is_number for e in extents):
        return None
    if math.prod(int(e) for e in extents) > MAX_FLOOR_CASES:
        return None
    values = []
    for point in itertools.product(*(range(int(e)) for e in extents)):
        value = _affine_extreme(expr.subs(dict(zip(inside, point))), ranges, low)
        if value is None or not value.is_number:
            return None
        values.append(value)
    return min(values) if low else max(values)


def _affine_extreme(expr, ranges: dict, low: bool):
    expr = sympy.expand(expr)
    for sym in expr.free_symbols:
        coeff = expr.coeff(sym)
        if sym not in ranges or not coeff.is_number or sym in (expr - coeff * sym).free_symbols:
            return None
        at_zero = (coeff >= 0) == low
        expr = expr.subs(sym, 0 if at_zero else ranges[sym] - 1)
    return sympy.expand(expr)


def _bounded_axis(atom, indices, extents):
    """(axis, "lo" | "hi") when `atom` is 0 <= indices[axis] or indices[axis] < extent."""
    if type(atom) not in _GE_ZERO:
        return None
    slack = sympy.expand(_GE_ZERO[type(atom)](*atom.args))
    for axis, (f, extent) in enumerate(zip(indices, extents)):
        if sympy.expand(slack - f) == 0:
            return axis, "lo"
        if sympy.expand(slack - (extent - 1 - f)) == 0:
            return axis, "hi"
    return None


def pad_operand(te: TensorExpr, shapes: dict) -> tuple[list, TensorExpr]:
    """([padded copy], te reading it without a condition), or ([], te) when the condition
    is not exactly the bounds of a single access of one operand, or when another access
    relies on it too (an average pool's divisor read at the same positions) (`shapes`:
    name -> shape)."""
    atoms = conjuncts(te.condition)
    found = [a for a in te.body.atoms(sympy.Indexed) if str(a.base) in shapes]
    if te.reduction != "sum" or not atoms or not found:
        return [], te
    for a in found:
        if sum(str(b.base) == str(a.base) for b in found) > 1:
            continue
        extents = shapes[str(a.base)]
        matched = [_bounded_axis(atom, a.indices, extents) for atom in atoms]
        others = [b for b in te.body.atoms(sympy.Indexed) if b.base != a.base]
        if None not in matched and all(_in_range(te, b, shapes) for b in others):
            return _padded(te, a, extents, {axis for axis, _ in matched})
    return [], te


def shared_pad(parts: list) -> tuple[list, list]:
    """([copies], expressions) for `(copies, te)` pairs from `pad_operand`. When the parts
    pad one operand by their own amounts (the residue classes of one gradient; a class
    needing none reads the operand itself), one copy padded by the most on each side
    serves them all, each part reading it at its own offset; else each keeps its copies."""
    copies = [c for cs, _ in parts for c in cs]
    sources = {c.attrs["source"] for c in copies}
    if len(parts) < 2 or len(sources) != 1 or any(len(cs) > 1 for cs, _ in parts):
        return copies, [te for _, te in parts]
    first, zero = copies[0], [sympy.Integer(0)] * len(copies[0].shape)
    extents = first.attrs["extents"]
    lows = [cs[0].attrs["lows"] if cs else zero for cs, _ in parts]
    ends = [
        [s - lo for s, lo in zip(cs[0].shape, low)] if cs else extents
        for (cs, _), low in zip(parts, lows)
    ]
    most = [sympy.Max(*column) for column in zip(*lows)]
    end = [sympy.Max(*column) for column in zip(*ends)]
    union = _pad_copy(parts[0][1], first.attrs["source"], extents, most, end, "")
    moved = []
    for (cs, te), low in zip(parts, lows):
        read = cs[0].name if cs else first.attrs["source"]
        swaps = {
            a: access(union.name, [f + m - lo for f, m, lo in zip(a.indices, most, low)], te.dtype)
            for a in te.body.atoms(sympy.Indexed)
            if str(a.base) == read
        }
        moved.append(replace(te, body=te.body.xreplace(swaps)))
    return [union], moved


def _in_range(te: TensorExpr, b: sympy.Indexed, shapes: dict) -> bool:
    """Whether every index of access `b` stays in its tensor's bounds without the condition
    (the condition is dropped once the padded operand absorbs it)."""
    extents = shapes.get(str(b.base))
    if extents is None or len(extents) != len(b.indices):
        return False
    ranges = _ranges(te)
    for f, extent in zip(b.indices, extents):
        low, high = _extreme(f, ranges, True), _extreme(f, ranges, False)
        if low is None or high is None:
            return False
        if not (
            sympy.sympify(low >= 0) == sympy.true and sympy.sympify(high < extent) == sympy.true
        ):
            return False
    return True


def _padded(te: TensorExpr, a: sympy.Indexed, extents, axes) -> tuple[list, TensorExpr]:
    ranges = _ranges(te)
    lows, highs = [], []
    for axis, (f, extent) in enumerate(zip(a.indices, extents)):
        low, high = _extreme(f, ranges, True), _extreme(f, ranges, False)
        if axis not in axes or low is None or high is None:
            if axis in axes:
                return [], te
            low, high = sympy.Integer(0), sympy.sympify(extent) - 1
        lows.append(sympy.Max(0, -low))
        highs.append(sympy.Max(0, high - (extent - 1)))
    ends = tuple(e + hi for e, hi in zip(extents, highs))
    copy = _pad_copy(te, str(a.base), extents, lows, ends, te.attrs.get("residue", ""))
    moved = access(copy.name, tuple(f + lo for f, lo in zip(a.indices, lows)), te.dtype)
    return [copy], replace(te, body=te.body.xreplace({a: moved}), condition=sympy.true)


def _pad_copy(te: TensorExpr, source: str, extents, lows, ends, tag: str) -> TensorExpr:
    """`copy[p] = source[p - lows]` (zero outside `source`) of shape `lows + ends` (`ends`:
    the extent past the low padding)."""
    idx = tuple(index(f"p{k}") for k in range(len(extents)))
    shifted = tuple(i - lo for i, lo in zip(idx, lows))
    shape = tuple(lo + end for lo, end in zip(lows, ends))
    ranges = dict(zip(idx, shape))
    return TensorExpr(
        name=f"{te.name}{tag}:{source}.pad",
        indices=idx,
        shape=shape,
        body=access(source, shifted, te.dtype),
        condition=sympy.And(*(bound_condition(s, e, ranges) for s, e in zip(shifted, extents))),
        dtype=te.dtype,
        op=te.op,
        node=te.node,
        role="temp",
        attrs={
            "family": "elementwise",
            "relayout": "pad",
            "source": source,
            "extents": tuple(extents),
            "lows": tuple(lows),
        },
    )


def transpose_for(
    te: TensorExpr, schedule, shapes: dict, constants: set
) -> tuple[list, TensorExpr]:
    """([blocked copies], te reading them) for a channel-vector schedule; see module doc.
    `shapes`: operand name -> shape; `constants` are left to compile-time packing."""
    vector = schedule.vector_axis or ""
    if not vector.endswith(".i") or te.reduction != "sum":
        return [], te
    v = next((i for i in te.indices if str(i) == vector[:-2]), None)
    width = schedule.tiles.get(str(v))
    copies, swaps = {}, {}
    for a in sorted(te.body.atoms(sympy.Indexed), key=sympy.srepr):
        name = str(a.base)
        if name in constants or name not in shapes or v not in a.indices[:-1]:
            continue
        position = a.indices.index(v)
        others = [f for k, f in enumerate(a.indices) if k != position]
        if any(v in sympy.sympify(f).free_symbols for f in others):
            continue
        copy = _blocked(te, name, shapes[name], position, width, schedule.vector_width)
        copies[copy.name] = copy
        block, lane = tile_block(v, width, schedule.vector_width)
        swaps[a] = access(copy.name, (block, *others, lane), te.dtype)
    return list(copies.values()), replace(te, body=te.body.xreplace(swaps))


def _blocked(
    te: TensorExpr, source: str, extents, position: int, width: int, lanes: int
) -> TensorExpr:
    """`copy[q, .., r] = source[.., width*q + r, ..]` (axis `position` split and its inner
    part moved last), zero past the axis' end so every block is whole; for a tile of one
    group's `width` channels (`schedule.group_tile`) blocks of the vector's `lanes`, zero
    past the tile, so each block starts a line: one a tile, or B = ceil(width/lanes)
    (`copy[q, .., r] = source[.., width*(q // B) + lanes*(q % B) + r, ..]`), as
    `schedule.tile_block` reads them."""
    idx = [index(f"t{k}") for k in range(len(extents) + 1)]
    outer, inner = idx[0], idx[-1]
    rest = iter(idx[1:-1])
    per = -(-width // lanes)  # vectors a tile
    within = lanes * sympy.Mod(outer, per) + inner if per > 1 else inner
    split = width * (sympy.floor(outer / per) if per > 1 else outer) + within
    read = [split if k == position else next(rest) for k in range(len(extents))]
    extent = sympy.sympify(extents[position])
    tiles = sympy.ceiling(extent / width) * per
    shape = [tiles, *(e for k, e in enumerate(extents) if k != position)]
    inside = sympy.true if (extent % width).is_zero else sympy.Lt(split, extent)
    padded = f"in{lanes}" if lanes != width else ""
    return TensorExpr(
        name=f"{te.name}:{source}.{position}b{width}{padded}",
        indices=tuple(idx),
        shape=(*shape, lanes),
        body=access(source, read, te.dtype),
        condition=sympy.And(inside, sympy.Lt(within, width)) if padded else inside,
        dtype=te.dtype,
        op=te.op,
        node=te.node,
        role="temp",
        attrs={"family": "elementwise", "relayout": "block"},
    )
