"""Data-movement ops in NumPy: flatten, reshape, concat, identity, constant pad.

A reshape target or pad amounts may be run-time inputs; values that do not
fit the data raise InputError naming the values.
"""

from __future__ import annotations

import math

import numpy as np

from ir import InputError

from .core import implements
from .windows import crop_or_pad


@implements("flatten")
def flatten(node, args):
    (x,) = args
    axis = node.attrs["axis"]
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


@implements("reshape")
def reshape(node, args):
    """ONNX Reshape: 0 copies the input's dim (unless allowzero), -1 takes what remains."""
    x, target = args
    dims = [int(v) for v in target.reshape(-1)]
    if not node.attrs["allowzero"]:
        dims = [x.shape[i] if v == 0 and i < x.ndim else v for i, v in enumerate(dims)]
    known = math.prod(v for v in dims if v != -1)
    fits = known == x.size if -1 not in dims else known > 0 and x.size % known == 0
    if dims.count(-1) > 1 or any(v < -1 for v in dims) or not fits:
        raise InputError(f"cannot reshape an array of shape {x.shape} to {dims}")
    return x.reshape(dims)


@implements("concat")
def concat(node, args):
    return np.concatenate(args, axis=node.attrs["axis"])


@implements("identity")
def identity(node, args):
    return args[0]


@implements("pad")
def pad(node, args):
    """Constant padding; negative amounts crop, as ONNX Pad allows."""
    x, pads, value, axes = (*args, None, None)[:4]
    axes = range(x.ndim) if axes is None else [int(a) % x.ndim for a in axes.reshape(-1)]
    axes = list(axes)
    pads = [int(p) for p in pads.reshape(-1)]
    if len(pads) != 2 * len(axes):
        raise InputError(f"pads {pads} should have {2 * len(axes)} entries for axes {axes}")
    begins, ends = pads[: len(axes)], pads[len(axes) :]
    for axis, begin, end in zip(axes, begins, ends):
        if x.shape[axis] + begin + end < 0:
            raise InputError(f"pads {pads} make axis {axis} of shape {x.shape} negative")
    fill = 0.0 if value is None else value.reshape(-1)[0]
    return crop_or_pad(x, axes, begins, ends, fill)
