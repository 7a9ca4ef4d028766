"""Convolution and transposed convolution (1-D, 2-D, 3-D), ONNX semantics, in NumPy.

conv            x: (N, C, *S), w: (M, C/G, *K), b: (M,) -> (N, M, *S_out):
                padded windows of x, one matrix product per group.
conv_transpose  x: (N, C, *S), w: (C, M/G, *K), b: (M,) -> (N, M, *S_out):
                written independently of conv, as a scatter: each kernel
                offset k adds x (times w[:, :, k]) into the output positions
                s*i + d*k, then the pads are cropped off.
"""

from __future__ import annotations

import math

import numpy as np

from .core import implements
from .windows import crop_or_pad, explicit_pads, windows


def _with_bias(y: np.ndarray, b) -> np.ndarray:
    return y if b is None else y + b.reshape(-1, *(1,) * (y.ndim - 2))


@implements("conv")
def conv(node, args):
    x, w, b = (*args, None)[:3]
    attrs = node.attrs
    rank = x.ndim - 2
    kernel, group = tuple(attrs["kernel_shape"]), attrs["group"]
    pads = explicit_pads(attrs, x.shape[2:])
    cols = windows(x, kernel, attrs["strides"], attrs["dilations"], pads)
    batch, channels, out_channels = x.shape[0], x.shape[1], w.shape[0]
    out = cols.shape[2 : 2 + rank]
    group_channels = channels // group
    cols = cols.reshape(batch, group, group_channels, *out, *kernel)
    # (group, batch, *out, channels of the group, *kernel): one patch matrix per group
    order = (1, 0, *range(3, 3 + rank), 2, *range(3 + rank, 3 + 2 * rank))
    patches = cols.transpose(order).reshape(group, batch * math.prod(out), -1)
    weights = w.reshape(group, out_channels // group, -1).transpose(0, 2, 1)
    y = np.matmul(patches, weights).reshape(group, batch, *out, out_channels // group)
    y = y.transpose(1, 0, 2 + rank, *range(2, 2 + rank)).reshape(batch, out_channels, *out)
    return _with_bias(y, b)


def transpose_pads(attrs: dict, spatial, kernel) -> tuple[int, ...]:
    """Explicit pads of a transposed convolution, from output_shape or auto_pad per the ONNX spec."""
    rank = len(spatial)
    target = attrs["output_shape"]
    if target is None and attrs["auto_pad"] == "NOTSET":
        return tuple(int(p) for p in attrs["pads"])
    if target is None and attrs["auto_pad"] == "VALID":
        return (0,) * (2 * rank)
    if target is None:
        target = [spatial[i] * attrs["strides"][i] for i in range(rank)]
    begins, ends = [], []
    for i in range(rank):
        total = _full_size(attrs, spatial[i], kernel[i], i) - int(target[i])
        half = total // 2
        upper = attrs["auto_pad"] == "SAME_UPPER"
        begins.append(half if upper else total - half)
        ends.append(total - half if upper else half)
    return (*begins, *ends)


def _full_size(attrs: dict, size: int, kernel: int, axis: int) -> int:
    """The uncropped output extent along one axis: s*(S-1) + output_padding + d*(K-1) + 1."""
    stride, dilation = attrs["strides"][axis], attrs["dilations"][axis]
    return stride * (size - 1) + attrs["output_padding"][axis] + dilation * (kernel - 1) + 1


@implements("conv_transpose")
def conv_transpose(node, args):
    x, w, b = (*args, None)[:3]
    attrs = node.attrs
    rank = x.ndim - 2
    spatial, kernel, group = x.shape[2:], w.shape[2:], attrs["group"]
    batch, channels = x.shape[:2]
    group_channels, group_out = channels // group, w.shape[1]
    full = [_full_size(attrs, spatial[i], kernel[i], i) for i in range(rank)]
    y = np.zeros((batch, group, group_out, *full), dtype=np.result_type(x, w))
    xg = x.reshape(batch, group, group_channels, math.prod(spatial))
    wg = w.reshape(group, group_channels, group_out, *kernel)
    for offset in np.ndindex(*kernel):
        # contribution[n, g, m, i] = sum_c x[n, g, c, i] * w[g, c, m, offset]
        tap = wg[(slice(None), slice(None), slice(None), *offset)].transpose(0, 2, 1)
        contribution = np.matmul(tap, xg).reshape(batch, group, group_out, *spatial)
        target = tuple(
            slice(
                attrs["dilations"][i] * offset[i],
                attrs["dilations"][i] * offset[i] + attrs["strides"][i] * (spatial[i] - 1) + 1,
                attrs["strides"][i],
            )
            for i in range(rank)
        )
        y[(slice(None), slice(None), slice(None), *target)] += contribution
    pads = transpose_pads(attrs, spatial, kernel)
    axes = tuple(range(3, 3 + rank))
    y = crop_or_pad(y, axes, [-p for p in pads[:rank]], [-p for p in pads[rank:]])
    return _with_bias(y.reshape(batch, group * group_out, *y.shape[3:]), b)
