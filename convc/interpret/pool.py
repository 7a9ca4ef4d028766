"""Pooling (1-D, 2-D, 3-D), ONNX semantics, in NumPy.

max_pool   the maximum over each (dilated) window of x padded with -inf.
avg_pool   the window sum of x padded with zeros, divided by the window's count:
           the in-bounds samples (count_include_pad=0), or the samples inside
           the input or its declared padding (count_include_pad=1). Positions
           that ceil_mode adds beyond the right padding never count, as in
           PyTorch and ONNX Runtime.
ceil_mode  rounds the window count up, but a last window that would start in
           the right padding is dropped.
global_*   the mean or maximum over all spatial positions, kept as size-1 axes.

A dilated window can skip the whole input and see padding only (size 1,
kernel 2, dilation 2, SAME pads 1+1): max_pool gives -inf there, as PyTorch
and ONNX Runtime do, and avg_pool without count_include_pad the empty mean
NaN.
"""

from __future__ import annotations

import numpy as np

from .core import implements
from .windows import explicit_pads, windows


def _ceil_extra(size, kernel, stride, dilation, pad_begin, pad_end) -> int:
    """How far past the right padding ceil_mode's last window reaches (0 if it does not)."""
    extent = dilation * (kernel - 1) + 1
    padded = size + pad_begin + pad_end
    count = -(-(padded - extent) // stride) + 1
    if (count - 1) * stride >= size + pad_begin:
        count -= 1
    return max(0, (count - 1) * stride + extent - padded)


def _window_params(node, x):
    """kernel, strides, dilations, explicit pads and ceil_mode's extra end padding."""
    attrs = node.attrs
    rank = x.ndim - 2
    kernel, strides, dilations = attrs["kernel_shape"], attrs["strides"], attrs["dilations"]
    pads = explicit_pads(attrs, x.shape[2:])
    extra = [0] * rank
    if attrs["ceil_mode"]:
        extra = [
            _ceil_extra(
                x.shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[rank + i]
            )
            for i in range(rank)
        ]
    return kernel, strides, dilations, pads, extra


def _window_axes(x) -> tuple[int, ...]:
    """The trailing kernel axes of `windows(x, ...)`."""
    rank = x.ndim - 2
    return tuple(range(2 + rank, 2 + 2 * rank))


@implements("max_pool")
def max_pool(node, args):
    (x,) = args
    kernel, strides, dilations, pads, extra = _window_params(node, x)
    view = windows(x, kernel, strides, dilations, pads, -np.inf, extra)
    return view.max(axis=_window_axes(x))


@implements("avg_pool")
def avg_pool(node, args):
    (x,) = args
    kernel, strides, dilations, pads, extra = _window_params(node, x)
    axes = _window_axes(x)
    sums = windows(x, kernel, strides, dilations, pads, 0.0, extra).sum(axis=axes)
    rank = x.ndim - 2
    # 1 where a sample counts: in the input, or in its declared padding when count_include_pad
    counted = np.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    counted = np.pad(
        counted,
        [(0, 0), (0, 0), *((pads[i], pads[rank + i]) for i in range(rank))],
        constant_values=float(node.attrs["count_include_pad"]),
    )
    counts = windows(counted, kernel, strides, dilations, (0,) * (2 * rank), 0.0, extra)
    with np.errstate(invalid="ignore"):  # a dilated window of padding only: 0/0 = NaN
        return sums / counts.sum(axis=axes)


@implements("global_avg_pool")
def global_avg_pool(node, args):
    (x,) = args
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


@implements("global_max_pool")
def global_max_pool(node, args):
    (x,) = args
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)
