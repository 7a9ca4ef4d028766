"""Data-movement ops: flatten, reshape, concat, identity, constant pad.

flatten  (d0, ..., dk) -> (prod(d0..d[axis-1]), prod(d[axis]..dk))
reshape  to the `shape` input (ONNX: 0 copies the input dim unless
         allowzero, -1 is inferred); a run-time shape gives fresh symbols.
concat   along `axis`; every other dim must match.
pad      `pads` as [begins..., ends...] over all axes (or over `axes`), with a
         constant value; only mode='constant'.
"""

from __future__ import annotations

import numpy as np
import sympy

from ..types import TensorType, dim, is_known
from .registry import Attr, define, normalize_axis


def _product(dims):
    return sympy.Mul(*dims) if dims else sympy.Integer(1)


def infer_flatten(ctx):
    x = ctx.inputs[0]
    axis = ctx.attrs["axis"]
    if not -x.rank <= axis <= x.rank:
        raise ctx.error(f"axis {axis} is out of range for input {x}")
    axis = axis + x.rank if axis < 0 else axis
    ctx.attrs["axis"] = axis
    return [TensorType((_product(x.shape[:axis]), _product(x.shape[axis:])), x.dtype)]


def infer_reshape(ctx):
    x, shape_type = ctx.inputs
    if shape_type.rank != 1 or not is_known(shape_type.shape[0]) or shape_type.dtype != "int64":
        raise ctx.error(
            f"shape input has type {shape_type}; expected a 1-D int64 tensor of known length"
        )
    target = ctx.const(1)
    if target is None:
        fresh = [ctx.fresh_dim(f"d{i}") for i in range(int(shape_type.shape[0]))]
        return [TensorType(tuple(fresh), x.dtype)]
    return [TensorType(reshape_dims(ctx, x.shape, [int(v) for v in target]), x.dtype)]


def reshape_dims(ctx, in_shape, target):
    """Resolve ONNX reshape's 0 and -1 entries against the input shape."""
    allowzero = ctx.attrs["allowzero"]
    dims, infer_at = [], None
    for i, v in enumerate(target):
        if v == -1:
            if infer_at is not None:
                raise ctx.error(f"shape {target} has more than one -1")
            infer_at = i
            dims.append(None)
        elif v == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.error(
                    f"shape {target} copies dim {i} but the input has rank {len(in_shape)}"
                )
            dims.append(in_shape[i])
        elif v < 0:
            raise ctx.error(f"shape {target} has a negative entry {v}")
        else:
            dims.append(dim(v))
    total = _product(in_shape)
    known = _product([d for d in dims if d is not None])
    if infer_at is not None:
        inferred = sympy.cancel(total / known) if known != 0 else None
        if inferred is None or not (inferred.is_integer or inferred.free_symbols):
            raise ctx.error(f"cannot reshape {TensorType(in_shape)} to {target}")
        dims[infer_at] = inferred
    elif sympy.expand(total - known) != 0:
        raise ctx.error(
            f"cannot reshape {TensorType(in_shape)} ({total} elements) to {target} ({known})"
        )
    return tuple(dims)


def infer_concat(ctx):
    first = ctx.inputs[0]
    axis = normalize_axis(ctx, ctx.attrs["axis"], first.rank)
    ctx.attrs["axis"] = axis
    total = sympy.Integer(0)
    for i, t in enumerate(ctx.inputs):
        if t.rank != first.rank or t.dtype != first.dtype:
            raise ctx.error(f"input {i} {t} does not match input 0 {first} in rank or dtype")
        for a in range(first.rank):
            if a != axis and (t.shape[a] - first.shape[a]) != 0:
                raise ctx.error(f"input {i} {t} differs from input 0 {first} along axis {a}")
        total += t.shape[axis]
    return [TensorType((*first.shape[:axis], total, *first.shape[axis + 1 :]), first.dtype)]


def infer_identity(ctx):
    return [ctx.inputs[0]]


def infer_pad(ctx):
    x = ctx.inputs[0]
    pads, axes = ctx.const(1), ctx.const(3) if ctx.has_input(3) else None
    if ctx.has_input(3) and axes is None:
        raise ctx.unsupported("axes must be a constant")
    axes = (
        list(range(x.rank)) if axes is None else [normalize_axis(ctx, int(a), x.rank) for a in axes]
    )
    if ctx.inputs[1].rank != 1 or ctx.inputs[1].shape[0] != 2 * len(axes):
        raise ctx.error(
            f"pads has type {ctx.inputs[1]}; expected {2 * len(axes)} entries for axes {axes}"
        )
    if ctx.has_input(2) and ctx.inputs[2].rank > 1:
        raise ctx.error(f"constant_value has type {ctx.inputs[2]}; expected a scalar")
    shape = list(x.shape)
    if pads is None:
        for a in axes:
            shape[a] = ctx.fresh_dim(f"d{a}")
        return [TensorType(tuple(shape), x.dtype)]
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    for k, a in enumerate(axes):
        shape[a] = x.shape[a] + pads[k] + pads[k + len(axes)]
        if is_known(shape[a]) and shape[a] < 0:
            raise ctx.error(f"pads {pads} make axis {a} of {x} negative")
    return [TensorType(tuple(shape), x.dtype)]


define(
    "flatten",
    ("x",),
    infer_flatten,
    attrs={"axis": Attr("int", 1)},
    family="tensor",
    doc="Collapse to 2-D at `axis`.",
)
define(
    "reshape",
    ("x", "shape"),
    infer_reshape,
    attrs={"allowzero": Attr("int", 0, (0, 1))},
    family="tensor",
    doc="Reshape to the `shape` input.",
)
define(
    "concat",
    ("x",),
    infer_concat,
    attrs={"axis": Attr("int", 1)},
    variadic=True,
    family="tensor",
    doc="Join along `axis`.",
)
define("identity", ("x",), infer_identity, family="tensor", doc="Copy.")
define(
    "pad",
    ("x", "pads", "constant_value", "axes"),
    infer_pad,
    num_required=2,
    attrs={"mode": Attr("str", "constant", ("constant",))},
    family="tensor",
    doc="Pad with a constant.",
)
