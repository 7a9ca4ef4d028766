"""Splitting a strided gradient's (or transposed conv's) outputs by residue class.

Stage: TensorExpr -> [TensorExpr] (lowering, before the run-time re-layouts).

Autodiff's residue split (`convc.autodiff.residues`) leaves an input gradient of a
stride-s conv reading `dy[.., floor((u + p)/s) - t, ..]` and `w[.., s*t + (u + p) mod s
written with floors, ..]`: no divisibility test, but the indices are floors of the output
index `u`, so the operand cannot be padded (`relayout.pad_operand` needs affine indices),
the bound checks stay and the row runs one column at a time. Writing each strided output
axis as `u = s*q + r` for each residue `r < s` makes every floor affine in `q` (sympy
folds `floor(q + (r + p)/s)` to `q + const`): each class is a dense, stride-1 correlation

    dx[n, c, s*q + r, ..] = Σ_{o, t < T_r} dy[n, o, q + k_r - t, ..] * w[o, c, s*t + m_r, ..]

whose tap extent `T_r` absorbs the class' condition on `t` alone, so its only condition
is the bounds of `dy`: padded away like a stride-1 gradient's, the interior vectorized
(channel vectors for 16k channels). A transposed convolution is the same expression
once its divisibility conditions are split (`split_residues`).

Each class keeps the original's name (its values go to the same buffer and the same
fused epilogue) and records in attrs["store_index"] where its element lies in that
buffer (`s*q + r`) and in attrs["residue"] a tag that tells its copies apart.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import sympy

from convc.autodiff.residues import split_residues
from convc.texpr import TensorExpr, index

from .regions import conjuncts
from .relayout import _extreme


def _strides(te: TensorExpr) -> dict:
    """Spatial output index -> stride s for every spatial axis (after batch and channels)
    some floor divides by s > 1 (a channel axis' floors are groups, not strides)."""
    found = {}
    parts = [te.body, te.condition] + ([te.epilogue] if te.epilogue is not None else [])
    for part in parts:
        for floor in sympy.sympify(part).atoms(sympy.floor):
            arg = sympy.expand(floor.args[0])
            for u in te.indices[2:]:
                denominator = sympy.Rational(arg.coeff(u)).q if arg.coeff(u).is_Rational else 1
                if denominator > 1:
                    found[u] = math.lcm(found.get(u, 1), denominator)
    return found


def residue_classes(te: TensorExpr) -> list[TensorExpr]:
    """The classes of `te` (module doc), or [te] when no output axis is strided, an axis is
    symbolic, or a class would keep a floor or a mod."""
    if te.reduction != "sum":
        return [te]
    if any(isinstance(p, sympy.Eq) for p in conjuncts(te.condition)):
        te = split_residues(te)
    strides = _strides(te)
    shapes = dict(zip(te.indices, te.shape))
    if not strides or not all(shapes[u].is_number for u in strides):
        return [te]
    axes = sorted(strides, key=te.indices.index)
    classes = []
    for residues in itertools.product(*(range(strides[u]) for u in axes)):
        part = _class(te, dict(zip(axes, residues)), strides)
        if part is False:
            return [te]
        if part is not None:
            classes.append(part)
    return classes


def _class(te: TensorExpr, residues: dict, strides: dict):
    """The class `u = s*q + r` for each axis (None if empty, False if a floor or mod of a
    strided or reduction index is left)."""
    subs, shape, indices = {}, [], []
    for u, extent in zip(te.indices, te.shape):
        if u not in residues:
            indices.append(u)
            shape.append(extent)
            continue
        s, r = strides[u], residues[u]
        q = index(f"{u}_q")
        subs[u] = s * q + r
        indices.append(q)
        shape.append(sympy.Integer((int(extent) - r + s - 1) // s))
    if any(e == 0 for e in shape):
        return None
    body = sympy.expand(te.body.xreplace(subs))
    epilogue = None if te.epilogue is None else te.epilogue.xreplace(subs)
    ranges = dict(zip(indices, shape))
    reduce_shape, kept = _tighten(te, te.condition.xreplace(subs), ranges)
    parts = [body, *kept] + ([epilogue] if epilogue is not None else [])
    strided = {subs[u].free_symbols.pop() for u in residues} | set(te.reduce_indices)
    divisions = {d for p in parts for d in sympy.sympify(p).atoms(sympy.floor, sympy.Mod)}
    if any(d.free_symbols & strided for d in divisions):  # (a group's floor(c/C_g) may stay)
        return False
    tag = "@" + "_".join(str(r) for r in residues.values())
    store = tuple(subs.get(u, u) for u in te.indices)
    return replace(
        te,
        indices=tuple(indices),
        shape=tuple(shape),
        body=body,
        epilogue=epilogue,
        reduce_shape=reduce_shape,
        condition=sympy.And(*kept),
        attrs={**te.attrs, "store_index": store, "residue": tag},
    )


def _tighten(te: TensorExpr, condition, ranges: dict) -> tuple[tuple, list]:
    """(reduce extents, remaining atoms): an atom `k*t + c < K` on one reduction index t
    shrinks t's extent; then atoms true over all the ranges are dropped."""
    extents = dict(zip(te.reduce_indices, te.reduce_shape))
    rest = []
    for atom in conjuncts(sympy.sympify(condition)):
        limit = _tap_limit(sympy.sympify(atom), extents)
        if limit is None:
            rest.append(atom)
        else:
            extents[limit[0]] = sympy.Max(0, sympy.Min(extents[limit[0]], limit[1]))
    kept = [a for a in rest if a != sympy.true and not _always(a, ranges | extents)]
    return tuple(extents[t] for t in te.reduce_indices), kept


def _tap_limit(atom, extents: dict):
    """(t, L) when `atom` says t < L for a single reduction index t, else None."""
    free = atom.free_symbols
    if len(free) != 1 or not isinstance(atom, sympy.StrictLessThan):
        return None
    (t,) = free
    slack = sympy.expand(atom.rhs - atom.lhs)  # the atom says slack > 0
    k = slack.coeff(t)
    if t not in extents or not k.is_number or k >= 0 or not (slack - k * t).is_number:
        return None
    return t, sympy.ceiling((slack - k * t) / -k)


def _always(atom, ranges: dict) -> bool:
    """Whether comparison `atom` holds for every index value in `ranges`."""
    if not isinstance(atom, sympy.StrictLessThan | sympy.LessThan):
        return False
    slack = sympy.expand(atom.rhs - atom.lhs)
    low = _extreme(slack, ranges, True)
    if low is None or not low.is_number:
        return False
    return bool(low > 0) if isinstance(atom, sympy.StrictLessThan) else bool(low >= 0)
