"""Argument normalisation for the sliding-window layers (convolution and pooling).

Stage: DSL. Turns PyTorch-style arguments (an int or a tuple per spatial
axis; padding also 'valid' / 'same') into the canonical ir attributes
(`strides`, `dilations`, `pads` as [begins..., ends...], ...), raising a
ShapeError or UnsupportedError that names the layer (`where`) and the
offending argument. Layers call these when they are built, so a mistake is
reported at the line that made the layer; the functional forms call them again
with the node's name.
"""

from __future__ import annotations

import numpy as np

from ir import ShapeError, UnsupportedError


def as_tuple(value, rank: int, what: str, where: str, minimum: int | None = 0) -> tuple:
    """An int (repeated) or a sequence of `rank` ints, each >= minimum (if given), as a tuple."""
    items = (value,) * rank if isinstance(value, (int, np.integer)) else value
    ok = (
        isinstance(items, (tuple, list))
        and len(items) == rank
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items)
    )
    if not ok or (minimum is not None and any(v < minimum for v in items)):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ShapeError(
            f"{where}: {what}={value!r} should be an int or a tuple of {rank} ints{bound}"
        )
    return tuple(int(v) for v in items)


def conv_pads(padding, kernel, stride, dilation, where: str) -> tuple:
    """ONNX pads [begins..., ends...] for PyTorch's padding (int, tuple, 'valid', 'same').

    'same' is PyTorch's rule: stride 1 only, total pad d*(k-1) per axis with
    the odd one at the end.
    """
    rank = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * (2 * rank)
        if padding != "same":
            raise UnsupportedError(
                f"{where}: padding={padding!r} is not supported; use an int, a tuple, "
                "'valid' or 'same'"
            )
        if any(s != 1 for s in stride):
            raise UnsupportedError(
                f"{where}: padding='same' needs stride 1 (as in PyTorch); got stride={stride}"
            )
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
    pads = as_tuple(padding, rank, "padding", where)
    return pads + pads


def conv_attrs(
    kernel: tuple, where: str, stride, padding, dilation, groups, output_padding=None
) -> dict:
    """ir attributes of a (transposed, when output_padding is given) convolution."""
    rank = len(kernel)
    strides = as_tuple(stride, rank, "stride", where, 1)
    dilations = as_tuple(dilation, rank, "dilation", where, 1)
    attrs = {
        "strides": strides,
        "dilations": dilations,
        "group": as_tuple(groups, 1, "groups", where, 1)[0],
        "pads": conv_pads(padding, kernel, strides, dilations, where),
    }
    if output_padding is not None:
        attrs["output_padding"] = as_tuple(output_padding, rank, "output_padding", where)
    return attrs


def pool_attrs(rank: int, where: str, kernel_size, stride, padding, dilation) -> dict:
    """kernel/strides/pads/dilations of a pooling window; stride None means the kernel."""
    kernel = as_tuple(kernel_size, rank, "kernel_size", where, 1)
    strides = kernel if stride is None else as_tuple(stride, rank, "stride", where, 1)
    dilations = as_tuple(dilation, rank, "dilation", where, 1)
    pads = as_tuple(padding, rank, "padding", where)
    for k, d, p in zip(kernel, dilations, pads):
        if 2 * p > d * (k - 1) + 1:
            raise ShapeError(
                f"{where}: padding={padding!r} should be at most half the kernel size "
                f"{kernel_size!r} (as in PyTorch)"
            )
    return {"kernel_shape": kernel, "strides": strides, "pads": pads + pads, "dilations": dilations}
