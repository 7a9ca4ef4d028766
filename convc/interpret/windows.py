"""Padded sliding windows, the building block of convolution and pooling.

`windows(x, ...)` views an (N, C, *S) array as (N, C, *S_out, *K): for every
output position, the kernel's (dilated, strided) samples of the padded input.
It is a strided view of one padded copy of x: reductions over the trailing K
axes give pooling, and a matrix product over (C, K) gives convolution (the
reshape before it copies the patches out, im2col style).

Pads are ONNX-ordered [begins..., ends...]; `crop_or_pad` applies per-axis
amounts where a negative amount crops, as ONNX Pad and ConvTranspose need.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ir import InputError
from ir.ops.window import resolve_pads


def explicit_pads(attrs: dict, spatial) -> tuple[int, ...]:
    """A conv or pool node's pads for concrete spatial sizes (auto_pad SAME_* resolved here)."""
    pads = resolve_pads(
        tuple(spatial),
        attrs["kernel_shape"],
        attrs["strides"],
        attrs["dilations"],
        attrs["pads"],
        attrs["auto_pad"],
    )
    return tuple(int(p) for p in pads)


def crop_or_pad(x: np.ndarray, axes, begins, ends, fill=0.0) -> np.ndarray:
    """Add `fill` along `axes` (negative amounts remove elements instead)."""
    crop = [slice(None)] * x.ndim
    widths = [(0, 0)] * x.ndim
    for axis, begin, end in zip(axes, begins, ends):
        crop[axis] = slice(max(-begin, 0), x.shape[axis] - max(-end, 0))
        widths[axis] = (max(begin, 0), max(end, 0))
    return np.pad(x[tuple(crop)], widths, constant_values=fill)


def windows(x, kernel, strides, dilations, pads, fill=0.0, extra_end=None) -> np.ndarray:
    """The (N, C, *S_out, *K) view of x's windows after padding with `fill`.

    `extra_end` pads further at the end of each spatial axis (ceil_mode's
    partial last window); those positions are filled with `fill` too.
    """
    rank = len(kernel)
    extra_end = extra_end or (0,) * rank
    spatial_axes = tuple(range(2, 2 + rank))
    extents = [dilations[i] * (kernel[i] - 1) + 1 for i in range(rank)]
    for i in range(rank):
        if x.shape[2 + i] + pads[i] + pads[rank + i] < extents[i]:
            raise InputError(
                f"input of shape {x.shape} is too small: spatial size {x.shape[2 + i]} with pads "
                f"{pads[i]}+{pads[rank + i]} along axis {i} is less than the window extent "
                f"{extents[i]}"
            )
    ends = [pads[rank + i] + extra_end[i] for i in range(rank)]
    padded = crop_or_pad(x, spatial_axes, pads[:rank], ends, fill)
    view = sliding_window_view(padded, extents, axis=spatial_axes)
    positions = tuple(slice(None, None, s) for s in strides)
    samples = tuple(slice(None, None, d) for d in dilations)
    return view[(slice(None), slice(None), *positions, *samples)]
